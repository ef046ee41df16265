"""Every dependency a crate declares is used by its code (in the manner of cargo-machete: a
crate's library name must appear in its sources), so an unused one cannot creep back in.
Run by `make test`."""
import pathlib
import re
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
