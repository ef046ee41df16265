//! Sweep throughput against moto (`make bench-sweep`; not a timed test): how many resources a
//! sweep converges per second and how many AWS calls each one costs, beside a baseline measured
//! in the same run on the same resources: one event per resource through the same handler.
//!
//! ```text
//! cargo run --release -p tagger --example sweep_throughput -- [--resources N] [--concurrency C] [--json]
//! ```
//! Needs the test bed (`tests/testbed/run.sh` exports `AWS_ENDPOINT_URL`). Creates N resources
//! (RDS instances, Crossplane's, a policy tag missing; at most 80 per account, as moto allows)
//! in accounts no test uses, then measures: a sweep that converges them all, a sweep that finds nothing to do (the
//! hourly case), and N events handled with the same concurrency (the baseline).

use std::time::{Duration, Instant};

use common::aws::{AwsError, CallCounter};
use common::fleet::{AssumeRole, FleetSettings};
use common::resolve::Guard;
use common::runtime::{Handler, Invocation, dispatch};
use common::sweep::{Listed, Requeue, SweepSettings, event_for};
use common::testing::{ROLE_TEMPLATE, assumed_config, create_database_tagged, invocation, moto_config};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// RDS instances per account (moto's quota allows about a hundred per account and region).
const PER_ACCOUNT: usize = 80;

/// A sweep here never runs out of time: a continuation would be a bug.
struct NoContinuation;

impl Requeue for NoContinuation {
    async fn requeue(&self, _: &str, _: Vec<u8>) -> Result<(), AwsError> {
        Err(AwsError {
            operation: "Requeue",
            retryable: false,
            code: None,
            message: "the benchmark's sweep must finish in one invocation".into(),
        })
    }
}

struct Options {
    resources: usize,
    concurrency: usize,
    json: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        resources: 400,
        concurrency: 8,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--resources" => options.resources = number("--resources")?,
            "--concurrency" => options.concurrency = number("--concurrency")?,
            "--json" => options.json = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// One measured phase: what it did, how long it took, how many AWS calls it made.
struct Phase {
    name: &'static str,
    resources: u64,
    elapsed: Duration,
    calls: u64,
    writes: u64,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.resources as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn calls_per_resource(&self) -> f64 {
        self.calls as f64 / self.resources.max(1) as f64
    }
}

async fn sweep(fleet: &impl Handler, counter: &CallCounter, name: &'static str) -> Result<(Phase, Value), String> {
    counter.reset();
    let started = Instant::now();
    let invocation = Invocation {
        deadline: tokio::time::Instant::now() + Duration::from_secs(3600),
        ..invocation()
    };
    let answer = dispatch(fleet, br#"{"sweep": {}}"#, &invocation, 1)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let elapsed = started.elapsed();
    if answer["finished"] != true || answer["totals"]["failed"] != 0 {
        return Err(format!("{name} did not finish cleanly: {answer}"));
    }
    let resources = answer["totals"]["seen"].as_u64().unwrap_or_default();
    let phase = Phase {
        name,
        resources,
        elapsed,
        calls: counter.total(),
        writes: counter.writes(),
    };
    Ok((phase, answer))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let options = options()?;
    // Accounts of their own for each run, so that a run sees only its resources; moto refuses
    // an RDS instance beyond about a hundred per account and region (its snapshot quota).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let first = 700_000_000_000 + (now.as_millis() % 90_000_000_000) as u64;
    let accounts: Vec<String> = (0..options.resources.div_ceil(PER_ACCOUNT) as u64)
        .map(|i| (first + i).to_string())
        .collect();
    let region = "us-east-1";
    let mut members = Vec::new();
    for account in &accounts {
        members.push(assumed_config(account, region).await);
    }
    let home = moto_config().await;
    let policy = "/bench/sweep/policy";
    aws_sdk_ssm::Client::new(&home)
        .put_parameter()
        .name(policy)
        .value(json!({"tags": {"cost-center": "platform"}, "defaults": {"owner": "platform-team"}}).to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .map_err(|e| format!("put the policy: {e}"))?;

    // RDS instances, Crossplane's, none carrying the policy. (One kind: their tags are read with
    // RDS's ListTagsForResource, one call, as in AWS; moto's GetResources ignores ResourceARNList
    // and pages through everything, which would inflate the baseline for other kinds.)
    let listed: Vec<Listed> = futures_util::stream::iter(0..options.resources)
        .map(|i| {
            let (account, member) = (&accounts[i / PER_ACCOUNT], &members[i / PER_ACCOUNT]);
            async move {
                let name = format!("bench-{i}");
                let tags = [
                    ("crossplane-kind", "instance.rds.aws.upbound.io"),
                    ("crossplane-name", name.as_str()),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()));
                create_database_tagged(member, &name, false, &tags).await;
                Listed {
                    arn: format!("arn:aws:rds:{region}:{account}:db:{name}"),
                    kind: "instance.rds.aws.upbound.io".into(),
                    tags: None,
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let counter = CallCounter::default();
    let guard = Guard {
        allowed_accounts: accounts.clone(),
        allowed_regions: vec![region.into()],
    };
    let settings = tagger::Settings {
        policy_parameter: Some(policy.into()),
        policy_ttl: Duration::from_secs(3600),
        guard: guard.clone(),
    };
    let fleet_settings = FleetSettings {
        guard,
        assume: Some(AssumeRole {
            template: ROLE_TEMPLATE.into(),
            external_id: None,
        }),
        sweep: SweepSettings {
            concurrency: options.concurrency,
            reserve: Duration::from_secs(5),
        },
    };
    let fleet = tagger::fleet(home, settings, fleet_settings, NoContinuation, Some(&counter));

    let (converging, _) = sweep(&fleet, &counter, "sweep, every resource drifted").await?;
    let (steady, _) = sweep(&fleet, &counter, "sweep, nothing drifted").await?;

    // The baseline: the same resources, one event each, through the same handler and clients.
    counter.reset();
    let invocation = invocation();
    let started = Instant::now();
    let events: Vec<_> = listed.iter().map(|l| event_for(l, "bench")).collect();
    let outcomes: Vec<_> = futures_util::stream::iter(events.iter().map(|event| fleet.handle(event, &invocation)))
        .buffer_unordered(options.concurrency)
        .collect()
        .await;
    let baseline = Phase {
        name: "one event per resource, nothing drifted (baseline)",
        resources: outcomes.len() as u64,
        elapsed: started.elapsed(),
        calls: counter.total(),
        writes: counter.writes(),
    };
    if let Some(failed) = outcomes.iter().find(|o| o.is_err()) {
        return Err(format!("baseline: {failed:?}"));
    }

    let phases = [converging, steady, baseline];
    let ratio = phases[1].per_second() / phases[2].per_second();
    if options.json {
        let rows: Vec<Value> = phases
            .iter()
            .map(|p| {
                json!({"phase": p.name, "resources": p.resources, "seconds": p.elapsed.as_secs_f64(),
                       "per_second": p.per_second(), "calls_per_resource": p.calls_per_resource(), "writes": p.writes})
            })
            .collect();
        println!("{}", json!({"phases": rows, "steady_over_baseline": ratio}));
    } else {
        println!(
            "Sweep throughput against moto: {} RDS instances in {} accounts, concurrency {}\n",
            options.resources,
            accounts.len(),
            options.concurrency
        );
        println!("| phase | resources | resources/s | AWS calls/resource | writes |");
        println!("|---|---:|---:|---:|---:|");
        for p in &phases {
            println!(
                "| {} | {} | {:.1} | {:.2} | {} |",
                p.name,
                p.resources,
                p.per_second(),
                p.calls_per_resource(),
                p.writes
            );
        }
        println!("\nsweep with nothing drifted / one event per resource: {ratio:.2}× the baseline's throughput");
    }
    Ok(())
}
