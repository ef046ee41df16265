# crossplane-lambda: build, test, demo, package, deploy, invoke, watch.
# `make demo` and `make test` work on a fresh machine with only Rust and Python installed:
# they create the project-local .venv (moto[server], cargo-lambda, ziglang; pinned in
# tests/testbed/requirements.txt) and start/stop the local services themselves.

FUNCTIONS := tagger secret-syncer slack-notifier
FUNCTION ?= tagger
EVENT ?= events/ready.namespaced.json
TESTBED := tests/testbed
CARGO_LAMBDA := .venv/bin/cargo-lambda lambda
# Where `make watch` serves the functions and `make invoke` sends events: one address for both
# (cargo lambda's own defaults differ: watch binds [::], invoke sends to [::1]).
WATCH_ADDRESS := 127.0.0.1
WATCH_PORT := 9000

.PHONY: all build test mutants lint bench bench-sweep demo package deploy publish invoke watch setup clean

all: build

setup:
	$(TESTBED)/setup.sh

build:
	cargo build --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## The whole test suite: formatting, clippy, then every test (unit, moto integration,
## cargo lambda end to end, infra/ against the CRD schemas, the README's commands and the
## samples of events/ through cargo lambda) inside the test bed, which is stopped afterwards in any case.
## Last, the mutants of the lines changed since .ci/mutants-base (no emulator needed).
test: setup lint
	$(TESTBED)/run.sh sh -c 'cargo test --workspace && .venv/bin/python -m pytest tests/infra tests/repo tests/readme tests/runtime -q'
	tests/mutants/changed.sh

## Every mutant of the pure core (.cargo/mutants.toml); fails on any the tests miss.
mutants:
	tests/mutants/run.sh

## The release binaries under a local Lambda Runtime API, on moto: init, peak RSS, latencies and
## AWS calls per event beside the echo floor and a Python boto3 peer; SQS throughput, concurrent
## mode, zip sizes (bench/run.py). A Markdown table on stdout; BENCH_ARGS='--runs 3 --json FILE'.
bench: setup
	for p in $(FUNCTIONS) echo; do cargo build --release --package $$p || exit 1; done
	$(TESTBED)/run.sh .venv/bin/python bench/run.py $(BENCH_ARGS)

## Sweep throughput against moto (crates/tagger/examples/sweep_throughput.rs): resources per second
## and AWS calls per resource, beside one event per resource; BENCH_SWEEP_ARGS='--resources 1000'.
bench-sweep: setup
	$(TESTBED)/run.sh cargo run --release --package tagger --example sweep_throughput -- $(BENCH_SWEEP_ARGS)

## The main job on local defaults: moto as AWS, the tagger through cargo lambda.
demo: setup
	$(TESTBED)/run.sh tests/demo.sh

## arm64 zips for Lambda (provided.al2023), in target/lambda/<function>/bootstrap.zip. One function
## per build: built together, cargo would give each the union of common's features (DynamoDB in all).
package: setup
	rustup target add aarch64-unknown-linux-gnu
	for f in $(FUNCTIONS); do PATH="$(CURDIR)/.venv/bin:$$PATH" $(CARGO_LAMBDA) build --release --arm64 --output-format zip --package $$f --bin $$f || exit 1; done

## Quick start: deploys every function as crossplane-lambda-<name>, with the settings of its
## crate's [package.metadata.lambda.deploy] (needs AWS credentials).
deploy: package
	for f in $(FUNCTIONS); do $(CARGO_LAMBDA) deploy --binary-name $$f crossplane-lambda-$$f || exit 1; done

## GitOps: uploads the zips to s3://$(ARTIFACT_BUCKET) and writes s3Key/sourceCodeHash into
## infra/functions/*.yaml; commit that, and Crossplane rolls the new code out.
ARTIFACT_BUCKET ?= crossplane-lambda-artifacts
publish: package
	.venv/bin/python infra/publish.py --bucket $(ARTIFACT_BUCKET)

## make invoke FUNCTION=tagger EVENT=events/sqs.batch.json  (against a running `make watch`;
## with no arguments: the tagger with events/ready.namespaced.json)
invoke:
	timeout 300 $(CARGO_LAMBDA) invoke $(FUNCTION) -A $(WATCH_ADDRESS) -P $(WATCH_PORT) --data-file $(EVENT)

## cargo lambda watch on 127.0.0.1:9000, all three functions, until Ctrl-C. By default inside the
## local test bed (moto as AWS, the Slack sink), seeded as the demo is (tests/testbed/local-watch.sh);
## `make watch AWS=1` uses your own AWS environment (credentials, region, the functions' settings).
watch: setup
ifdef AWS
	$(TESTBED)/watch.sh --foreground $(WATCH_ADDRESS) $(WATCH_PORT)
else
	$(TESTBED)/run.sh $(TESTBED)/local-watch.sh $(WATCH_ADDRESS) $(WATCH_PORT)
endif

clean:
	cargo clean
	rm -rf .testbed mutants.out mutants.out.old
