"""tests/infra: the manifests of infra/ against the real CRD schemas, their references, the
IAM policies against the functions' code (in the management account and in the workload
accounts), the sweep's schedules, the event rules and their forwarding, the kustomizations
rendered (the many-accounts example among them), the alarms and the dashboard against the
metrics the code emits, and the Composition's templates rendered with a
sample observed RDS instance, with hostile claim values, and through a Ready flap. Run by
`make test` (pytest, in the project's .venv)."""
import copy
import json
import subprocess

import pytest
import yaml

import gotemplate
import validate as v


@pytest.fixture(scope="module")
def docs():
    return v.load_documents()


@pytest.fixture(scope="module")
def crds(docs):
    return {**v.load_crds(), **v.xrd_schemas(docs)}


def problems_of(docs, crds):
    unvalidated = v.unvalidated_kinds()
    found = []
    for doc in docs:
        found += v.validate_document(doc, crds, unvalidated)
        for step in (doc.body.get("spec") or {}).get("pipeline") or []:
            if "input" in step:
                # A function's input is no object of the cluster: it needs no namespace.
                inline = v.Doc(doc.path, doc.index, step["input"] | {"metadata": {"name": step["step"]}}, "(input)")
                found += v.validate_document(inline, crds)
    return found


def test_the_manifests_cover_the_design(docs):
    kinds = {(d.api_version.split("/")[0], d.kind) for d in docs}
    for expected in [("lambda.aws.m.upbound.io", "Function"), ("iam.aws.m.upbound.io", "Role"),
                     ("iam.aws.m.upbound.io", "Policy"), ("cloudwatchlogs.aws.m.upbound.io", "Group"),
                     ("lambda.aws.m.upbound.io", "FunctionEventInvokeConfig"), ("dynamodb.aws.m.upbound.io", "Table"),
                     ("cloudwatchevents.aws.m.upbound.io", "Rule"), ("cloudwatchevents.aws.m.upbound.io", "Target"),
                     ("lambda.aws.m.upbound.io", "Permission"), ("lambda.aws.m.upbound.io", "EventSourceMapping"),
                     ("apiextensions.crossplane.io", "CompositeResourceDefinition"),
                     ("apiextensions.crossplane.io", "Composition"), ("pkg.crossplane.io", "Function"),
                     ("scheduler.aws.m.upbound.io", "Schedule"), ("cloudwatchevents.aws.m.upbound.io", "BusPolicy"),
                     ("aws.m.upbound.io", "ProviderConfig")]:
        assert expected in kinds, expected
    functions = [d for d in docs if d.kind == "Function" and d.api_version.startswith("lambda.")]
    assert sorted(d.name for d in functions) == [f"crossplane-lambda-{f}" for f in sorted(v.FUNCTIONS)]
    for f in functions:
        p = f.body["spec"]["forProvider"]
        assert (p["runtime"], p["architectures"], p["packageType"]) == ("provided.al2023", ["arm64"], "Zip")
        assert p["s3Bucket"] and p["s3Key"] and p["sourceCodeHash"]
    table = next(d for d in docs if d.kind == "Table")
    assert table.body["spec"]["forProvider"]["ttl"] == {"attributeName": "expires_at", "enabled": True}
    for mapping in (d for d in docs if d.kind == "EventSourceMapping"):
        assert mapping.body["spec"]["forProvider"]["functionResponseTypes"] == ["ReportBatchItemFailures"]


def test_every_manifest_validates_against_its_crd(docs, crds):
    assert problems_of(docs, crds) == []


def test_references_resolve(docs):
    assert v.check_references(docs) == []


def test_kustomizations_hold_together():
    assert v.check_kustomizations() == []


def test_each_policy_grants_exactly_what_the_code_declares(docs):
    assert v.check_policies(docs) == []
    assert "tag:TagResources" in v.declared_actions("tagger")


# --- deliberately broken copies: each check fails when it should -------------------------------

def _copy_with(docs, kind, name, change):
    broken = [copy.deepcopy(d) for d in docs]
    target = next(d for d in broken if d.kind == kind and d.name == name)
    change(target.body)
    return broken, target


def test_a_manifest_that_breaks_its_schema_fails(docs, crds):
    broken, _ = _copy_with(docs, "Function", "crossplane-lambda-tagger",
                           lambda b: b["spec"]["forProvider"].__setitem__("memorySize", "lots"))
    assert any("memorySize" in p and "not of type" in p for p in problems_of(broken, crds))
    broken, _ = _copy_with(docs, "Function", "crossplane-lambda-tagger",
                           lambda b: b["spec"]["forProvider"].__setitem__("memroySize", 256))
    assert any("memroySize" in p for p in problems_of(broken, crds)), "an unknown field is an error"
    broken, _ = _copy_with(docs, "Permission", "rds-events-invoke-tagger",
                           lambda b: b["spec"]["forProvider"].pop("principal"))
    assert any("forProvider.principal is a required parameter" in p for p in problems_of(broken, crds))
    broken, _ = _copy_with(docs, "PostgresInstance", "orders",
                           lambda b: b["spec"]["parameters"].__setitem__("size", "huge"))
    assert any("'huge' is not one of" in p for p in problems_of(broken, crds)), "the XR against its XRD"


def test_a_dangling_reference_fails(docs):
    broken, _ = _copy_with(docs, "Function", "crossplane-lambda-tagger",
                           lambda b: b["spec"]["forProvider"]["roleRef"].__setitem__("name", "no-such-role"))
    assert any("Role no-such-role" in p for p in v.check_references(broken))
    broken, _ = _copy_with(docs, "EventSourceMapping", "crossplane-lambda-tagger-events",
                           lambda b: b["spec"]["forProvider"].__setitem__(
                               "eventSourceArn", "arn:aws:sqs:us-east-1:123456789012:crossplane-lambda-typo"))
    assert any("Queue crossplane-lambda-typo" in p for p in v.check_references(broken))


def test_a_policy_that_drifts_from_the_code_fails(docs):
    def grant_more(body):
        policy = json.loads(body["spec"]["forProvider"]["policy"])
        policy["Statement"][0]["Action"].append("rds:DeleteDBInstance")
        body["spec"]["forProvider"]["policy"] = json.dumps(policy)
    broken, _ = _copy_with(docs, "Policy", "crossplane-lambda-tagger", grant_more)
    assert "crossplane-lambda-tagger: the policy grants rds:DeleteDBInstance but the code does not declare it" \
        in v.check_policies(broken)

    def grant_less(body):
        policy = json.loads(body["spec"]["forProvider"]["policy"])
        policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "CodeTagPolicy"]
        body["spec"]["forProvider"]["policy"] = json.dumps(policy)
    broken, _ = _copy_with(docs, "Policy", "crossplane-lambda-tagger", grant_less)
    assert "crossplane-lambda-tagger: the code calls ssm:GetParameter but the policy does not grant it" \
        in v.check_policies(broken)

    # The code declares a new call (what the moto tests force when the code makes one).
    source = (v.ROOT / "crates/slack-notifier/src/lib.rs").read_text().replace(
        '("DynamoDB.GetItem", &["dynamodb:GetItem"]),',
        '("DynamoDB.GetItem", &["dynamodb:GetItem"]),\n    ("DynamoDB.Query", &["dynamodb:Query"]),')
    assert "crossplane-lambda-slack-notifier: the code calls dynamodb:Query but the policy does not grant it" \
        in v.check_policies(docs, {"slack-notifier": source})


def _copy_where(docs, pick, change):
    """A deep copy of `docs` with `change` applied to the one document `pick` selects."""
    broken = [copy.deepcopy(d) for d in docs]
    chosen = [d for d in broken if pick(d)]
    assert len(chosen) == 1, [d.where() for d in chosen]
    change(chosen[0].body)
    return broken


def _edit_json(field, change):
    """A change of the JSON text in forProvider[field] (a policy, a pattern), made on the parsed JSON."""
    def edit(body):
        parsed = json.loads(body["spec"]["forProvider"][field])
        change(parsed)
        body["spec"]["forProvider"][field] = json.dumps(parsed)
    return edit


def _statement(sid, change):
    def edit(policy):
        change(next(s for s in policy["Statement"] if s.get("Sid") == sid))
    return _edit_json("policy", edit)


def _in_member_account(kind, name):
    return lambda d: d.kind == kind and d.name == name and "member-account" in d.path.parts


def test_the_continuation_and_the_member_roles_are_granted_narrowly(docs):
    assert "lambda:InvokeFunction" in v.declared_actions("tagger")
    assert v.sweeps("tagger") and v.sweeps("secret-syncer") and not v.sweeps("slack-notifier")
    assert v.home_operations("tagger") == ["SSM.GetParameter", "Lambda.Invoke"]
    assert {"ssm:GetParameter", "lambda:InvokeFunction"} & v.member_actions("tagger") == set()
    assert "tag:TagResources" in v.member_actions("tagger")
    assert v.member_actions("slack-notifier") == {"rds:ListTagsForResource", "rds:DescribeDBInstances",
                                                  "rds:DescribeDBClusters", "tag:GetResources"}
    is_policy = lambda name: (lambda d: d.kind == "Policy" and d.name == name and "functions" in d.path.parts)  # noqa: E731

    # The continuation on any function, not only on the function itself.
    broken = _copy_where(docs, is_policy("crossplane-lambda-tagger"),
                         _statement("CodeSelfContinuation", lambda s: s.__setitem__("Resource", "*")))
    assert any("CodeSelfContinuation grants lambda:InvokeFunction on ['*'], not only on the function itself" in p
               for p in v.check_policies(broken))
    # Assuming any role of the workload accounts; no way to assume one at all; AssumeRole as a Code* statement.
    broken = _copy_where(docs, is_policy("crossplane-lambda-secret-syncer"),
                         _statement("AssumeMemberRole", lambda s: s.__setitem__("Resource", "arn:aws:iam::*:role/*")))
    assert any("AssumeMemberRole must allow exactly sts:AssumeRole on arn:aws:iam::*:role/crossplane-lambda-secret-syncer"
               in p for p in v.check_policies(broken))
    broken = _copy_where(docs, is_policy("crossplane-lambda-slack-notifier"), _edit_json(
        "policy", lambda p: p.__setitem__("Statement", [s for s in p["Statement"] if s.get("Sid") != "AssumeMemberRole"])))
    assert "crossplane-lambda-slack-notifier: 0 statements grant sts:AssumeRole, not one " \
           "(on arn:aws:iam::*:role/crossplane-lambda-slack-notifier)" in v.check_policies(broken)


def test_each_member_role_trusts_its_function_and_grants_what_the_code_calls_there(docs):
    assert v.check_member_roles(docs) == []
    # A home operation granted in the workload account too.
    broken = _copy_where(docs, _in_member_account("Policy", "crossplane-lambda-tagger-member"), _edit_json(
        "policy", lambda p: p["Statement"].append({"Sid": "CodeTagPolicy", "Effect": "Allow",
                                                   "Action": ["ssm:GetParameter"], "Resource": "*"})))
    assert "crossplane-lambda-tagger in crossplane-lambda-member: the policy grants ssm:GetParameter but the code " \
           "does not call it there (not declared, or a HOME_OPERATIONS one)" in v.check_member_roles(broken)
    # A statement that is not the code's (what else the role could do unchecked).
    broken = _copy_where(docs, _in_member_account("Policy", "crossplane-lambda-slack-notifier-member"), _edit_json(
        "policy", lambda p: p["Statement"].append({"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"})))
    assert any("Admin: a statement the code does not need" in p for p in v.check_member_roles(broken))
    # The code: an operation no longer home (it now happens in the workload account), and a typo.
    source = (v.ROOT / "crates/tagger/src/lib.rs").read_text()
    moved = source.replace('&["SSM.GetParameter", "Lambda.Invoke"]', '&["Lambda.Invoke"]')
    assert moved != source
    assert "crossplane-lambda-tagger in crossplane-lambda-member: the code calls ssm:GetParameter there but the " \
           "policy does not grant it" in v.check_member_roles(docs, {"tagger": moved})
    typo = source.replace('&["SSM.GetParameter", "Lambda.Invoke"]', '&["SSM.GetParameters", "Lambda.Invoke"]')
    assert "crates/tagger/src/lib.rs: HOME_OPERATIONS names SSM.GetParameters, which is not in AWS_OPERATIONS" \
        in v.check_member_roles(docs, {"tagger": typo})

    # The trust: anyone in the management account, or without the ExternalId.
    def trust(change):
        return _edit_json("assumeRolePolicy", lambda p: change(p["Statement"][0]))
    broken = _copy_where(docs, _in_member_account("Role", "crossplane-lambda-secret-syncer"), trust(
        lambda s: s.__setitem__("Principal", {"AWS": "arn:aws:iam::123456789012:root"})))
    assert any("trusts {'AWS': 'arn:aws:iam::123456789012:root'}, not only the function's role "
               "arn:aws:iam::123456789012:role/crossplane-lambda-secret-syncer" in p for p in v.check_member_roles(broken))
    broken = _copy_where(docs, _in_member_account("Role", "crossplane-lambda-slack-notifier"), trust(
        lambda s: s.pop("Condition")))
    assert any("its trust policy does not require an sts:ExternalId" in p for p in v.check_member_roles(broken))


def test_the_workload_accounts_forward_what_the_functions_are_sent(docs):
    assert v.check_forwarding(docs) == []
    assert v.management_bus(docs) == "arn:aws:events:us-east-1:123456789012:event-bus/default"
    # The management rule changes; the forwarding does not follow.
    def one_more_event(pattern):
        pattern["detail"]["EventID"].append("RDS-EVENT-0006")
    broken = _copy_where(docs, lambda d: d.kind == "Rule" and d.name == "crossplane-lambda-rds-events",
                         _edit_json("eventPattern", one_more_event))
    problems = v.check_forwarding(broken)
    assert any(p.startswith("crossplane-lambda-member us-east-1: no rule forwards") and "RDS-EVENT-0006" in p for p in problems)
    assert any("which no management rule delivers" in p for p in problems)
    # Forwarded elsewhere, or with a role that may put events anywhere.
    broken = _copy_where(docs, _in_member_account("Target", "crossplane-lambda-forward-secret-rotation"),
                         lambda b: b["spec"]["forProvider"].__setitem__(
                             "arn", "arn:aws:events:us-east-1:111122223333:event-bus/default"))
    assert any("forwards to arn:aws:events:us-east-1:111122223333:event-bus/default, not to the management account's bus"
               in p for p in v.check_forwarding(broken))
    broken = _copy_where(docs, _in_member_account("Policy", "crossplane-lambda-forward-events"),
                         _statement("ManagementEventBus", lambda s: s.__setitem__("Resource", "*")))
    assert any("its role crossplane-lambda-forward-events must grant events:PutEvents on "
               "arn:aws:events:us-east-1:123456789012:event-bus/default only" in p for p in v.check_forwarding(broken))
    assert "no BusPolicy lets the workload accounts put events on arn:aws:events:us-east-1:123456789012:event-bus/default" \
        in v.check_forwarding([d for d in docs if d.kind != "BusPolicy"])


def test_the_rotation_rule_sends_rotations_to_the_secret_syncer(docs):
    rule = next(d for d in docs if d.kind == "Rule" and d.name == "crossplane-lambda-secret-rotation")
    assert json.loads(rule.body["spec"]["forProvider"]["eventPattern"]) == {
        "source": ["aws.secretsmanager"], "detail-type": ["AWS Service Event via CloudTrail"],
        "detail": {"eventName": ["RotationSucceeded"],
                   "additionalEventData": {"SecretId": [{"wildcard": "arn:aws:secretsmanager:*:secret:rds!*"}]}}}
    targets = [d for d in docs if d.kind == "Target"
               and d.body["spec"]["forProvider"]["ruleRef"]["name"] == "crossplane-lambda-secret-rotation"]
    assert [t.body["spec"]["forProvider"]["arn"] for t in targets] == \
        ["arn:aws:lambda:us-east-1:123456789012:function:crossplane-lambda-secret-syncer"]
    settings = lambda t: {k: t.body["spec"]["forProvider"][k] for k in ("retryPolicy", "deadLetterConfig")}  # noqa: E731
    assert settings(targets[0]) == settings(next(d for d in docs if d.name == "rds-events-to-secret-syncer"))
    assert v.check_invoke_permissions(docs) == []
    broken, _ = _copy_with(docs, "Permission", "secret-rotation-invoke-secret-syncer",
                           lambda b: b["spec"]["forProvider"].__setitem__(
                               "sourceArn", "arn:aws:events:us-east-1:123456789012:rule/crossplane-lambda-rds-events"))
    assert any("no Permission lets arn:aws:events:us-east-1:123456789012:rule/crossplane-lambda-secret-rotation invoke "
               "crossplane-lambda-secret-syncer" in p for p in v.check_invoke_permissions(broken))


def test_the_sweep_is_scheduled_for_the_functions_that_sweep(docs):
    assert v.check_sweep(docs) == []
    schedules = {d.name: d.body["spec"]["forProvider"] for d in docs if d.kind == "Schedule"}
    assert sorted(schedules) == ["crossplane-lambda-sweep-secret-syncer", "crossplane-lambda-sweep-tagger"]
    assert {s["scheduleExpression"] for s in schedules.values()} == {"rate(1 hour)"}
    assert all(s["name"] == name for name, s in schedules.items()), "the schedule's AWS name is its forProvider.name"

    broken, _ = _copy_with(docs, "Schedule", "crossplane-lambda-sweep-tagger",
                           lambda b: b["spec"]["forProvider"]["target"].__setitem__("input", '{"sweep": null}'))
    assert any('its input is {"sweep": null}, not {"sweep": {}}' in p for p in v.check_sweep(broken))
    broken = [d for d in docs if d.name != "crossplane-lambda-sweep-secret-syncer"]
    assert any("crossplane-lambda-secret-syncer sweeps (its code continues itself: Lambda.Invoke), but 0 Schedules"
               in p for p in v.check_sweep(broken))
    broken, _ = _copy_with(docs, "Policy", "crossplane-lambda-sweep-scheduler", _statement(
        "InvokeSweepingFunctions", lambda s: s["Resource"].append(
            "arn:aws:lambda:us-east-1:123456789012:function:crossplane-lambda-slack-notifier")))
    assert any("may invoke" in p and "crossplane-lambda-slack-notifier" in p for p in v.check_sweep(broken))
    broken, _ = _copy_with(docs, "Role", "crossplane-lambda-sweep-scheduler", _edit_json(
        "assumeRolePolicy", lambda p: p["Statement"][0]["Condition"].pop("StringEquals")))
    assert any("must trust scheduler.amazonaws.com of 123456789012 (aws:SourceAccount) only" in p for p in v.check_sweep(broken))
    # The code: slack-notifier starts to sweep, without a schedule.
    source = (v.ROOT / "crates/slack-notifier/src/lib.rs").read_text().replace(
        '("DynamoDB.GetItem", &["dynamodb:GetItem"]),',
        '("DynamoDB.GetItem", &["dynamodb:GetItem"]),\n    ("Lambda.Invoke", &["lambda:InvokeFunction"]),')
    assert any("crossplane-lambda-slack-notifier sweeps" in p for p in v.check_sweep(docs, {"slack-notifier": source}))


# --- the kustomizations, rendered ------------------------------------------------------------------

def test_every_kustomization_renders_and_validates(docs, crds):
    assert [r.relative_to(v.ROOT).as_posix() for r in v.kustomization_roots()] == \
        ["infra", "infra/examples", "infra/examples/many-accounts"]
    assert v.check_rendered(crds, v.unvalidated_kinds(), extra=docs) == []


def test_the_renderer_agrees_with_kustomize():
    import shutil
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: the renderer is checked against kustomize where it is")

    def key(body):
        return body["apiVersion"], body["kind"], body["metadata"].get("namespace"), body["metadata"]["name"]
    for k in sorted(v.INFRA.rglob("kustomization.yaml")):
        out = subprocess.run(["kubectl", "kustomize", str(k.parent)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        theirs = {key(b): b for b in yaml.safe_load_all(out.stdout) if b}
        ours = {key(d.body): d.body for d in v.render_kustomization(k.parent)}
        assert ours == theirs, k.parent


def test_the_renderer_refuses_what_it_does_not_know(tmp_path):
    def kustomization(directory, text, **files):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "kustomization.yaml").write_text(text)
        for name, content in files.items():
            (directory / name).write_text(content)
        return directory
    role = "apiVersion: iam.aws.m.upbound.io/v1beta1\nkind: Role\nmetadata:\n  name: r\nspec:\n  forProvider: {}\n"
    base = kustomization(tmp_path / "base", "namespace: a\nresources:\n  - role.yaml\n", **{"role.yaml": role})
    assert [(d.namespace, d.name) for d in v.render_kustomization(base)] == [("a", "r")]
    for text, error in [
        ("resources:\n  - ../base\nnamePrefix: x-\n", "fields this renderer does not know"),
        ("resources:\n  - ../base\npatches:\n  - target: {kind: Role, name: s}\n    patch: '[]'\n", "a patch selects nothing"),
        ("resources:\n  - ../base\npatches:\n  - path: patch.yaml\n", "a patch this renderer does not know"),
        ("resources:\n  - ../base\npatches:\n  - target: {kind: Role}\n    patch: |-\n      - op: replace\n"
         "        path: /spec/forProvider/region\n        value: x\n", "the document has no such path"),
        ("resources:\n  - ../base/role.yaml\n", "a file outside the kustomization's directory"),
        ("resources:\n  - ..\n", "a directory holding one being rendered"),
        ("resources:\n  - ../base\n  - ../base\n", "twice"),
    ]:
        overlay = kustomization(tmp_path / "overlay", text)
        with pytest.raises(v.KustomizeError, match=error):
            v.render_kustomization(overlay)


# --- the worked example: many accounts ----------------------------------------------------------

@pytest.fixture(scope="module")
def many():
    return v.render_kustomization(v.EXAMPLE)


def test_the_many_accounts_example_holds_together(many):
    assert v.check_many_accounts(many) == []
    for check in (v.check_policies, v.check_member_roles, v.check_forwarding, v.check_sweep, v.check_invoke_permissions):
        assert check(many) == [], check.__name__
    assert sorted({d.namespace for d in many if d.kind == "ProviderConfig"}) == \
        ["crossplane-lambda-210987654321", "crossplane-lambda-345678901234"]
    assert v.forwarded_patterns(many)[0].keys() == {(f"crossplane-lambda-{a}", r) for a in ("210987654321", "345678901234")
                                                    for r in ("us-east-1", "eu-west-1")}
    tagger = next(d for d in many if d.kind == "Function" and d.name == "crossplane-lambda-tagger")
    env = tagger.body["spec"]["forProvider"]["environment"]["variables"]
    assert env["ALLOWED_ACCOUNTS"] == "123456789012,210987654321,345678901234"
    assert env["ALLOWED_REGIONS"] == "us-east-1,eu-west-1"
    assert env["ASSUME_ROLE_ARN_TEMPLATE"] == "arn:aws:iam::{account}:role/crossplane-lambda-{function}"


def test_a_many_accounts_example_that_does_not_hold_together_fails(many):
    def env(function, key, value):
        return _copy_where(many, lambda d: d.kind == "Function" and d.name == f"crossplane-lambda-{function}",
                           lambda b: b["spec"]["forProvider"]["environment"]["variables"].__setitem__(key, value))
    assert any("ASSUME_ROLE_EXTERNAL_ID is not the ExternalId its role in crossplane-lambda-210987654321 requires" in p
               for p in v.check_many_accounts(env("tagger", "ASSUME_ROLE_EXTERNAL_ID", "something-else")))
    assert any("ALLOWED_ACCOUNTS 123456789012,210987654321: not the management account and the workload accounts" in p
               for p in v.check_many_accounts(env("secret-syncer", "ALLOWED_ACCOUNTS", "123456789012,210987654321")))
    problems = v.check_many_accounts(env("slack-notifier", "ASSUME_ROLE_ARN_TEMPLATE", "arn:aws:iam::{account}:role/{function}"))
    assert any("ASSUME_ROLE_ARN_TEMPLATE gives arn:aws:iam::345678901234:role/slack-notifier, which "
               "crossplane-lambda-345678901234 does not define" in p for p in problems)
    assert any("its policy does not let it assume arn:aws:iam::345678901234:role/slack-notifier" in p for p in problems)
    assert any("the events of ap-south-1 (an ALLOWED_REGIONS of crossplane-lambda-tagger) are not forwarded" in p
               for p in v.check_many_accounts(env("tagger", "ALLOWED_REGIONS", "us-east-1,eu-west-1,ap-south-1")))
    broken = _copy_where(many, lambda d: d.kind == "BusPolicy", _edit_json(
        "policy", lambda p: p["Statement"][0]["Principal"].__setitem__("AWS", ["210987654321"])))
    assert any("lets ['210987654321'] put events, not the workload accounts ['210987654321', '345678901234']" in p
               for p in v.check_many_accounts(broken))
    broken = _copy_where(many, lambda d: d.kind == "ProviderConfig" and d.namespace == "crossplane-lambda-345678901234",
                         lambda b: b["spec"]["assumeRoleChain"][0].__setitem__(
                             "roleARN", "arn:aws:iam::210987654321:role/crossplane-provider-aws"))
    assert any("must assume a role of the account its namespace names" in p for p in v.check_many_accounts(broken))
    # A workload account's role that another overlay forgot to rename: two accounts, one ExternalId each.
    broken = _copy_where(many, lambda d: d.kind == "Role" and d.name == "crossplane-lambda-tagger"
                         and d.namespace == "crossplane-lambda-345678901234",
                         lambda b: b["metadata"].__setitem__("name", "tagger"))
    assert any("crossplane-lambda-tagger in crossplane-lambda-345678901234: expected one Role, found 0" in p
               for p in v.check_member_roles(broken))


# --- alarms and the dashboard against the code's metrics ----------------------------------------

def test_the_observability_manifests_cover_the_design(docs):
    kinds = {(d.api_version.split("/")[0], d.kind) for d in docs}
    for expected in [("cloudwatch.aws.m.upbound.io", "MetricAlarm"), ("cloudwatch.aws.m.upbound.io", "Dashboard"),
                     ("sns.aws.m.upbound.io", "Topic"), ("sns.aws.m.upbound.io", "TopicSubscription")]:
        assert expected in kinds, expected
    # The parser reads what the code emits (else every comparison below would be vacuous).
    emitted = v.emitted_metrics()
    assert emitted.namespace == "CrossplaneLambda"
    assert emitted.dimensions["Events"] == {frozenset({"Function", "Lifecycle", "Kind", "Outcome"})}
    assert emitted.dimensions["AwsThrottles"] == {frozenset({"Function", "Operation"})}
    assert emitted.dimensions["SlackAnswers"] == {frozenset({"Function", "Class"})}
    assert emitted.units["HandlerLatency"] == "Milliseconds"
    assert {"refused", "duplicate"} <= emitted.values["Outcome"]
    assert {"server_error", "client_error", "unreachable", "uncertain"} <= emitted.values["Class"]
    assert "DynamoDB.PutItem" in emitted.values["Operation"]


def test_alarms_and_the_dashboard_name_only_metrics_the_code_emits(docs):
    assert v.check_metrics(docs) == []
    # And the dashboard shows every metric the code emits.
    dashboard = next(d for d in docs if d.kind == "Dashboard")
    shown = {u.metric for u in v.dashboard_uses(dashboard)[0] if u.namespace == "CrossplaneLambda"}
    assert shown == set(v.emitted_metrics().units)


def test_the_alarms_cover_the_design_and_notify_the_topic(docs):
    assert v.check_alarms(docs) == []
    assert len([d for d in docs if d.kind == "MetricAlarm"]) == 15


def _with_body(body, change):
    """A Dashboard body changed by `change` (on the parsed JSON)."""
    parsed = json.loads(body["spec"]["forProvider"]["dashboardBody"])
    change(parsed)
    body["spec"]["forProvider"]["dashboardBody"] = json.dumps(parsed)


def _set_query(old, new):
    def change(body):
        query = body["spec"]["forProvider"]["metricQuery"][0]
        assert old in query["expression"]
        query["expression"] = query["expression"].replace(old, new)
    return change


def test_a_metric_the_code_does_not_emit_fails(docs):
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-refused",
                           _set_query('SUM("Events")', 'SUM("Event")'))
    assert any("Event is not a metric the code emits" in p for p in v.check_metrics(broken))
    assert "no alarm on events tagger refused" in v.check_alarms(broken)

    # A dimension set the code does not emit (CloudWatch matches only the whole set).
    def drop_kind(body):
        widget = next(w for w in body["widgets"] if w["properties"].get("title") == "tagger: events by lifecycle and outcome")
        row = widget["properties"]["metrics"][0][0]
        row["expression"] = row["expression"].replace("{CrossplaneLambda,Function,Kind,", "{CrossplaneLambda,Function,")
    broken, _ = _copy_with(docs, "Dashboard", "crossplane-lambda", lambda b: _with_body(b, drop_kind))
    assert any("Events with dimensions {Function, Lifecycle, Outcome}: the code emits it with "
               "{Function, Kind, Lifecycle, Outcome}" in p for p in v.check_metrics(broken))

    # A dimension value the code never emits.
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-secret-syncer-refused",
                           _set_query("'refused'", "'refuse'"))
    assert any("Outcome 'refuse' is not a value the code emits" in p for p in v.check_metrics(broken))

    def slack_class(body):
        body["spec"]["forProvider"]["metricQuery"][0]["metric"]["dimensions"]["Class"] = "server-error"
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-slack-notifier-delivery-failures", slack_class)
    assert any("Class 'server-error' is not a value the code emits" in p for p in v.check_metrics(broken))
    assert "no alarm on Slack answers of class server_error" in v.check_alarms(broken)


def test_an_alarm_cloudwatch_would_not_take_fails(docs, crds):
    # FUNCTION is a reserved word of Metrics Insights: unquoted, the query does not parse there.
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-permanent-failures",
                           _set_query('"Function" = ', "Function = "))
    assert any("the identifier Function must be double-quoted" in p for p in v.check_metrics(broken))
    def search(body):
        body["spec"]["forProvider"]["metricQuery"][0]["expression"] = \
            "SEARCH('{CrossplaneLambda,Function,Kind,Lifecycle,Outcome} MetricName=\"Events\" Outcome=\"refused\"', 'Sum', 300)"
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-refused", search)
    assert any("SEARCH is not allowed in an alarm" in p for p in v.check_metrics(broken))

    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-refused",
                           _set_query("AND \"Outcome\" = 'refused'", "AND \"Outcome\" = 'refused' GROUP BY \"Kind\""))
    assert any("must return one time series (no GROUP BY)" in p for p in v.check_metrics(broken))

    def math(body):
        body["spec"]["forProvider"]["metricQuery"][-1]["expression"] = "SUM(FILL([server_error, client_eror], 0))"
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-slack-notifier-delivery-failures", math)
    assert any("names client_eror, which is not a query of this alarm" in p for p in v.check_metrics(broken))

    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-errors",
                           lambda b: b["spec"]["forProvider"].pop("evaluationPeriods"))
    assert any("forProvider.evaluationPeriods is a required parameter" in p for p in problems_of(broken, crds))


def test_when_the_code_changes_its_metrics_the_check_fails(docs):
    # A dimension renamed in the code: every alarm and widget naming the old set fails.
    runtime = (v.ROOT / "crates/common/src/runtime.rs").read_text()
    assert '&[("Outcome", outcome.kind.as_str())]' in runtime
    renamed = runtime.replace('&[("Outcome", outcome.kind.as_str())]', '&[("Result", outcome.kind.as_str())]')
    problems = v.check_metrics(docs, {"crates/common/src/runtime.rs": renamed})
    assert any("Events with dimensions {Function, Kind, Lifecycle, Outcome}: the code emits it with "
               "{Function, Kind, Lifecycle, Result}" in p for p in problems)
    # A metric renamed in the code.
    metrics = (v.ROOT / v.METRICS_RS).read_text()
    renamed = metrics.replace('pub const SLACK_ANSWERS: &str = "SlackAnswers";',
                              'pub const SLACK_ANSWERS: &str = "SlackReplies";')
    assert any("SlackAnswers is not a metric the code emits" in p
               for p in v.check_metrics(docs, {v.METRICS_RS: renamed}))
    # A new way for a Slack post to fail: the alarm must cover it.
    webhook = (v.ROOT / "crates/slack-notifier/src/webhook.rs").read_text()
    assert 'answered("server_error");' in webhook
    more = webhook.replace('answered("server_error");', 'answered(if slow { "timeout" } else { "server_error" });')
    assert "no alarm on Slack answers of class timeout" in v.check_alarms(docs, {"crates/slack-notifier/src/webhook.rs": more})
    # A metric in METRICS that no call records.
    unused = metrics.replace("    (SLACK_ANSWERS, Unit::Count),\n", "    (SLACK_ANSWERS, Unit::Count),\n    (DRIFTED, Unit::Count),\n")
    unused = unused.replace('pub const SLACK_ANSWERS: &str = "SlackAnswers";',
                            'pub const SLACK_ANSWERS: &str = "SlackAnswers";\npub const DRIFTED: &str = "Drifted";')
    assert f"{v.METRICS_RS}: Drifted is in METRICS, but no call records it" in v.check_metrics(docs, {v.METRICS_RS: unused})


def test_a_function_or_queue_infra_does_not_define_fails(docs):
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-errors",
                           lambda b: b["spec"]["forProvider"]["dimensions"].__setitem__("FunctionName", "crossplane-lambda-tager"))
    assert any("FunctionName crossplane-lambda-tager, which infra/ does not define" in p for p in v.check_metrics(broken))
    assert "no alarm on Errors of crossplane-lambda-tagger" in v.check_alarms(broken)

    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-events-dlq-visible",
                           lambda b: b["spec"]["forProvider"]["dimensions"].__setitem__("QueueName", "crossplane-lambda-dlq"))
    assert any("QueueName crossplane-lambda-dlq, which infra/ does not define" in p for p in v.check_metrics(broken))
    assert "no alarm on the dead-letter queue crossplane-lambda-events-dlq" in v.check_alarms(broken)

    # A dead-letter queue without its alarm (and the dashboard's alarm list naming it).
    broken = [d for d in docs if d.name != "crossplane-lambda-failed-invocations-visible"]
    assert "no alarm on the dead-letter queue crossplane-lambda-failed-invocations" in v.check_alarms(broken)
    assert any("alarm arn:aws:cloudwatch:us-east-1:123456789012:alarm:crossplane-lambda-failed-invocations-visible, "
               "which infra/ does not define" in p for p in v.check_metrics(broken))

    def log_group(body):
        widget = next(w for w in body["widgets"] if w["type"] == "log")
        widget["properties"]["query"] = widget["properties"]["query"].replace("crossplane-lambda-tagger'", "tagger'")
    broken, _ = _copy_with(docs, "Dashboard", "crossplane-lambda", lambda b: _with_body(b, log_group))
    assert any("log group /aws/lambda/tagger, which infra/ does not define" in p for p in v.check_metrics(broken))


def test_an_alarm_that_tells_no_one_fails(docs):
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-refused",
                           lambda b: b["spec"]["forProvider"].__setitem__(
                               "alarmActions", ["arn:aws:sns:us-east-1:123456789012:someone-else"]))
    assert any("alarmActions ['arn:aws:sns:us-east-1:123456789012:someone-else'], not "
               "[arn:aws:sns:us-east-1:123456789012:crossplane-lambda-alarms]" in p for p in v.check_alarms(broken))
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-refused",
                           lambda b: b["spec"]["forProvider"].pop("alarmActions"))
    assert any("alarmActions None, not" in p for p in v.check_alarms(broken))

    # alarmActionsRefs looks like the way to name the topic, but it resolves autoscaling Policies.
    def refs(body):
        body["spec"]["forProvider"].pop("alarmActions")
        body["spec"]["forProvider"]["alarmActionsRefs"] = [{"name": "crossplane-lambda-alarms"}]
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-refused", refs)
    assert any("alarmActionsRefs selects autoscaling Policies, not the topic" in p for p in v.check_alarms(broken))
    assert any("alarmActionsRefs: a reference field tests/infra does not know" in p for p in v.check_references(broken))

    # An alarm the topic's policy would not let publish: its notifications would be dropped.
    broken, _ = _copy_with(docs, "MetricAlarm", "crossplane-lambda-tagger-refused",
                           lambda b: b["metadata"].__setitem__("name", "tagger-refused"))
    assert any("the topic's policy does not let arn:aws:cloudwatch:us-east-1:123456789012:alarm:tagger-refused publish"
               in p for p in v.check_alarms(broken))

    broken, _ = _copy_with(docs, "TopicSubscription", "crossplane-lambda-alarms-oncall",
                           lambda b: b["spec"]["forProvider"]["topicArnRef"].__setitem__("name", "alarms"))
    assert any("Topic alarms, which infra/ does not define" in p for p in v.check_references(broken))


# --- the Composition's templates, rendered ------------------------------------------------------

def _step(docs, name):
    composition = next(d for d in docs if d.kind == "Composition")
    step = next(s for s in composition.body["spec"]["pipeline"] if s["step"] == name)
    return step["input"]["inline"]["template"]


def _xr(docs):
    xr = copy.deepcopy(next(d for d in docs if d.kind == "PostgresInstance").body)
    xrd = next(d for d in docs if d.kind == "CompositeResourceDefinition")
    v.apply_defaults(xrd.body["spec"]["versions"][0]["schema"]["openAPIV3Schema"], xr)
    xr["metadata"]["uid"] = "5e8c1f0a-2b3d-4c5e-8f9a-0b1c2d3e4f5a"
    return xr


def _observed_instance(docs, crds, ready=True):
    """The Instance as the first step renders it, then as Crossplane observes it once the
    provider has created it."""
    rendered = list(yaml.safe_load_all(gotemplate.render(_step(docs, "compose-database"),
                                                         {"observed": {"composite": {"resource": _xr(docs)}}})))
    instance = next(r for r in rendered if r["kind"] == "Instance")
    instance["metadata"].update({"name": "orders-x7k2p", "namespace": "team-a", "generation": 2,
                                 "uid": "0b6f7c1e-5d2a-4c5e-9a51-2f8e3c4d7a10",
                                 "labels": {**instance["metadata"]["labels"], "crossplane.io/composite": "orders"}})
    instance["metadata"]["annotations"]["crossplane.io/external-name"] = "orders-x7k2p"
    instance["status"] = {
        "atProvider": {"arn": "arn:aws:rds:us-east-1:123456789012:db:orders-x7k2p",
                       "address": "orders-x7k2p.c9akciq32.us-east-1.rds.amazonaws.com"},
        "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                        "reason": "Available" if ready else "Creating", "lastTransitionTime": "2026-11-20T09:14:07Z"},
                       {"type": "Synced", "status": "True", "reason": "ReconcileSuccess",
                        "lastTransitionTime": "2026-11-20T09:02:44Z"}]}
    return rendered, instance


def test_the_database_step_composes_a_valid_instance(docs, crds):
    rendered, instance = _observed_instance(docs, crds)
    p = instance["spec"]["forProvider"]
    assert (p["instanceClass"], p["allocatedStorage"], p["maxAllocatedStorage"]) == ("db.t4g.micro", 20, 80)
    assert p["vpcSecurityGroupIds"] == ["sg-0123456789abcdef0"] and p["engineVersion"] == "16.4"
    named = copy.deepcopy(instance)
    named.pop("status")
    doc = v.Doc(v.INFRA / "triggers/composition/composition.yaml", 0, named)
    assert v.validate_document(doc, crds) == []
    assert [r["kind"] for r in rendered] == ["Instance"], "no XR status before the instance is observed"
    observed = {"composite": {"resource": _xr(docs)}, "resources": {"rds-instance": {"resource": instance}}}
    again = list(yaml.safe_load_all(gotemplate.render(_step(docs, "compose-database"), {"observed": observed})))
    xr = next(r for r in again if r["kind"] == "PostgresInstance")
    assert xr["status"] == {"address": "orders-x7k2p.c9akciq32.us-east-1.rds.amazonaws.com"}


def _invocations(docs, crds, ready=True):
    _, instance = _observed_instance(docs, crds, ready)
    observed = {"composite": {"resource": _xr(docs)}, "resources": {"rds-instance": {"resource": instance}}}
    text = gotemplate.render(_step(docs, "invoke-functions"), {"observed": observed})
    return [d for d in yaml.safe_load_all(text) if d], instance


def test_no_invocation_before_the_instance_is_ready(docs, crds):
    assert _invocations(docs, crds, ready=False)[0] == []


def _intake(event, action, tmp_path):
    """What `common` makes of an Invocation's input once the provider adds `tf`."""
    payload = tmp_path / f"{action}.json"
    payload.write_text(json.dumps(event | {"tf": {"action": action, "prev_input": None}}))
    out = subprocess.run(["cargo", "run", "-q", "-p", "common", "--example", "intake", "--", str(payload)],
                         cwd=v.ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)["events"][0]


def test_the_invocations_carry_a_ready_event_that_common_parses(docs, crds, tmp_path):
    invocations, instance = _invocations(docs, crds)
    assert [i["spec"]["forProvider"]["functionName"] for i in invocations] == \
        [f"crossplane-lambda-{f}" for f in v.FUNCTIONS]
    for invocation in invocations:
        body = copy.deepcopy(invocation)
        body["metadata"]["name"] = body["metadata"]["annotations"]["gotemplating.fn.crossplane.io/composition-resource-name"]
        doc = v.Doc(v.INFRA / "triggers/composition/composition.yaml", 1, body, "team-a")
        assert v.validate_document(doc, crds) == []
        assert v.check_references([doc], extra=v.load_documents()) == []
        assert body["spec"]["forProvider"]["lifecycleScope"] == "CRUD"

    # The provider adds `tf` to the input in CRUD scope; the functions parse it with common.
    event = json.loads(invocations[0]["spec"]["forProvider"]["input"])
    for action, lifecycle in [("create", "ready"), ("delete", "deleted")]:
        parsed = _intake(event, action, tmp_path)
        assert parsed["lifecycle"] == lifecycle
        assert parsed["subject"] == "/apis/rds.aws.m.upbound.io/v1beta1/namespaces/team-a/instances/orders-x7k2p"
        assert parsed["arn"] == instance["status"]["atProvider"]["arn"]
        assert parsed["id"] == "0b6f7c1e-5d2a-4c5e-9a51-2f8e3c4d7a10:2:ready"
        assert parsed["transition_time"] == ("2026-11-20T09:14:07Z" if action == "create" else None)


# --- hostile values: a tenant writes the claim (and its namespaced managed resources) ----------

def _hostile(tag, lead):
    """`tag`, wrapped in every way out of a YAML scalar, a YAML document or a JSON string we know:
    line breaks (also Unicode's, which YAML counts as line breaks), `: `, a document separator,
    `{{ }}`, both quotes, `#`, a leading indicator, backslashes, control characters."""
    return (f"{lead}{tag}\ninjected: true\n---\napiVersion: v1\nkind: Secret\n'single': \"double\" # hash\n"
            f"{{{{ .observed }}}}: {{{{- toJson $ }}}}\n- item\n  - \\n back\\slash \\\\ \t"
            f"\u2028ls: 1\u2029ps: 2\u0085nel: 3\x7fdel\x01 </script>& %s {{{{ [ ] }}}} \\")


def _claim(hostile):
    """The claim's and the observed instance's values, benign or hostile: one value per place
    it must arrive in, so each can be told apart."""
    def value(tag, lead):
        return _hostile(tag, lead) if hostile else tag
    return {
        "xr_name": value("orders", "- "), "xr_namespace": value("team-a", "'"), "size": value("small", "!"),
        "team": value("payments", '"'), "region": value("us-east-1", "# "), "engineVersion": value("16.4", "{{ "),
        "subnetGroupName": value("team-a-private", "? "),
        "securityGroupIds": [value("sg-0123456789abcdef0", "| "), value("sg-0fedcba9876543210", "& ")],
        "name": value("orders-x7k2p", "% "), "namespace": value("team-a", "@ "),
        "uid": value("0b6f7c1e-5d2a-4c5e-9a51-2f8e3c4d7a10", "* "), "label": value("blue", ": "),
        "external_name": value("orders-x7k2p", "> "), "reason": value("Available", "[ "),
        "arn": value("arn:aws:rds:us-east-1:123456789012:db:orders-x7k2p", "{ "),
        "address": value("orders-x7k2p.c9akciq32.us-east-1.rds.amazonaws.com", "` "),
    }


def _claim_xr(docs, c):
    xr = _xr(docs)
    xr["metadata"].update({"name": c["xr_name"], "namespace": c["xr_namespace"]})
    xr["spec"]["parameters"].update({k: c[k] for k in
                                     ("size", "team", "region", "engineVersion", "subnetGroupName", "securityGroupIds")})
    return xr


def _render(docs, step, observed):
    return [d for d in yaml.safe_load_all(gotemplate.render(_step(docs, step), {"observed": observed})) if d is not None]


def _observed(docs, c, ready="True", transition="2026-11-20T09:14:07Z"):
    """The instance the first step composes for claim values `c`, as Crossplane then observes it."""
    xr = _claim_xr(docs, c)
    instance = next(d for d in _render(docs, "compose-database", {"composite": {"resource": xr}})
                    if d["kind"] == "Instance")
    instance["metadata"].update({"name": c["name"], "namespace": c["namespace"], "generation": 2, "uid": c["uid"],
                                 "labels": {**instance["metadata"]["labels"], "crossplane.io/composite": c["xr_name"],
                                            "colour": c["label"]}})
    instance["metadata"]["annotations"]["crossplane.io/external-name"] = c["external_name"]
    conditions = [{"type": "Synced", "status": "True", "reason": "ReconcileSuccess",
                   "lastTransitionTime": "2026-11-20T09:02:44Z"}]
    if ready is not None:
        conditions.insert(0, {"type": "Ready", "status": ready, "reason": c["reason"] if ready == "True" else "Unavailable",
                              "lastTransitionTime": transition})
    instance["status"] = {"atProvider": {"arn": c["arn"], "address": c["address"]}, "conditions": conditions}
    return {"composite": {"resource": xr}, "resources": {"rds-instance": {"resource": instance}}}


def _shape(node):
    """A document's structure: its keys and list lengths, with every scalar replaced by its type."""
    if isinstance(node, dict):
        return {k: _shape(x) for k, x in node.items()}
    if isinstance(node, list):
        return [_shape(x) for x in node]
    return type(node).__name__


def _rendered_everything(docs, c):
    """Both steps, before and after the instance is observed, and the Invocations' inputs."""
    observed = _observed(docs, c)
    first = _render(docs, "compose-database", {"composite": observed["composite"]})
    again = _render(docs, "compose-database", observed)
    invocations = _render(docs, "invoke-functions", observed)
    events = [json.loads(i["spec"]["forProvider"]["input"]) for i in invocations]
    return {"first": first, "again": again, "invocations": invocations, "events": events}, observed


def test_hostile_claim_values_cannot_change_the_rendered_structure(docs, crds, tmp_path):
    benign, _ = _rendered_everything(docs, _claim(hostile=False))
    c = _claim(hostile=True)
    hostile, observed = _rendered_everything(docs, c)
    assert _shape(hostile) == _shape(benign)
    assert [d["kind"] for d in hostile["again"]] == ["Instance", "PostgresInstance"]
    assert len(hostile["invocations"]) == 3

    # Each value arrives, intact, where it was meant to go, and nowhere else.
    instance = hostile["again"][0]
    p = instance["spec"]["forProvider"]
    assert instance["metadata"]["labels"] == {"tags.platform.example.com/team": c["team"]}
    assert (p["region"], p["engineVersion"], p["dbSubnetGroupName"], p["vpcSecurityGroupIds"]) == \
        (c["region"], c["engineVersion"], c["subnetGroupName"], c["securityGroupIds"])
    assert p["finalSnapshotIdentifier"] == c["xr_name"] + "-final"
    assert p["tags"] == {"team": c["team"], "monitoring": "enabled", "backup-policy": "daily-7d"}
    assert p["instanceClass"] == "db.t4g.micro" and p["allocatedStorage"] == 20
    assert hostile["again"][1]["status"] == {"address": c["address"]}
    for doc in [instance] + hostile["invocations"]:
        named = copy.deepcopy(doc) | {"metadata": {**doc["metadata"], "name": "x"}}
        assert v.validate_document(v.Doc(v.INFRA / "triggers/composition/composition.yaml", 0, named, "team-a"),
                                   crds) == [], "every value keeps its type"

    db = observed["resources"]["rds-instance"]["resource"]
    for invocation, event in zip(hostile["invocations"], hostile["events"]):
        assert invocation["spec"]["forProvider"]["region"] == c["region"]
        assert event["id"] == f"{c['uid']}:2:ready"
        assert event["source"] == f"crossplane://{c['xr_namespace']}/postgresinstances/{c['xr_name']}"
        assert event["subject"] == f"/apis/rds.aws.m.upbound.io/v1beta1/namespaces/{c['namespace']}/instances/{c['name']}"
        data = event["data"]
        assert data["metadata"] == {"name": c["name"], "namespace": c["namespace"], "uid": c["uid"],
                                    "labels": db["metadata"]["labels"],
                                    "annotations": {"crossplane.io/external-name": c["external_name"],
                                                    "crossplane.io/composition-resource-name": "rds-instance"}}
        assert data["spec"] == {"forProvider": {"region": c["region"]}}
        assert data["status"] == {"atProvider": {"arn": c["arn"]}, "conditions": [
            {"type": "Ready", "status": "True", "reason": c["reason"], "lastTransitionTime": "2026-11-20T09:14:07Z"}]}

    # And `common` reads the same instance out of it.
    parsed = _intake(hostile["events"][0], "create", tmp_path)
    assert (parsed["lifecycle"], parsed["id"], parsed["arn"], parsed["reason"]) == \
        ("ready", f"{c['uid']}:2:ready", c["arn"], c["reason"])
    assert parsed["subject"] == hostile["events"][0]["subject"]


def _as_observed(invocations):
    """The composed Invocations as Crossplane observes them: named, late-initialised by the
    provider, with the result of the last invocation."""
    observed = {}
    for i, invocation in enumerate(invocations):
        body = copy.deepcopy(invocation)
        body["metadata"].update({"name": f"orders-{i}x7k2", "namespace": "team-a", "uid": f"uid-{i}"})
        body["spec"]["forProvider"]["qualifier"] = "$LATEST"
        body["status"] = {"atProvider": {"result": '{"results":[]}'},
                          "conditions": [{"type": "Ready", "status": "True", "reason": "Available"}]}
        name = body["metadata"]["annotations"]["gotemplating.fn.crossplane.io/composition-resource-name"]
        observed[name] = {"resource": body}
    return observed


@pytest.mark.parametrize("hostile", [False, True], ids=["benign", "hostile"])
def test_a_ready_flap_neither_deletes_nor_changes_the_invocations(docs, hostile):
    """Crossplane deletes a composed resource the pipeline stops rendering, and the provider then
    invokes the function with tf.action=delete (lifecycleScope CRUD): the Invocations must stay
    composed, unchanged, until the PostgresInstance itself is deleted."""
    c = _claim(hostile)
    ready = _observed(docs, c)
    first = _render(docs, "invoke-functions", ready)
    assert [i["metadata"]["annotations"]["gotemplating.fn.crossplane.io/composition-resource-name"]
            for i in first] == [f"invoke-{f}" for f in v.FUNCTIONS]
    seen = _as_observed(first)

    def with_invocations(observed):
        return observed | {"resources": observed.get("resources", {}) | seen}

    # Steady state: Ready, and the Invocations observed as rendered: nothing changes.
    assert _render(docs, "invoke-functions", with_invocations(ready)) == first
    # The flap: Ready=False, Ready absent, or the instance not observed at all (the
    # PostgresInstance is not being deleted): the same Invocations, the same input.
    flapped = _observed(docs, c, ready="False", transition="2026-11-21T03:00:00Z")
    no_condition = _observed(docs, c, ready=None)
    no_instance = ready | {"resources": {}}
    for observed in (flapped, no_condition, no_instance):
        assert _render(docs, "invoke-functions", with_invocations(observed)) == first
    # Never rendered before: nothing until the instance is Ready.
    assert _render(docs, "invoke-functions", flapped) == []
    assert _render(docs, "invoke-functions", no_instance) == []
    # Ready again, a new transition: the same Invocations, with an input for the new transition
    # (tf.action=update: the functions converge again).
    again = _render(docs, "invoke-functions", with_invocations(
        _observed(docs, c, ready="True", transition="2026-11-21T03:05:00Z")))
    assert [i["metadata"] for i in again] == [i["metadata"] for i in first]
    for before, after in zip(first, again):
        event = json.loads(after["spec"]["forProvider"]["input"])
        assert after["spec"]["forProvider"]["input"] != before["spec"]["forProvider"]["input"]
        assert event["data"]["status"]["conditions"][0]["lastTransitionTime"] == "2026-11-21T03:05:00Z"
        assert event | {"data": None} == json.loads(before["spec"]["forProvider"]["input"]) | {"data": None}


def test_the_renderer_quotes_and_encodes_as_go_does():
    # Go's strconv.Quote (%q): printable runes as they are, the rest escaped; sprig skips nil.
    assert gotemplate.render("{{ .s | quote }}|{{ nil | quote }}|{{ quote 20 }}",
                             {"s": "a\n\"\\\t\u2028\u0085\x7f\x01é😀\u00a0\U000e0001"}) == \
        '"a\\n\\"\\\\\\t\\u2028\\u0085\\x7f\\x01é😀\\u00a0\\U000e0001"||"20"'
    # json.Marshal: <, >, &, U+2028 and U+2029 escaped; integral numbers without a fraction.
    assert gotemplate.render("{{ toJson . }}", {"s": "<&>\u2028\u2029\n", "n": 2.0}) == \
        '{"n":2,"s":"\\u003c\\u0026\\u003e\\u2028\\u2029\\n"}'
    assert gotemplate.render('{{ printf "%s-%v:%%" .a .b }}', {"a": "x", "b": 2}) == "x-2:%"
    # `:=` declares in the block, `=` assigns the variable outside it.
    assert gotemplate.render("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}", {}) == "2"
    assert gotemplate.render('{{ (printf "%s" "a b") | quote }}', {}) == '"a b"'


def test_the_renderer_refuses_what_it_does_not_know():
    with pytest.raises(gotemplate.TemplateError):
        gotemplate.render("{{ .x | upper }}", {"x": "a"})
    with pytest.raises(gotemplate.TemplateError):
        gotemplate.render("{{ with .x }}{{ end }}", {"x": "a"})
    for unsupported in ['{{ $y = 1 }}', '{{ printf "%d" 1 }}', '{{ printf "%s" 1 }}', "{{ .f }}", "{{ .m }}",
                        '{{ (dict "a" 1).a }}', '{{ mul 4 "x" }}']:
        with pytest.raises(gotemplate.TemplateError):
            gotemplate.render(unsupported, {"f": 1.5, "m": 1e6})


def test_cargo_lambda_deploy_settings_match_the_manifests(docs):
    import tomllib
    for function in v.FUNCTIONS:
        cargo = tomllib.loads((v.ROOT / "crates" / function / "Cargo.toml").read_text())
        deploy = cargo["package"]["metadata"]["lambda"]["deploy"]
        manifest = next(d for d in docs if d.kind == "Function" and d.name == f"crossplane-lambda-{function}")
        p = manifest.body["spec"]["forProvider"]
        assert (deploy["memory"], deploy["timeout"], deploy["runtime"]) == (p["memorySize"], p["timeout"], p["runtime"])
        for key, value in p["environment"]["variables"].items():
            assert deploy["env"].get(key) == value, f"{function}: {key} differs between Cargo.toml and infra/"


def test_publish_uploads_the_zips_and_updates_the_manifests(tmp_path, crds):
    import os
    import shutil
    import boto3
    if not os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1"):
        pytest.fail("this test talks to moto on loopback: run it with `make test`")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="publish-test-artifacts")
    lambda_dir = tmp_path / "lambda"
    for function in v.FUNCTIONS:
        (lambda_dir / function).mkdir(parents=True)
        (lambda_dir / function / "bootstrap.zip").write_bytes(f"zip of {function}".encode())
    infra = tmp_path / "infra"
    shutil.copytree(v.INFRA, infra)
    command = [str(v.ROOT / ".venv/bin/python"), str(v.INFRA / "publish.py"), "--bucket", "publish-test-artifacts",
               "--region", "us-east-1", "--lambda-dir", str(lambda_dir), "--infra", str(infra)]
    for _ in range(2):  # twice: the second finds the zips already uploaded
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    assert "already there" in out.stdout
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="publish-test-artifacts")["Contents"])
    assert len(keys) == 3 and all(k.endswith("/bootstrap.zip") for k in keys)
    published = v.load_documents(infra)
    tagger = next(d for d in published if d.kind == "Function" and d.name == "crossplane-lambda-tagger")
    p = tagger.body["spec"]["forProvider"]
    assert p["s3Bucket"] == "publish-test-artifacts" and p["s3Key"] in keys
    import base64
    import hashlib
    assert p["sourceCodeHash"] == base64.b64encode(hashlib.sha256(b"zip of tagger").digest()).decode()
    assert all(not v.validate_document(d, crds, v.unvalidated_kinds()) for d in published)


def test_secret_syncer_may_read_the_master_secrets_it_reads(docs):
    assert v.check_master_secret_grants(docs) == []
    # Without DescribeSecret on rds!* (the rotation's owner lookup), in any one policy: refused.
    for name in ("crossplane-lambda-secret-syncer", "crossplane-lambda-secret-syncer-member"):
        broken = _copy_where(docs, lambda d: d.kind == "Policy" and v.aws_name(d) == name,
                             _statement("CodeMasterUserSecrets",
                                        lambda s: s.__setitem__("Action", ["secretsmanager:GetSecretValue"])))
        problems = v.check_master_secret_grants(broken)
        assert len(problems) == 1 and name in problems[0] \
            and "the code needs ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']" in problems[0], problems
    # A declaration naming an operation the code does not declare is an error.
    source = (v.ROOT / "crates" / "secret-syncer" / "src" / "lib.rs").read_text().replace(
        '"Secrets Manager.DescribeSecret", "Secrets Manager.GetSecretValue"]',
        '"Secrets Manager.DescribeSecret", "Secrets Manager.ListSecrets"]')
    with pytest.raises(AssertionError, match="ListSecrets"):
        v.check_master_secret_grants(docs, source)
