"""Every dependency a crate declares is used by its code (in the manner of cargo-machete: a
crate's library name must appear in its sources), so an unused one cannot creep back in.
Run by `make test`."""
import pathlib
import re
import subprocess
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRATES = sorted(p.parent for p in (ROOT / "crates").glob("*/Cargo.toml"))
# Dependencies whose library name differs from the package name.
LIBRARY_NAMES = {"cloudevents-sdk": "cloudevents"}


def library_name(package):
    return LIBRARY_NAMES.get(package, package.replace("-", "_"))


def sources(crate, *folders):
    return "\n".join(p.read_text() for folder in folders for p in (crate / folder).rglob("*.rs"))


def unused(crate, section, folders):
    manifest = tomllib.loads((crate / "Cargo.toml").read_text())
    code = sources(crate, *folders)
    found = []
    for package in manifest.get(section, {}):
        name = library_name(package)
        if not re.search(rf"\b{name}\b", code):
            found.append(package)
    return found


@pytest.mark.parametrize("crate", CRATES, ids=lambda c: c.name)
def test_every_dependency_is_used(crate):
    assert unused(crate, "dependencies", ["src"]) == []


@pytest.mark.parametrize("crate", CRATES, ids=lambda c: c.name)
def test_every_dev_dependency_is_used(crate):
    assert unused(crate, "dev-dependencies", ["src", "tests", "benches", "examples"]) == []


def test_an_unused_dependency_is_found(tmp_path):
    crate = tmp_path / "probe"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text('[package]\nname = "probe"\n[dependencies]\nserde = "1"\nserde_json = "1"\n')
    (crate / "src" / "lib.rs").write_text("pub fn f() -> serde_json::Value { serde_json::json!(1) }\n")
    assert unused(crate, "dependencies", ["src"]) == ["serde"]


# --- Each function links only the SDK clients it calls (BENCHMARKS.md: zip size, cold start) ---

FUNCTIONS = ["tagger", "secret-syncer", "slack-notifier"]
# aws-config's credential providers (web identity on EKS, assume role) are built on STS: every
# function has it through aws-config, whether or not its own code calls STS.
THROUGH_AWS_CONFIG = {"aws-sdk-sts"}


def sdk_crates_in_tree(function):
    """The aws-sdk-* packages in the function's normal (non-dev) dependency tree, features as
    a build of that function alone resolves them."""
    tree = subprocess.run(
        ["cargo", "tree", "--package", function, "--edges", "normal", "--prefix", "none", "--offline"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return {m.group(0) for m in re.finditer(r"^aws-sdk-[a-z0-9]+", tree, re.MULTILINE)}


def sdk_crates_called(crate):
    """The SDK clients the function's own code builds and calls (`aws_sdk_<service>::…`)."""
    return {"aws-sdk-" + m.group(1) for m in re.finditer(r"\baws_sdk_([a-z0-9]+)\b", sources(crate, "src"))}


def uncalled_sdk_crates(tree, called):
    return sorted(tree - called - THROUGH_AWS_CONFIG)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_links_only_the_sdk_clients_it_calls(function):
    called = sdk_crates_called(ROOT / "crates" / function)
    tree = sdk_crates_in_tree(function)
    assert called, f"{function} calls no SDK client? the scan is broken"
    assert called <= tree, f"{function}'s code names SDK crates its tree lacks: the tree's scan is broken"
    assert uncalled_sdk_crates(tree, called) == []


def test_an_sdk_crate_the_function_does_not_call_is_found():
    tree = {"aws-sdk-rds", "aws-sdk-sts", "aws-sdk-dynamodb"}
    assert uncalled_sdk_crates(tree, {"aws-sdk-rds"}) == ["aws-sdk-dynamodb"]
