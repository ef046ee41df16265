# crossplane-lambda: build, test, demo, package, deploy, invoke, watch.
# `make demo` and `make test` work on a fresh machine with only Rust and Python installed:
# they create the project-local .venv (moto[server], cargo-lambda, ziglang; pinned in
# tests/testbed/requirements.txt) and start/stop the local services themselves.

FUNCTIONS := tagger secret-syncer slack-notifier
FUNCTION ?= tagger
EVENT ?= events/ready.namespaced.json
TESTBED := tests/testbed
CARGO_LAMBDA := .venv/bin/cargo-lambda lambda

.PHONY: all build test lint demo package deploy publish invoke watch setup clean

all: build

setup:
	$(TESTBED)/setup.sh

build:
	cargo build --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## The whole test suite: formatting, clippy, then every test (unit, moto integration,
## cargo lambda end to end, infra/ against the CRD schemas) inside the test bed, which is
## stopped afterwards in any case.
test: setup lint
	$(TESTBED)/run.sh sh -c 'cargo test --workspace && .venv/bin/python -m pytest tests/infra -q' 

## The main job on local defaults: moto as AWS, the tagger through cargo lambda.
demo: setup
	$(TESTBED)/run.sh tests/demo.sh

## arm64 zips for Lambda (provided.al2023), in target/lambda/<function>/bootstrap.zip.
package: setup
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(CARGO_LAMBDA) build --release --arm64 --output-format zip $(addprefix --bin ,$(FUNCTIONS))

## Quick start: deploys every function as crossplane-lambda-<name>, with the settings of its
## crate's [package.metadata.lambda.deploy] (needs AWS credentials).
deploy: package
	for f in $(FUNCTIONS); do $(CARGO_LAMBDA) deploy --binary-name $$f crossplane-lambda-$$f || exit 1; done

## GitOps: uploads the zips to s3://$(ARTIFACT_BUCKET) and writes s3Key/sourceCodeHash into
## infra/functions/*.yaml; commit that, and Crossplane rolls the new code out.
ARTIFACT_BUCKET ?= crossplane-lambda-artifacts
publish: package
	.venv/bin/python infra/publish.py --bucket $(ARTIFACT_BUCKET)

## make invoke FUNCTION=tagger EVENT=events/sqs.batch.json  (against a running `make watch`)
invoke:
	timeout 120 $(CARGO_LAMBDA) invoke $(FUNCTION) --data-file $(EVENT)

watch: setup
	$(CARGO_LAMBDA) watch --invoke-address 127.0.0.1

clean:
	cargo clean
	rm -rf .testbed
