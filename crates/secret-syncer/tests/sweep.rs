//! secret-syncer's convergence against moto: a sweep in a member account's two regions (its
//! connection details published there, with the role assumed there), and the re-sync after a
//! rotation of the RDS-managed master secret. Run with `make test`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::aws::AwsError;
use common::fleet::{AssumeRole, FleetSettings};
use common::rds::Databases;
use common::resolve::Guard;
use common::runtime::dispatch;
use common::sweep::{Requeue, SweepSettings};
use common::testing::{
    DeclaredCounter, Managed, ROLE_TEMPLATE, assumed_config, create_database_tagged, create_instance,
    create_instance_in, invocation, moto_config, sample,
};
use secret_syncer::Settings;
use serde_json::{Value, json};

/// Used by no other test: the sweep sees only what this file creates.
const MEMBER: &str = "567890123456";
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

#[derive(Clone, Default)]
struct Continuations(Arc<Mutex<Vec<Vec<u8>>>>);

impl Requeue for Continuations {
    async fn requeue(&self, _function_arn: &str, payload: Vec<u8>) -> Result<(), AwsError> {
        self.0.lock().unwrap().push(payload);
        Ok(())
    }
}

fn settings(accounts: &[&str], include_password: bool) -> (Settings, FleetSettings) {
    let guard = Guard {
        allowed_accounts: accounts.iter().map(|a| a.to_string()).collect(),
        allowed_regions: REGIONS.map(str::to_string).to_vec(),
    };
    let settings = Settings {
        parameter_path_template: Some("/crossplane/{namespace}/{name}".into()),
        include_password,
        guard: guard.clone(),
        ..Settings::default()
    };
    let fleet = FleetSettings {
        guard,
        assume: Some(AssumeRole {
            template: ROLE_TEMPLATE.into(),
            external_id: None,
        }),
        sweep: SweepSettings {
            concurrency: 4,
            reserve: Duration::from_secs(1),
        },
    };
    (settings, fleet)
}

async fn secret_json(sdk: &aws_config::SdkConfig, name: &str) -> Option<Value> {
    let value = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .ok()?;
    serde_json::from_str(value.secret_string()?).ok()
}

async fn put_secret(sdk: &aws_config::SdkConfig, name: &str, value: &Value) {
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(name)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("put the secret value");
}

fn totals(answer: &Value, field: &str) -> u64 {
    answer["totals"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {answer}"))
}

#[tokio::test]
async fn a_sweep_publishes_in_the_member_account_and_then_restores_only_what_was_changed_by_hand() {
    let mut member = Vec::new();
    for region in REGIONS {
        let sdk = assumed_config(MEMBER, region).await;
        for i in 0..3 {
            create_instance_in(&sdk, &format!("sweep-db-{i}"), "team-s", &[], Managed::Namespaced).await;
        }
        create_instance_in(&sdk, "not-crossplanes", "team-s", &[], Managed::No).await;
        // A tenant's cluster-scoped instance whose tags (spec.forProvider.tags) claim another
        // team's namespace: the provider does not own crossplane-namespace on a cluster-scoped
        // kind, so it names nothing: the details go under `cluster`, never that team's path.
        let forged = [
            ("crossplane-kind", "instance.rds.aws.upbound.io"),
            ("crossplane-name", "tenant-db"),
            ("crossplane-namespace", "team-victim"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        create_database_tagged(&sdk, "tenant-db", false, &forged).await;
        member.push(sdk);
    }
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let (settings, fleet_settings) = settings(&[MEMBER], false);
    let continuations = Continuations::default();
    let fleet = secret_syncer::fleet(
        moto_config().await,
        settings,
        fleet_settings,
        continuations.clone(),
        Some(&counter),
    );
    let invocation = invocation();
    let sweep = |counter: &DeclaredCounter| {
        counter.reset();
        dispatch(&fleet, br#"{"sweep": {}}"#, &invocation, 1)
    };

    let first = sweep(&counter).await.unwrap();
    assert_eq!(first["finished"], true, "{first}");
    assert_eq!(
        totals(&first, "seen"),
        8,
        "only Crossplane's databases are listed: {first}"
    );
    assert_eq!(totals(&first, "converged"), 8, "{first}");
    for sdk in &member {
        for i in 0..3 {
            let published = secret_json(sdk, &format!("crossplane/team-s/sweep-db-{i}/connection")).await;
            assert!(
                published.is_some_and(|p| p["host"].is_string()),
                "published in the member account"
            );
        }
        assert!(
            secret_json(sdk, "crossplane/team-s/not-crossplanes/connection")
                .await
                .is_none()
        );
        assert!(
            secret_json(sdk, "crossplane/team-victim/tenant-db/connection")
                .await
                .is_none()
        );
        assert!(
            secret_json(sdk, "crossplane/cluster/tenant-db/connection")
                .await
                .is_some()
        );
    }

    // Someone edits a published secret and deletes a parameter by hand.
    let (europe, america) = (&member[0], &member[1]);
    put_secret(
        europe,
        "crossplane/team-s/sweep-db-0/connection",
        &json!({"host": "edited-by-hand"}),
    )
    .await;
    aws_sdk_ssm::Client::new(america)
        .delete_parameter()
        .name("/crossplane/team-s/sweep-db-1/port")
        .send()
        .await
        .unwrap();

    let second = sweep(&counter).await.unwrap();
    assert_eq!(totals(&second, "converged"), 2, "{second}");
    assert_eq!(totals(&second, "unchanged"), 6, "{second}");
    let restored = secret_json(europe, "crossplane/team-s/sweep-db-0/connection")
        .await
        .unwrap();
    assert_ne!(restored["host"], "edited-by-hand");
    let port = aws_sdk_ssm::Client::new(america)
        .get_parameter()
        .name("/crossplane/team-s/sweep-db-1/port")
        .send()
        .await
        .unwrap();
    assert!(port.parameter().and_then(|p| p.value()).is_some());
    assert_eq!(counter.writes(), 2, "one write per change: {:?}", counter.snapshot());

    let third = sweep(&counter).await.unwrap();
    assert_eq!(totals(&third, "unchanged"), 8, "{third}");
    assert_eq!(
        counter.writes(),
        0,
        "nothing drifted, nothing written: {:?}",
        counter.snapshot()
    );
    assert!(
        continuations.0.lock().unwrap().is_empty(),
        "no deadline pressure, no continuation"
    );
    counter.assert_all_declared();
}

#[tokio::test]
async fn a_rotation_resyncs_the_password_and_its_replay_writes_nothing() {
    let sdk = moto_config().await;
    let id = "ss-rotated";
    create_instance(&sdk, id, &[], Managed::Namespaced).await;
    let counter = DeclaredCounter::new(secret_syncer::AWS_OPERATIONS);
    let (settings, fleet_settings) = settings(&["123456789012"], true);
    let fleet = secret_syncer::fleet(
        sdk.clone(),
        settings,
        fleet_settings,
        Continuations::default(),
        Some(&counter),
    );
    let published = format!("crossplane/team-a/{id}/connection");
    let answer = dispatch(
        &fleet,
        common::testing::ready_event(id).to_string().as_bytes(),
        &invocation(),
        1,
    )
    .await
    .unwrap();
    assert_eq!(answer["results"][0]["outcome"], "applied", "{answer}");

    // RDS rotates the master password: the managed secret holds a new one.
    let master = aws_sdk_rds::Client::new(&sdk)
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .unwrap()
        .db_instances()[0]
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .unwrap()
        .to_string();
    put_secret(
        &sdk,
        &master,
        &json!({"username": "orders_admin", "password": "rotated-Pa55"}),
    )
    .await;
    let mut rotation = sample("eventbridge.secretsmanager-rotation-succeeded.json");
    rotation["detail"]["additionalEventData"]["SecretId"] = json!(master);

    counter.reset();
    let answer = dispatch(&fleet, rotation.to_string().as_bytes(), &invocation(), 1)
        .await
        .unwrap();
    let result = &answer["results"][0];
    assert_eq!(result["outcome"], "applied", "{answer}");
    assert_eq!(result["resource"], json!(common::testing::db_arn(id)), "{answer}");
    assert!(
        !answer.to_string().contains("rotated-Pa55"),
        "the password is in no outcome"
    );
    assert_eq!(secret_json(&sdk, &published).await.unwrap()["password"], "rotated-Pa55");
    let parameter = aws_sdk_ssm::Client::new(&sdk)
        .get_parameter()
        .name(format!("/crossplane/team-a/{id}/password"))
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(parameter.parameter().and_then(|p| p.value()), Some("rotated-Pa55"));

    // The fallback when a secret carries no owner tag: the database whose MasterUserSecret it is.
    let rds = aws_sdk_rds::Client::new(&sdk);
    assert_eq!(
        rds.owner_of_secret(&master).await.unwrap(),
        Some(common::testing::db_arn(id))
    );
    let stranger = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nobody-s-AbCdEf";
    assert_eq!(rds.owner_of_secret(stranger).await.unwrap(), None);

    counter.reset();
    let replay = dispatch(&fleet, rotation.to_string().as_bytes(), &invocation(), 1)
        .await
        .unwrap();
    assert_eq!(replay["results"][0]["outcome"], "unchanged", "{replay}");
    assert_eq!(counter.writes(), 0, "{:?}", counter.snapshot());
    counter.assert_all_declared();
}
