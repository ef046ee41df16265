"""Checks of infra/: every manifest against its CRD's openAPIV3Schema (and the provider's
"required parameter" rules), references that resolve, kustomizations that hold together, IAM
policies that grant exactly what each function's code declares it calls, and alarms and
dashboards that name only metrics, dimensions and values the code emits, only functions,
queues and log groups infra/ defines, and notify the alarm topic; the kustomizations rendered
(overlays included) as kustomize does; the workload accounts' roles (AWS_OPERATIONS less
HOME_OPERATIONS, trusting the function's role with an ExternalId) and event forwarding; the
sweep's schedules; the permissions that let each rule invoke its functions; and the worked
example of many accounts.

Each check returns a list of problems (empty when all is well), so a test can show them all
and a deliberately broken copy can be checked for the problem it should cause.
"""
import copy
import json
import pathlib
import re

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
HERE = pathlib.Path(__file__).resolve().parent
FUNCTIONS = ["tagger", "secret-syncer", "slack-notifier"]
BUILTIN = {("v1", "Namespace"), ("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
           ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")}


class Doc:
    def __init__(self, path, index, body, namespace=None, via=None):
        self.path, self.index, self.body, self.via = path, index, body, via
        self.namespace = (body.get("metadata") or {}).get("namespace") or namespace

    @property
    def api_version(self):
        return self.body.get("apiVersion", "")

    @property
    def kind(self):
        return self.body.get("kind", "")

    @property
    def name(self):
        return (self.body.get("metadata") or {}).get("name")

    def where(self):
        at = f"{_relative(self.path)}#{self.index} {self.kind}/{self.name}"
        # A document rendered by a kustomization: which one, and where it put it.
        return f"{at} (as {_relative(self.via)}/ renders it, in {self.namespace})" if self.via else at


# --- CRD schemas -------------------------------------------------------------------------

def _to_json_schema(node):
    """A Kubernetes structural schema as JSON Schema, closed where Kubernetes would prune:
    an object with properties accepts no other field, so a typo is an error, not a silent drop."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: _to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _to_json_schema(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_json_schema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("description", "format", "example", "nullable"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


REQUIRED_RULE = re.compile(r"^spec\.forProvider\.(\w+) is a required parameter$")


class Crd:
    def __init__(self, schema, namespaced, required):
        self.schema, self.namespaced, self.required = schema, namespaced, required


def load_crds(directory=HERE / "crds"):
    crds = {}
    for path in sorted(directory.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            raw = version["schema"]["openAPIV3Schema"]
            rules = (raw.get("properties", {}).get("spec", {}) or {}).get("x-kubernetes-validations", [])
            required = [m.group(1) for r in rules if (m := REQUIRED_RULE.match(r.get("message", "")))]
            crds[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = Crd(
                _to_json_schema(raw), spec["scope"] == "Namespaced", required)
    return crds


def xrd_schemas(docs):
    """The composite resources defined in infra/ by CompositeResourceDefinitions."""
    out = {}
    for doc in docs:
        if doc.kind != "CompositeResourceDefinition":
            continue
        spec = doc.body["spec"]
        for version in spec["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            # Crossplane adds its own fields (crossplane, compositionRef, ...) to spec and status.
            for part in ("spec", "status"):
                schema.get("properties", {}).get(part, {})["x-kubernetes-preserve-unknown-fields"] = True
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            schema["properties"]["apiVersion"] = {"type": "string"}
            schema["properties"]["kind"] = {"type": "string"}
            out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = Crd(
                _to_json_schema(schema), spec.get("scope", "Namespaced") == "Namespaced", [])
    return out


def apply_defaults(schema, value):
    """Fills in the defaults of a (Kubernetes) schema, as the API server does on admission."""
    if isinstance(value, dict):
        for key, prop in (schema.get("properties") or {}).items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
            if key in value:
                apply_defaults(prop, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)
    return value


def unvalidated_kinds(path=HERE / "unvalidated.txt"):
    kinds = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            api_version, kind = line.split()
            kinds.add((api_version, kind))
    return kinds


# --- documents ---------------------------------------------------------------------------

def load_documents(infra=INFRA):
    """Every document under infra/ but the kustomizations, with the namespace a kustomization
    gives it."""
    docs = []
    for path in sorted(infra.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        namespace = _kustomize_namespace(path.parent, infra)
        for index, body in enumerate(yaml.safe_load_all(path.read_text())):
            if body:
                docs.append(Doc(path, index, body, namespace))
    return docs


def _kustomize_namespace(directory, infra):
    while True:
        k = directory / "kustomization.yaml"
        if k.exists():
            return (yaml.safe_load(k.read_text()) or {}).get("namespace")
        if directory == infra or directory == directory.parent:
            return None
        directory = directory.parent


def validate_document(doc, crds, unvalidated=frozenset()):
    key = (doc.api_version, doc.kind)
    problems = []
    if not doc.name:
        problems.append(f"{doc.where()}: metadata.name is missing")
    if key in BUILTIN or key in unvalidated:
        return problems
    crd = crds.get(key)
    if crd is None:
        return problems + [f"{doc.where()}: no CRD schema for {doc.api_version} {doc.kind}"]
    validator = jsonschema.Draft7Validator(crd.schema)
    for error in sorted(validator.iter_errors(doc.body), key=lambda e: list(e.absolute_path)):
        at = ".".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{doc.where()}: {at}: {error.message}")
    spec = doc.body.get("spec") or {}
    for field in crd.required:
        if field not in (spec.get("forProvider") or {}) and field not in (spec.get("initProvider") or {}):
            problems.append(f"{doc.where()}: spec.forProvider.{field} is a required parameter")
    if crd.namespaced and not doc.namespace:
        problems.append(f"{doc.where()}: a namespaced kind without a namespace")
    return problems


# --- references --------------------------------------------------------------------------

# The kind each *Ref field of the manifests names (group prefix, kind).
REF_KINDS = {
    "roleRef": ("iam.aws.m.upbound.io", "Role"),
    "policyArnRef": ("iam.aws.m.upbound.io", "Policy"),
    "functionNameRef": ("lambda.aws.m.upbound.io", "Function"),
    "ruleRef": ("cloudwatchevents.aws.m.upbound.io", "Rule"),
    "logGroupRef": ("cloudwatchlogs.aws.m.upbound.io", "Group"),
    "functionRef": ("pkg.crossplane.io", "Function"),
    "providerConfigRef": ("aws.m.upbound.io", None),
    "topicArnRef": ("sns.aws.m.upbound.io", "Topic"),
    "roleArnRef": ("iam.aws.m.upbound.io", "Role"),
}
ARN = re.compile(r"^arn:aws:(lambda|sqs|events|sns|cloudwatch):[^:]*:\d+:(?:function:|rule/|alarm:)?([A-Za-z0-9_.-]+)$")
ARN_KINDS = {"lambda": ("lambda.aws.m.upbound.io", "Function"), "sqs": ("sqs.aws.m.upbound.io", "Queue"),
             "events": ("cloudwatchevents.aws.m.upbound.io", "Rule"), "sns": ("sns.aws.m.upbound.io", "Topic"),
             "cloudwatch": ("cloudwatch.aws.m.upbound.io", "MetricAlarm")}


def _index_names(docs):
    names = {}
    for doc in docs:
        group = doc.api_version.split("/")[0]
        # A Group's AWS name is its external name (/aws/lambda/...); refs use metadata.name.
        names.setdefault((group, doc.kind), set()).add((doc.namespace, doc.name))
    return names


def _walk(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else key)
            yield key, value, path
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _exists(names, group, kind, name, namespace):
    entries = names.get((group, kind), set())
    return any(n == name and (ns == namespace or ns is None or namespace is None) for ns, n in entries)


def check_references(docs, extra=()):
    """Every *Ref names a resource defined in infra/, and so does every ARN or functionName
    that points at one of ours (a Function, Queue or Rule named crossplane-lambda-*)."""
    names = _index_names(list(docs) + list(extra))
    problems = []
    for doc in docs:
        if doc.kind in ("CompositeResourceDefinition",):
            continue
        for key, value, at in _walk(doc.body.get("spec") or {}):
            # (group, kind, name, namespace): references are namespaced, AWS names are not.
            target = None
            if key.endswith("Refs") and isinstance(value, list):
                # A list of references (e.g. a MetricAlarm's alarmActionsRefs, which names
                # autoscaling Policies, not SNS topics): only the ones this check knows.
                if key[:-1] not in REF_KINDS:
                    problems.append(f"{doc.where()}: {at}.{key}: a reference field tests/infra does not know")
                    continue
                group, kind = REF_KINDS[key[:-1]]
                for ref in value:
                    if not _exists(names, group, kind, ref.get("name"), doc.namespace):
                        problems.append(f"{doc.where()}: {at}.{key} names {kind} {ref.get('name')}, "
                                        "which infra/ does not define")
                continue
            if key.endswith("Ref") and isinstance(value, dict) and "name" in value:
                if key == "compositeTypeRef":
                    continue
                if key not in REF_KINDS:
                    problems.append(f"{doc.where()}: {at}.{key}: a reference field tests/infra does not know")
                    continue
                group, kind = REF_KINDS[key]
                target = (group, kind or value.get("kind", "ProviderConfig"), value["name"], doc.namespace)
            elif key == "functionName" and isinstance(value, str) and value.startswith("crossplane-lambda-"):
                target = ("lambda.aws.m.upbound.io", "Function", value, None)
            elif isinstance(value, str) and (m := ARN.match(value.strip())) and m.group(2).startswith("crossplane-lambda"):
                target = (*ARN_KINDS[m.group(1)], m.group(2), None)
            if target and not _exists(names, *target):
                problems.append(f"{doc.where()}: {at}.{key} names {target[1]} {target[2]}, which infra/ does not define")
        for text_key in ("redrivePolicy",):
            text = ((doc.body.get("spec") or {}).get("forProvider") or {}).get(text_key)
            if text:
                arn = json.loads(text).get("deadLetterTargetArn", "")
                m = ARN.match(arn)
                if not m or not _exists(names, *ARN_KINDS[m.group(1)], m.group(2), None):
                    problems.append(f"{doc.where()}: {text_key} names {arn}, which infra/ does not define")
    return problems


def check_kustomizations(infra=INFRA, separately_applied=("triggers/queue/publishers",)):
    """Every kustomization's resources exist, and every manifest is in one (or documented as
    applied separately)."""
    problems, covered = [], set()
    for k in sorted(infra.rglob("kustomization.yaml")):
        for resource in (yaml.safe_load(k.read_text()) or {}).get("resources", []):
            target = (k.parent / resource).resolve()
            if not target.exists():
                problems.append(f"{k.relative_to(ROOT)}: {resource} does not exist")
            covered.add(target)
    for path in sorted(infra.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        rel = path.parent.relative_to(infra).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in separately_applied):
            continue
        if path.resolve() not in covered and path.parent.resolve() not in covered:
            problems.append(f"{path.relative_to(ROOT)} is in no kustomization")
    return problems


# --- IAM ---------------------------------------------------------------------------------

DECLARATION = re.compile(r"pub const AWS_OPERATIONS: &\[\(&str, &\[&str\]\)\] = &\[(.*?)\n\];", re.S)


def _lib(function, source=None):
    return source if source is not None else (ROOT / "crates" / function / "src" / "lib.rs").read_text()


def declared_actions(function, source=None):
    """The IAM actions a function's code declares (its AWS_OPERATIONS, crates/F/src/lib.rs)."""
    text = _lib(function, source)
    m = DECLARATION.search(text)
    if not m:
        raise AssertionError(f"crates/{function}/src/lib.rs has no AWS_OPERATIONS declaration")
    body = re.sub(r"//[^\n]*", "", m.group(1))
    return set(re.findall(r'"([a-z0-9-]+:[A-Za-z0-9*]+)"', body))


OPERATION = re.compile(r'\(\s*"([^"]+)"\s*,\s*&\[(.*?)\]\s*,?\s*\)', re.S)
HOME_DECLARATION = re.compile(r"pub const HOME_OPERATIONS: &\[&str\] = &\[(.*?)\];", re.S)


def declared_operations(function, source=None):
    """{operation: its IAM actions}, from the function's AWS_OPERATIONS."""
    text = _lib(function, source)
    m = DECLARATION.search(text)
    if not m:
        raise AssertionError(f"crates/{function}/src/lib.rs has no AWS_OPERATIONS declaration")
    operations = {}
    for operation, actions in OPERATION.findall(re.sub(r"//[^\n]*", "", m.group(1))):
        operations.setdefault(operation, set()).update(re.findall(r'"([a-z0-9-]+:[A-Za-z0-9*]+)"', actions))
    return operations


def home_operations(function, source=None):
    """The function's HOME_OPERATIONS (crates/F/src/lib.rs): the operations of its AWS_OPERATIONS
    it makes with its own credentials only, never with a workload account's role."""
    m = HOME_DECLARATION.search(_lib(function, source))
    if not m:
        raise AssertionError(f"crates/{function}/src/lib.rs has no HOME_OPERATIONS declaration")
    return re.findall(r'"([^"]+)"', re.sub(r"//[^\n]*", "", m.group(1)))


def member_actions(function, source=None):
    """The IAM actions the function needs in a workload account: those of its operations but the
    home ones (an action of a home operation that another operation needs too stays)."""
    home = set(home_operations(function, source))
    return set().union(*(actions for operation, actions in declared_operations(function, source).items()
                         if operation not in home))


MASTER_SECRET_DECLARATION = re.compile(r"pub const MASTER_SECRET_OPERATIONS: &\[&str\] = &\[(.*?)\];", re.S)
# In the management account's policy, or a workload account's (whose account is the principal's).
MASTER_SECRETS = re.compile(r"^arn:aws:secretsmanager:\*:(\d{12}|\$\{aws:PrincipalAccount\}):secret:rds!\*$")


def master_secret_actions(source=None):
    """The IAM actions secret-syncer needs on RDS-managed master secrets: those of its
    MASTER_SECRET_OPERATIONS (crates/secret-syncer/src/lib.rs)."""
    m = MASTER_SECRET_DECLARATION.search(_lib("secret-syncer", source))
    if not m:
        raise AssertionError("crates/secret-syncer/src/lib.rs has no MASTER_SECRET_OPERATIONS declaration")
    operations = declared_operations("secret-syncer", source)
    names = re.findall(r'"([^"]+)"', m.group(1))
    missing = [n for n in names if n not in operations]
    if missing:
        raise AssertionError(f"MASTER_SECRET_OPERATIONS names {missing}, which are not in AWS_OPERATIONS")
    return set().union(*(operations[n] for n in names))


def check_master_secret_grants(docs, source=None):
    """Every secret-syncer policy (management and workload accounts) grants, on `rds!*` secrets,
    exactly the actions of MASTER_SECRET_OPERATIONS: the code reads them there, and an action
    granted only on `crossplane/*` fails in AWS (moto does not check IAM)."""
    wanted = master_secret_actions(source)
    problems = []
    names = ("crossplane-lambda-secret-syncer", "crossplane-lambda-secret-syncer-member")
    policies = [d for d in docs if d.kind == "Policy" and aws_name(d) in names]
    if {aws_name(d) for d in policies} != set(names):
        return [f"expected the IAM Policies {names}, found {sorted(aws_name(d) for d in policies)}"]
    for policy in policies:
        statements = _statements(_forward(policy)["policy"])
        granted = set()
        for s in statements:
            if s.get("Effect") == "Allow" and any(MASTER_SECRETS.match(r) for r in _listed(s.get("Resource"))):
                granted.update(_listed(s.get("Action")))
        if granted != wanted:
            problems.append(f"{policy.where()}: grants {sorted(granted)} on rds!* secrets, "
                            f"the code needs {sorted(wanted)} (MASTER_SECRET_OPERATIONS)")
    return problems


def sweeps(function, source=None):
    """Whether the function sweeps: its code invokes itself to continue a sweep (Lambda.Invoke)."""
    return "Lambda.Invoke" in declared_operations(function, source)


def _listed(value):
    return [value] if isinstance(value, str) else list(value or [])


def _statements(text):
    return json.loads(text)["Statement"]


def aws_name(doc):
    """A managed resource's name in AWS: its external name, else its metadata.name."""
    return ((doc.body.get("metadata") or {}).get("annotations") or {}).get("crossplane.io/external-name") or doc.name


def management_account(docs):
    """The account the functions run in: their execution roles trust Lambda from it only."""
    accounts = set()
    for doc in docs:
        if doc.kind == "Role" and doc.name in {f"crossplane-lambda-{f}" for f in FUNCTIONS}:
            for s in _statements(doc.body["spec"]["forProvider"]["assumeRolePolicy"]):
                if s.get("Principal") == {"Service": "lambda.amazonaws.com"}:
                    accounts.add(((s.get("Condition") or {}).get("StringEquals") or {}).get("aws:SourceAccount"))
    if len(accounts) != 1:
        raise AssertionError(f"the functions' roles name no one account (aws:SourceAccount): {accounts}")
    return accounts.pop()


def function_arn(docs, function):
    """The ARN of one of our functions, as infra/ deploys it."""
    name = f"crossplane-lambda-{function}"
    manifest = next(d for d in docs if d.kind == "Function" and d.api_version.startswith("lambda.") and d.name == name)
    return f"arn:aws:lambda:{manifest.body['spec']['forProvider']['region']}:{management_account(docs)}:function:{name}"


def policy_code_actions(policy_doc):
    """The actions of a Policy's `Code*` statements (the other statements are what the Lambda
    service needs on the function's behalf: logs, tracing, its queue, its failure destination)."""
    policy = json.loads(policy_doc.body["spec"]["forProvider"]["policy"])
    actions = set()
    for statement in policy["Statement"]:
        if statement.get("Sid", "").startswith("Code"):
            listed = statement["Action"]
            actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def check_policies(docs, sources=None):
    problems = []
    for function in FUNCTIONS:
        name = f"crossplane-lambda-{function}"
        policies = [d for d in docs if d.kind == "Policy" and d.name == name]
        if len(policies) != 1:
            problems.append(f"{name}: expected one IAM Policy, found {len(policies)}")
            continue
        declared = declared_actions(function, (sources or {}).get(function))
        granted = policy_code_actions(policies[0])
        for action in sorted(declared - granted):
            problems.append(f"{name}: the code calls {action} but the policy does not grant it")
        for action in sorted(granted - declared):
            problems.append(f"{name}: the policy grants {action} but the code does not declare it")
        attached = [d for d in docs if d.kind == "RolePolicyAttachment" and d.name == name]
        links = [(d.body["spec"]["forProvider"].get("roleRef", {}).get("name"),
                  d.body["spec"]["forProvider"].get("policyArnRef", {}).get("name")) for d in attached]
        if (name, name) not in links:
            problems.append(f"{name}: the policy is not attached to the function's role")
        functions = [d for d in docs if d.kind == "Function" and d.name == name]
        if not functions or functions[0].body["spec"]["forProvider"].get("roleRef", {}).get("name") != name:
            problems.append(f"{name}: the Function does not run as its own role")
            continue
        problems += _self_and_member_statements(docs, function, _statements(policies[0].body["spec"]["forProvider"]["policy"]))
    return problems


def _self_and_member_statements(docs, function, statements):
    """lambda:InvokeFunction (the sweep's continuation) only on the function itself; sts:AssumeRole
    only on the function's own role in the workload accounts, in one statement of its own."""
    name = f"crossplane-lambda-{function}"
    problems = []
    own = function_arn(docs, function)
    for s in statements:
        if "lambda:InvokeFunction" in _listed(s.get("Action")):
            others = [r for r in _listed(s.get("Resource")) if r not in (own, own + ":*")]
            if others or s.get("NotResource"):
                problems.append(f"{name}: {s.get('Sid')} grants lambda:InvokeFunction on {others or 'NotResource'}, "
                                f"not only on the function itself ({own})")
    member_role = f"arn:aws:iam::*:role/{name}"
    assuming = [s for s in statements if any(a in ("sts:AssumeRole", "sts:*", "*") for a in _listed(s.get("Action")))]
    if len(assuming) != 1:
        problems.append(f"{name}: {len(assuming)} statements grant sts:AssumeRole, not one (on {member_role})")
    for s in assuming:
        if (_listed(s.get("Action")), _listed(s.get("Resource")), s.get("Effect")) != (["sts:AssumeRole"], [member_role], "Allow") \
                or s.get("Condition") or s.get("Sid", "").startswith("Code"):
            problems.append(f"{name}: {s.get('Sid')} must allow exactly sts:AssumeRole on {member_role} "
                            "(not a Code* statement: the SDK calls no AssumeRole of its own)")
    return problems


# --- metrics: what the code emits ---------------------------------------------------------
#
# Read from the Rust sources, as the IAM check reads AWS_OPERATIONS: the metric names and units
# (`METRICS` in crates/common/src/metrics.rs), the dimensions each metric is recorded with (every
# `.event(...)` / `.count(...)` call of the crates' library code, plus the dimensions `Metrics`
# itself adds), and the values the bounded dimensions take (lifecycles, outcomes, error types,
# Slack answer classes, functions, AWS operations, known kinds). `sources` maps a path under the
# repository to its text, to check a changed copy of the code.

METRICS_RS = "crates/common/src/metrics.rs"


def _code(path, sources=None):
    return (sources or {}).get(path) or (ROOT / path).read_text()


def _skip_literal(text, i):
    """The index after a string, raw string, char literal or comment starting at `i`, or `i`."""
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text.startswith("/*", i):
        return text.index("*/", i) + 2
    m = re.compile(r'b?r(#*)"').match(text, i)
    if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
        return text.index('"' + m.group(1), m.end()) + 1 + len(m.group(1))
    if text[i] == '"' or text.startswith('b"', i):
        j = i + (2 if text[i] == "b" else 1)
        while text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        return j + 1
    m = re.compile(r"b?'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'").match(text, i)
    if m:
        return m.end()
    return i


def _balanced(text, open_at):
    """The index after the bracket that closes the one at `open_at` ((, [ or {), skipping
    string and char literals and comments."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack, i = [], open_at
    while i < len(text):
        j = _skip_literal(text, i)
        if j != i:
            i = j
            continue
        ch = text[i]
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                raise AssertionError(f"unbalanced {ch!r} at {i}")
            if not stack:
                return i + 1
        i += 1
    raise AssertionError("unbalanced brackets")


def _split_args(text):
    """Top-level comma-separated arguments of a call's argument text."""
    args, depth, start, i = [], 0, 0, 0
    while i < len(text):
        j = _skip_literal(text, i)
        if j != i:
            i = j
            continue
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    if text[start:].strip():
        args.append(text[start:].strip())
    return args


def _without_tests(text):
    """Library code only: each `#[cfg(test)]` item (a test module, a test function) removed."""
    while (m := re.search(r"#\[cfg\(test\)\]\s*(?:pub\s+)?(?:mod|fn)\b[^{;]*\{", text)):
        text = text[:m.start()] + text[_balanced(text, m.end() - 1):]
    return text


def _fn_body(text, name):
    m = re.search(rf"\bfn {name}\b[^{{]*\{{", text)
    if not m:
        raise AssertionError(f"no fn {name}")
    return text[m.end() - 1:_balanced(text, m.end() - 1)]


def _calls(text, name, method=True):
    """The argument lists of every `.name(...)` call (a method), or `name(...)` (a closure)."""
    for m in re.finditer(rf"\.{name}\(" if method else rf"(?<![\w.]){name}\(", text):
        yield _split_args(text[m.end():_balanced(text, m.end() - 1) - 1])


def _keys(arg):
    """The dimension names of a `&[("Name", value), ...]` argument."""
    return set(re.findall(r'\(\s*"(\w+)"\s*,', arg))


def _library_sources(sources=None):
    paths = {p.relative_to(ROOT).as_posix() for p in (ROOT / "crates").glob("*/src/**/*.rs")}
    paths |= {p for p in (sources or {}) if p.startswith("crates/") and "/src/" in p}
    return {p: _without_tests(_code(p, sources)) for p in sorted(paths) if not p.endswith("/testing.rs")}


class Emitted:
    """What the code emits: `namespace`; `units[name]`; `dimensions[name]`, the set of dimension
    sets (frozensets) each metric is recorded with; `values[dimension]`, the values a bounded
    dimension takes (absent: not checked)."""

    def __init__(self, namespace, units, dimensions, values):
        self.namespace, self.units, self.dimensions, self.values = namespace, units, dimensions, values


def emitted_metrics(sources=None):
    metrics_rs = _code(METRICS_RS, sources)
    namespace = re.search(r'pub const NAMESPACE: &str = "([^"]+)";', metrics_rs).group(1)
    consts = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', metrics_rs))
    listed = re.search(r"pub const METRICS: &\[\(&str, Unit\)\] = &\[(.*?)\];", metrics_rs, re.S)
    if not listed:
        raise AssertionError(f"{METRICS_RS} has no METRICS list")
    units = {consts[c]: u for c, u in re.findall(r"\(\s*([A-Z_]+)\s*,\s*Unit::(\w+)\s*\)", listed.group(1))}
    library = _without_tests(metrics_rs)
    # `Metrics::record` puts Function first; `Metrics::event` adds the event's Lifecycle and Kind.
    always = set(re.findall(r'vec!\[\s*\(\s*"(\w+)"', _fn_body(library, "record")))
    per_event = _keys(_fn_body(library, "event"))
    if not always or not per_event:
        raise AssertionError(f"{METRICS_RS}: cannot read the dimensions Metrics adds")

    dimensions = {name: set() for name in units}
    for path, text in _library_sources(sources).items():
        # `let name = if throttled { AWS_THROTTLES } else { AWS_CALLS };`
        bound = {m.group(1): set(re.findall(r"\b([A-Z][A-Z_]+)\b", m.group(2)))
                 for m in re.finditer(r"let (\w+) = (if [^;]*);", text)}
        for method, extra_at in (("event", 2), ("count", 1)):
            for args in _calls(text, method):
                if len(args) <= extra_at:
                    continue
                head = args[0].split("::")[-1]
                names = {head} if re.fullmatch(r"[A-Z][A-Z_]+", head) else bound.get(head, set())
                names = {consts[n] for n in names if n in consts and consts[n] in units}
                if not names:
                    continue
                dims = always | _keys(args[extra_at]) | (per_event if method == "event" else set())
                for name in names:
                    dimensions[name].add(frozenset(dims))

    values = {
        "Function": {re.search(r'pub const NAME: &str = "([^"]+)";', _code(f"crates/{f}/src/lib.rs", sources)).group(1)
                     for f in FUNCTIONS},
        "Lifecycle": set(re.findall(r'Lifecycle::\w+ => "(\w+)"', _code("crates/common/src/model.rs", sources))),
        "Outcome": set(re.findall(r'OutcomeKind::\w+ => "(\w+)"', _code("crates/common/src/runtime.rs", sources))),
        "ErrorType": set(re.findall(r'HandlerError::\w+\(_\) => "(\w+)"', _code("crates/common/src/error.rs", sources))),
        # Every class `post` hands to its `answered(...)` closure.
        "Class": {v for args in _calls(_without_tests(_code("crates/slack-notifier/src/webhook.rs", sources)),
                                       "answered", method=False)
                  for v in re.findall(r'"(\w+)"', ",".join(args))},
        # `Kind.service`; the code also names kinds it does not know (found by their tags), so
        # a Kind value outside this list is a mistake in infra/, not a kind that cannot occur.
        "Kind": {f"{k}.{s}" for s, k in re.findall(r'service: "(\w+)",\s*kind: "(\w+)"',
                                                   _code("crates/common/src/kinds.rs", sources))},
        "Operation": {op for f in FUNCTIONS
                      for op in re.findall(r'\(\s*"([^"]+\.[^"]+)"\s*,', DECLARATION.search(
                          _code(f"crates/{f}/src/lib.rs", sources)).group(1))},
    }
    return Emitted(namespace, units, {k: {frozenset(d) for d in v} for k, v in dimensions.items()},
                   {k: v for k, v in values.items() if v})


# --- metrics: what infra/ uses ---------------------------------------------------------------

class Use:
    """One metric an alarm or a dashboard names: its namespace and name, its whole dimension
    set, and what it filters on: {dimension: (operator, value)} (("group", None) for GROUP BY)."""

    def __init__(self, where, namespace, metric, dimensions, filters):
        self.where, self.namespace, self.metric = where, namespace, metric
        self.dimensions, self.filters = dimensions, filters


SEARCH = re.compile(r"SEARCH\(\s*'((?:[^'\\]|\\.)*)'\s*,\s*'(\w+)'\s*,\s*(\d+)\s*\)")
MI_IDENT = r'(?:"([^"]+)"|([A-Za-z_]\w*))'
MI_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<fn>\w+)\(\s*" + MI_IDENT + r"\s*\)\s+FROM\s+(?P<from>SCHEMA\(.*?\)|\S+)"
    r"(?:\s+WHERE\s+(?P<where>.*?))?(?:\s+GROUP\s+BY\s+(?P<group>.*?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>.*?))?(?:\s+LIMIT\s+\d+)?\s*$", re.S | re.I)


def parse_search(text, where):
    """SEARCH('{Namespace,Dim,...} MetricName="X" Dim="value" ...', 'Stat', period): the uses
    and the problems (anything outside this subset is a problem, not a silent pass)."""
    uses, problems = [], []
    for m in SEARCH.finditer(text):
        query = m.group(1)
        schema = re.match(r'\s*\{([^}]*)\}\s*', query)
        if not schema:
            problems.append(f"{where}: SEARCH without a {{namespace,dimensions}} schema: {query}")
            continue
        parts = [p.strip().strip('"') for p in schema.group(1).split(",")]
        rest = query[schema.end():]
        terms = re.findall(r'(\w+)\s*=\s*"([^"]*)"', rest)
        if re.sub(r'(\w+)\s*=\s*"([^"]*)"', "", rest).strip():
            problems.append(f"{where}: SEARCH terms other than Name=\"value\" are not read here: {rest.strip()}")
        filters = dict(terms)
        metric = filters.pop("MetricName", None)
        if metric is None:
            problems.append(f"{where}: SEARCH without MetricName=\"...\": {query}")
            continue
        uses.append(Use(where, parts[0], metric, frozenset(parts[1:]), {k: ("=", v) for k, v in filters.items()}))
    if "SEARCH" in text and not SEARCH.search(text):
        problems.append(f"{where}: a SEARCH this check cannot read: {text}")
    return uses, problems


def parse_insights(text, where):
    """A Metrics Insights query: SELECT FN("Metric") FROM SCHEMA("Namespace", "Dim", ...)
    [WHERE "Dim" = 'v' AND ...] [GROUP BY "Dim", ...]. Identifiers must be double-quoted
    (FUNCTION and CLASS, two of our dimension names, are reserved words there)."""
    m = MI_QUERY.match(text)
    if not m:
        return [], [f"{where}: a Metrics Insights query this check cannot read: {text}"]
    problems = []
    if m.group("fn").upper() not in ("SUM", "AVG", "MIN", "MAX", "COUNT"):
        problems.append(f"{where}: {m.group('fn')} is not a Metrics Insights function")
    metric = m.group(2) or m.group(3)
    if m.group(3):
        problems.append(f"{where}: the metric name {metric} must be double-quoted")
    source = m.group("from")
    schema = re.fullmatch(r"SCHEMA\((.*)\)", source, re.S)
    if not schema:
        return [], problems + [f"{where}: FROM {source}: name the dimension set with SCHEMA(...)"]
    idents = [(q or b) for q, b in re.findall(MI_IDENT, schema.group(1))]
    for q, b in re.findall(MI_IDENT, schema.group(1)):
        if b:
            problems.append(f"{where}: the identifier {b} must be double-quoted")
    namespace, dims = idents[0], frozenset(idents[1:])
    filters = {}
    if m.group("where"):
        conditions = re.split(r"\s+AND\s+", m.group("where").strip(), flags=re.I)
        for condition in conditions:
            c = re.fullmatch(MI_IDENT + r"\s*(=|!=)\s*'([^']*)'", condition.strip())
            if not c:
                problems.append(f"{where}: a WHERE condition this check cannot read: {condition}")
                continue
            if c.group(2):
                problems.append(f"{where}: the identifier {c.group(2)} must be double-quoted")
            filters[c.group(1) or c.group(2)] = (c.group(3), c.group(4))
    group = [(q or b) for q, b in re.findall(MI_IDENT, m.group("group") or "")]
    for name in group:
        filters.setdefault(name, ("group", None))
    return [Use(where, namespace, metric, dims, filters)], problems


def _explicit(where, namespace, metric, dimensions):
    return Use(where, namespace, metric, frozenset(dimensions or {}),
               {k: ("=", str(v)) for k, v in (dimensions or {}).items()})


def alarm_uses(doc):
    """The metrics a MetricAlarm names, and the problems of its shape: SEARCH is not allowed in
    an alarm; one query returns data; a math expression names only ids of the alarm's queries;
    a Metrics Insights query returns one time series (no GROUP BY)."""
    p = doc.body["spec"]["forProvider"]
    where = doc.where()
    uses, problems = [], []
    if p.get("metricName"):
        uses.append(_explicit(where, p.get("namespace"), p["metricName"], p.get("dimensions")))
    queries = p.get("metricQuery") or []
    if queries and p.get("metricName"):
        problems.append(f"{where}: both metricName and metricQuery")
    if queries and sum(1 for q in queries if q.get("returnData")) != 1:
        problems.append(f"{where}: exactly one metricQuery must return data")
    ids = {q.get("id") for q in queries}
    for q in queries:
        at = f"{where} metricQuery {q.get('id')}"
        if q.get("metric"):
            metric = q["metric"]
            uses.append(_explicit(at, metric.get("namespace"), metric.get("metricName"), metric.get("dimensions")))
        expression = (q.get("expression") or "").strip()
        if not expression:
            continue
        if re.match(r"SELECT\b", expression, re.I):
            found, trouble = parse_insights(expression, at)
            uses += found
            problems += trouble
            if re.search(r"\bGROUP\s+BY\b", expression, re.I):
                problems.append(f"{at}: an alarm's Metrics Insights query must return one time series (no GROUP BY)")
            if not q.get("period"):
                problems.append(f"{at}: a Metrics Insights query in an alarm needs a period")
        elif "SEARCH" in expression:
            problems.append(f"{at}: SEARCH is not allowed in an alarm")
        else:
            for name in re.findall(r"\b[a-z]\w*\b", expression):
                if name not in ids - {q.get("id")}:
                    problems.append(f"{at}: the expression names {name}, which is not a query of this alarm")
    periods = {q["metric"].get("period") for q in queries if q.get("metric")}
    if len(periods) > 1:
        problems.append(f"{where}: the metrics of a math alarm must share one period")
    return uses, problems


def dashboard_uses(doc):
    """The metrics, alarms and log groups a Dashboard's body names, and its problems."""
    where = doc.where()
    body = json.loads(doc.body["spec"]["forProvider"]["dashboardBody"])
    region = doc.body["spec"]["forProvider"].get("region")
    uses, problems, alarms, log_groups = [], [], [], []
    for i, widget in enumerate(body.get("widgets") or []):
        props = widget.get("properties") or {}
        at = f"{where} widget {i} ({props.get('title', widget.get('type'))})"
        if widget.get("type") in ("metric", "log") and props.get("region") != region:
            problems.append(f"{at}: region {props.get('region')} is not the dashboard's {region}")
        if widget.get("type") == "metric":
            for row in props.get("metrics") or []:
                items = [x for x in row if not isinstance(x, dict)]
                options = [x for x in row if isinstance(x, dict)]
                if any(x in (".", "...") for x in items):
                    problems.append(f"{at}: write metric rows out ('.' and '...' are not read here)")
                    continue
                if items:
                    if len(items) % 2:
                        problems.append(f"{at}: a metric row must be namespace, name, then name/value pairs: {row}")
                        continue
                    uses.append(_explicit(at, items[0], items[1], dict(zip(items[2::2], items[3::2]))))
                for option in options:
                    expression = option.get("expression") or ""
                    if re.match(r"\s*SELECT\b", expression, re.I):
                        found, trouble = parse_insights(expression, at)
                    else:
                        found, trouble = parse_search(expression, at)
                    uses += found
                    problems += trouble
        elif widget.get("type") == "alarm":
            alarms += [(at, arn) for arn in props.get("alarms") or []]
        elif widget.get("type") == "log":
            log_groups += [(at, g) for g in re.findall(r"SOURCE\s+'([^']+)'", props.get("query", ""))]
        elif widget.get("type") != "text":
            problems.append(f"{at}: a widget of type {widget.get('type')} is not read here")
    return uses, problems, alarms, log_groups


# AWS's own metrics that infra/ may name, with the dimension that names our resource.
AWS_METRICS = {
    "AWS/Lambda": ({"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions",
                    "DeadLetterErrors", "DestinationDeliveryFailures", "AsyncEventsDropped"}, "FunctionName"),
    "AWS/SQS": ({"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage",
                 "ApproximateNumberOfMessagesNotVisible", "NumberOfMessagesSent", "NumberOfMessagesReceived",
                 "NumberOfMessagesDeleted"}, "QueueName"),
}


def check_use(use, emitted, defined):
    """A use against what the code emits (our namespace) or what infra/ defines (AWS's)."""
    problems = []
    if use.namespace == emitted.namespace:
        if use.metric not in emitted.units:
            return [f"{use.where}: {use.metric} is not a metric the code emits (METRICS: "
                    f"{', '.join(sorted(emitted.units))})"]
        sets = emitted.dimensions[use.metric]
        if use.dimensions not in sets:
            problems.append(f"{use.where}: {use.metric} with dimensions {{{', '.join(sorted(use.dimensions))}}}: "
                            f"the code emits it with " + " or ".join(
                                "{" + ", ".join(sorted(s)) + "}" for s in sorted(sets, key=sorted)))
        for name, (op, value) in sorted(use.filters.items()):
            if name not in use.dimensions:
                problems.append(f"{use.where}: {name} is not a dimension of {use.metric} here")
            elif value is not None and name in emitted.values and value not in emitted.values[name]:
                problems.append(f"{use.where}: {name} {value!r} is not a value the code emits "
                                f"({', '.join(sorted(emitted.values[name]))})")
    elif use.namespace in AWS_METRICS:
        known, dimension = AWS_METRICS[use.namespace]
        if use.metric not in known:
            problems.append(f"{use.where}: {use.metric} is not a {use.namespace} metric this check knows")
        if use.dimensions != {dimension}:
            problems.append(f"{use.where}: {use.namespace} {use.metric} by {sorted(use.dimensions)}, not by {dimension}")
        value = use.filters.get(dimension, (None, None))[1]
        if value not in defined.get(dimension, set()):
            problems.append(f"{use.where}: {dimension} {value}, which infra/ does not define")
    else:
        problems.append(f"{use.where}: namespace {use.namespace} is not one this check knows")
    return problems


def _aws_names(docs):
    """The AWS names of our functions, queues, log groups and alarms (their external names)."""
    def name(doc):
        return ((doc.body.get("metadata") or {}).get("annotations") or {}).get("crossplane.io/external-name") or doc.name
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc.kind, set()).add(name(doc))
    return {"FunctionName": {n for n in by_kind.get("Function", set()) if n.startswith("crossplane-lambda-")},
            "QueueName": by_kind.get("Queue", set()), "LogGroup": by_kind.get("Group", set()),
            "Alarm": by_kind.get("MetricAlarm", set())}


def metric_uses(docs):
    uses, problems, alarms, log_groups = [], [], [], []
    for doc in docs:
        if doc.kind == "MetricAlarm":
            found, trouble = alarm_uses(doc)
            uses += found
            problems += trouble
        elif doc.kind == "Dashboard":
            found, trouble, named_alarms, groups = dashboard_uses(doc)
            uses += found
            problems += trouble
            alarms += named_alarms
            log_groups += groups
    return uses, problems, alarms, log_groups


def check_metrics(docs, sources=None):
    """Every metric and dimension the alarms and dashboards name in our namespace is one the
    code emits, with values it emits; every function, queue, log group and alarm they name
    is defined in infra/."""
    emitted = emitted_metrics(sources)
    problems = [f"{METRICS_RS}: {name} is in METRICS, but no call records it"
                for name, sets in emitted.dimensions.items() if not sets]
    defined = _aws_names(docs)
    uses, found, alarms, log_groups = metric_uses(docs)
    problems += found
    for use in uses:
        problems += check_use(use, emitted, defined)
    for at, arn in alarms:
        m = ARN.match(arn)
        if not m or m.group(1) != "cloudwatch" or m.group(2) not in defined["Alarm"]:
            problems.append(f"{at}: alarm {arn}, which infra/ does not define")
    for at, group in log_groups:
        if group not in defined["LogGroup"]:
            problems.append(f"{at}: log group {group}, which infra/ does not define")
    return problems


# --- alarms: what they cover and whom they tell ---------------------------------------------

def _dead_letter_queues(docs):
    """The queues infra/ sends what failed to: redrive targets, EventBridge targets' dead-letter
    config, asynchronous invocations' on-failure destinations."""
    queues = set()
    for doc in docs:
        p = (doc.body.get("spec") or {}).get("forProvider") or {}
        arns = [json.loads(p["redrivePolicy"]).get("deadLetterTargetArn", "")] if p.get("redrivePolicy") else []
        arns.append((p.get("deadLetterConfig") or {}).get("arn", ""))
        arns.append(((p.get("destinationConfig") or {}).get("onFailure") or {}).get("destination", ""))
        for arn in arns:
            if (m := ARN.match(arn or "")) and m.group(1) == "sqs":
                queues.add(m.group(2))
    return queues


def _watches(uses, namespace, metric, **filters):
    return any(u.namespace == namespace and u.metric == metric
               and all(u.filters.get(k, (None, None))[1] == v for k, v in filters.items()) for u in uses)


ALARM_TOPIC = "crossplane-lambda-alarms"


def check_alarms(docs, sources=None):
    """The alarms the design asks for exist (errors and throttles per function, refused and
    permanent failures per function, every dead-letter queue, Slack delivery failures of every
    failing answer class the code has), and every alarm notifies the alarm topic, whose policy
    lets it publish."""
    problems = []
    alarms = [d for d in docs if d.kind == "MetricAlarm"]
    per_alarm = {d.name: alarm_uses(d)[0] for d in alarms}
    everything = [u for found in per_alarm.values() for u in found]
    emitted = emitted_metrics(sources)

    def alarmed(what, namespace, metric, **filters):
        if not _watches(everything, namespace, metric, **filters):
            problems.append(f"no alarm on {what}")

    for function in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            alarmed(f"{metric} of crossplane-lambda-{function}", "AWS/Lambda", metric,
                    FunctionName=f"crossplane-lambda-{function}")
        alarmed(f"events {function} refused", emitted.namespace, "Events", Function=function, Outcome="refused")
        alarmed(f"permanent failures of {function}", emitted.namespace, "EventErrors",
                Function=function, ErrorType="PermanentFailure")
    for queue in sorted(_dead_letter_queues(docs)):
        alarmed(f"the dead-letter queue {queue}", "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue)
    failing = emitted.values.get("Class", set()) - {"ok", "rate_limited"}
    watched = {u.filters["Class"][1] for u in everything if u.namespace == emitted.namespace
               and u.metric == "SlackAnswers" and "Class" in u.filters}
    for cls in sorted(failing - watched):
        problems.append(f"no alarm on Slack answers of class {cls}")

    topic = next((d for d in docs if d.kind == "Topic" and d.name == ALARM_TOPIC), None)
    if topic is None:
        return problems + [f"no Topic {ALARM_TOPIC}"]
    arn = f"arn:aws:sns:{topic.body['spec']['forProvider']['region']}:123456789012:{ALARM_TOPIC}"
    policy = json.loads(topic.body["spec"]["forProvider"].get("policy") or '{"Statement": []}')
    patterns = [s.get("Condition", {}).get("ArnLike", {}).get("aws:SourceArn", "") for s in policy["Statement"]
                if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} and s.get("Effect") == "Allow"]
    for alarm in alarms:
        p = alarm.body["spec"]["forProvider"]
        where = alarm.where()
        if p.get("actionsEnabled") is False:
            problems.append(f"{where}: actions are disabled")
        if p.get("alarmActions") != [arn]:
            problems.append(f"{where}: alarmActions {p.get('alarmActions')}, not [{arn}]")
        for field in ("okActions", "insufficientDataActions"):
            if any(a != arn for a in p.get(field) or []):
                problems.append(f"{where}: {field} {p.get(field)} go elsewhere than {arn}")
        for field in ("alarmActionsRefs", "okActionsRefs", "alarmActionsSelector", "okActionsSelector"):
            if field in p:
                problems.append(f"{where}: {field} selects autoscaling Policies, not the topic")
        alarm_arn = f"arn:aws:cloudwatch:{p.get('region')}:123456789012:alarm:{alarm.name}"
        if not any(re.fullmatch(re.escape(pat).replace(r"\*", ".*").replace(r"\?", "."), alarm_arn)
                   for pat in patterns):
            problems.append(f"{where}: the topic's policy does not let {alarm_arn} publish")
    return problems


# --- kustomize: the overlays, rendered -------------------------------------------------------
#
# The part of kustomize that infra/ uses, done as kustomize does it (tests/infra compares the
# two with `kubectl kustomize` where kubectl is installed): `resources` (files inside the
# kustomization's directory, and directories, rendered first; never a directory holding one
# being rendered), `patches` given inline as JSON 6902 operations (add, replace, remove) on the
# resources a target selects by group, version, kind and name (matched exactly), then
# `namespace`, which kustomize sets on every resource but the built-in cluster-scoped kinds, and
# which renames a Namespace. Any other field is an error here, and so is a patch that selects
# nothing: a kustomization cannot use what this renderer would get wrong.

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "patches"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass", "PriorityClass", "APIService", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration"}


class KustomizeError(Exception):
    pass


def _relative(path):
    return path.relative_to(ROOT) if ROOT in path.parents else path


def _kustomization(directory):
    return yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}


def _json_patch(body, operation, where):
    op, path = operation.get("op"), operation.get("path", "")
    if op not in ("add", "replace", "remove") or not path.startswith("/"):
        raise KustomizeError(f"{where}: {operation}: only add, replace and remove, on a JSON pointer")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
    try:
        parent = body
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" and op == "add" else int(last)
            if op == "add":
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "replace":
                parent[index] = copy.deepcopy(operation["value"])
            else:
                del parent[index]
        elif op != "add" and last not in parent:
            raise KeyError(last)
        elif op == "remove":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(operation["value"])
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise KustomizeError(f"{where}: {op} {path}: the document has no such path ({e})") from None


def _selects(selector, body):
    api_version = body.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    actual = {"group": group, "version": version, "kind": body.get("kind"),
              "name": (body.get("metadata") or {}).get("name")}
    return all(actual[key] == value for key, value in selector.items())


def _render(directory, visiting):
    """[(path, index, body)] of one kustomization."""
    where = _relative(directory / "kustomization.yaml")
    k = _kustomization(directory)
    if set(k) - KUSTOMIZATION_FIELDS:
        raise KustomizeError(f"{where}: {sorted(set(k) - KUSTOMIZATION_FIELDS)}: fields this renderer does not know")
    out = []
    for resource in k.get("resources") or []:
        target = (directory / resource).resolve()
        if target.is_dir():
            if any(target == v or target in v.parents for v in visiting + (directory,)):
                raise KustomizeError(f"{where}: {resource}: a directory holding one being rendered (kustomize: cycle)")
            if not (target / "kustomization.yaml").exists():
                raise KustomizeError(f"{where}: {resource}: a directory without a kustomization.yaml")
            out += _render(target, visiting + (directory,))
        elif target.is_file():
            if directory not in target.parents:
                raise KustomizeError(f"{where}: {resource}: a file outside the kustomization's directory")
            out += [(target, i, body) for i, body in enumerate(yaml.safe_load_all(target.read_text())) if body]
        else:
            raise KustomizeError(f"{where}: {resource} does not exist")
    for patch in k.get("patches") or []:
        selector = patch.get("target") or {}
        if set(patch) - {"target", "patch"} or set(selector) - {"group", "version", "kind", "name"} \
                or not isinstance(patch.get("patch"), str):
            raise KustomizeError(f"{where}: a patch this renderer does not know: {patch}")
        operations = yaml.safe_load(patch["patch"])
        if not isinstance(operations, list):
            raise KustomizeError(f"{where}: a patch that is not a list of JSON 6902 operations")
        selected = [body for _, _, body in out if _selects(selector, body)]
        if not selected:
            raise KustomizeError(f"{where}: a patch selects nothing: {selector}")
        for body in selected:
            for operation in operations:
                _json_patch(body, operation, where)
    namespace = k.get("namespace")
    for _, _, body in out if namespace else []:
        if (body.get("apiVersion"), body.get("kind")) == ("v1", "Namespace"):
            body["metadata"]["name"] = namespace
        elif body.get("kind") not in CLUSTER_SCOPED:
            body.setdefault("metadata", {})["namespace"] = namespace
    seen = set()
    for _, _, body in out:
        key = (body.get("apiVersion"), body.get("kind"), (body.get("metadata") or {}).get("namespace"),
               (body.get("metadata") or {}).get("name"))
        if key in seen:
            raise KustomizeError(f"{where}: {key} twice (kustomize: an already registered id)")
        seen.add(key)
    return out


def render_kustomization(directory):
    """The documents `kubectl kustomize directory` gives, as Docs that name the file each comes
    from (and the kustomization that rendered it)."""
    directory = pathlib.Path(directory).resolve()
    return [Doc(path, index, body, via=directory) for path, index, body in _render(directory, ())]


def kustomization_roots(infra=INFRA):
    """The kustomizations no other one includes: what a user applies (infra/, infra/examples, ...)."""
    directories = {k.parent.resolve() for k in infra.rglob("kustomization.yaml")}
    included = {(d / r).resolve() for d in directories for r in _kustomization(d).get("resources") or []}
    return sorted(directories - included)


def check_rendered(crds, unvalidated=frozenset(), extra=()):
    """Every kustomization a user applies renders, and what it renders validates against the
    CRDs and its references resolve (in the namespace the kustomization puts them in)."""
    problems = []
    for root in kustomization_roots():
        try:
            docs = render_kustomization(root)
        except KustomizeError as e:
            problems.append(str(e))
            continue
        for doc in docs:
            problems += validate_document(doc, crds, unvalidated)
        problems += check_references(docs, extra=extra)
    return problems


# --- the member accounts ---------------------------------------------------------------------
#
# infra/member-account is applied in every workload account (one namespace and ProviderConfig
# each): the role each function assumes there, the forwarding of events to the management
# account; infra/member-account/management is the management account's side (its bus policy).

MEMBER = INFRA / "member-account"
EVENT_RULE = ("cloudwatchevents.aws.m.upbound.io", "Rule")


def _member(doc):
    return MEMBER in doc.path.parents and (MEMBER / "management") not in doc.path.parents


def _forward(doc):
    return doc.body["spec"]["forProvider"]


def _attached_policies(docs, role, namespace):
    names = [_forward(d).get("policyArnRef", {}).get("name") for d in docs
             if d.kind == "RolePolicyAttachment" and d.namespace == namespace and _forward(d).get("roleRef", {}).get("name") == role]
    return [d for d in docs if d.kind == "Policy" and d.namespace == namespace and d.name in names]


def _trust_problems(where, role_doc, principal):
    """The role trusts exactly `principal`, and only with an ExternalId; returns (problems, the ExternalId)."""
    statements = _statements(_forward(role_doc)["assumeRolePolicy"])
    if len(statements) != 1:
        return [f"{where}: its trust policy has {len(statements)} statements, not one"], None
    s = statements[0]
    problems = []
    if s.get("Effect") != "Allow" or _listed(s.get("Action")) != ["sts:AssumeRole"] or "NotPrincipal" in s:
        problems.append(f"{where}: its trust policy must allow sts:AssumeRole, and nothing else")
    if {k: _listed(v) for k, v in (s.get("Principal") or {}).items()} != {"AWS": [principal]}:
        problems.append(f"{where}: trusts {s.get('Principal')}, not only the function's role {principal}")
    external = ((s.get("Condition") or {}).get("StringEquals") or {}).get("sts:ExternalId")
    if not isinstance(external, str) or not external:
        problems.append(f"{where}: its trust policy does not require an sts:ExternalId (StringEquals)")
        external = None
    return problems, external


def member_external_ids(docs):
    """{(namespace, function): the ExternalId the function's role in that workload account requires}."""
    account = management_account(docs)
    out = {}
    for doc in docs:
        for function in FUNCTIONS:
            name = f"crossplane-lambda-{function}"
            if doc.kind == "Role" and aws_name(doc) == name and _member_role(doc):
                out[(doc.namespace, function)] = _trust_problems("", doc, f"arn:aws:iam::{account}:role/{name}")[1]
    return out


def _member_role(doc):
    """A role some AWS principal (not a service) assumes: one in a workload account."""
    return any("AWS" in (s.get("Principal") or {}) for s in _statements(_forward(doc)["assumeRolePolicy"]))


def check_member_roles(docs, sources=None):
    """Per function and workload account (namespace): the role crossplane-lambda-<function> trusts
    exactly the function's execution role in the management account, with an ExternalId, and its
    attached policy's `Code*` statements grant exactly the actions of AWS_OPERATIONS less
    HOME_OPERATIONS (no other statement)."""
    problems = []
    account = management_account(docs)
    namespaces = sorted({d.namespace for d in docs if d.kind == "Role" and _member_role(d)})
    if not namespaces:
        return ["no workload account's roles (infra/member-account)"]
    for function in FUNCTIONS:
        name = f"crossplane-lambda-{function}"
        source = (sources or {}).get(function)
        operations = declared_operations(function, source)
        if set().union(*operations.values()) != declared_actions(function, source):
            problems.append(f"crates/{function}/src/lib.rs: an AWS_OPERATIONS entry tests/infra cannot read")
        for operation in home_operations(function, source):
            if operation not in operations:
                problems.append(f"crates/{function}/src/lib.rs: HOME_OPERATIONS names {operation}, which is not in AWS_OPERATIONS")
        wanted = member_actions(function, source)
        for namespace in namespaces:
            roles = [d for d in docs if d.kind == "Role" and d.namespace == namespace and aws_name(d) == name]
            if len(roles) != 1:
                problems.append(f"{name} in {namespace}: expected one Role, found {len(roles)}")
                continue
            role = roles[0]
            problems += _trust_problems(role.where(), role, f"arn:aws:iam::{account}:role/{name}")[0]
            policies = _attached_policies(docs, role.name, namespace)
            if len(policies) != 1:
                problems.append(f"{role.where()}: expected one attached Policy, found {len(policies)}")
                continue
            statements = _statements(_forward(policies[0])["policy"])
            for s in statements:
                if not s.get("Sid", "").startswith("Code") or s.get("Effect") != "Allow":
                    problems.append(f"{policies[0].where()}: {s.get('Sid')}: a statement the code does not need")
            granted = policy_code_actions(policies[0])
            for action in sorted(wanted - granted):
                problems.append(f"{name} in {namespace}: the code calls {action} there but the policy does not grant it")
            for action in sorted(granted - wanted):
                problems.append(f"{name} in {namespace}: the policy grants {action} but the code does not call it "
                                "there (not declared, or a HOME_OPERATIONS one)")
    return problems


def _pattern(text):
    return json.dumps(json.loads(text), sort_keys=True)


def delivered_patterns(docs):
    """{region: patterns} of the management account's rules that deliver to our functions."""
    rules = {(d.namespace, d.name): d for d in docs if (d.api_version.split("/")[0], d.kind) == EVENT_RULE}
    out = {}
    for t in docs:
        if t.kind == "Target" and (m := ARN.match(_forward(t).get("arn", ""))) and m.group(1) == "lambda":
            rule = rules.get((t.namespace, _forward(t).get("ruleRef", {}).get("name")))
            if rule:
                out.setdefault(_forward(rule)["region"], set()).add(_pattern(_forward(rule)["eventPattern"]))
    return out


def management_bus(docs):
    region = sorted(delivered_patterns(docs))
    if len(region) != 1:
        raise AssertionError(f"the rules that deliver to the functions are in {region}, not in one region")
    return f"arn:aws:events:{region[0]}:{management_account(docs)}:event-bus/default"


def forwarded_patterns(docs):
    """{(namespace, region): patterns} of the rules that forward to the management account's bus,
    and the problems of their targets: the bus, with a role that may put events on it only."""
    bus = management_bus(docs)
    rules = {(d.namespace, d.name): d for d in docs if (d.api_version.split("/")[0], d.kind) == EVENT_RULE}
    out, problems = {}, []
    for t in docs:
        p = _forward(t) if t.kind == "Target" else {}
        if p.get("arn", "").startswith("arn:aws:events:") and ":event-bus/" in p.get("arn", ""):
            if p["arn"] != bus:
                problems.append(f"{t.where()}: forwards to {p['arn']}, not to the management account's bus {bus}")
            rule = rules.get((t.namespace, p.get("ruleRef", {}).get("name")))
            if rule is None or _forward(rule)["region"] != p.get("region"):
                problems.append(f"{t.where()}: its rule is not one of its namespace and region")
                continue
            out.setdefault((t.namespace, p["region"]), set()).add(_pattern(_forward(rule)["eventPattern"]))
            role = p.get("roleArnRef", {}).get("name")
            grants = [(_listed(s.get("Action")), _listed(s.get("Resource")))
                      for policy in _attached_policies(docs, role, t.namespace)
                      for s in _statements(_forward(policy)["policy"])]
            if grants != [(["events:PutEvents"], [bus])]:
                problems.append(f"{t.where()}: its role {role} must grant events:PutEvents on {bus} only: {grants}")
    return out, problems


def check_forwarding(docs):
    """infra/member-account/forwarding forwards exactly what the management account's rules
    deliver to the functions (same patterns), to the management account's event bus, whose
    policy (infra/member-account/management) accepts events:PutEvents on it."""
    management = [d for d in docs if MEMBER not in d.path.parents]
    wanted = set().union(*delivered_patterns(management).values())
    bus = management_bus(management)
    forwarded, problems = forwarded_patterns([d for d in docs if _member(d)] + management)
    if not forwarded:
        problems.append("no rule forwards a workload account's events (infra/member-account/forwarding)")
    for (namespace, region), patterns in sorted(forwarded.items()):
        for pattern in sorted(wanted - patterns):
            problems.append(f"{namespace} {region}: no rule forwards {pattern}")
        for pattern in sorted(patterns - wanted):
            problems.append(f"{namespace} {region}: forwards {pattern}, which no management rule delivers")
    policies = [d for d in docs if d.kind == "BusPolicy"]
    if not any(s.get("Effect") == "Allow" and _listed(s.get("Action")) == ["events:PutEvents"]
               and _listed(s.get("Resource")) == [bus] for d in policies for s in _statements(_forward(d)["policy"])):
        problems.append(f"no BusPolicy lets the workload accounts put events on {bus}")
    return problems


# --- the triggers: who may invoke the functions ------------------------------------------------

def check_invoke_permissions(docs):
    """Every EventBridge target that is one of our functions comes with the Permission that lets
    that rule (and only it) invoke it."""
    problems = []
    for t in docs:
        p = _forward(t) if t.kind == "Target" else {}
        if not ((m := ARN.match(p.get("arn", ""))) and m.group(1) == "lambda"):
            continue
        account = p["arn"].split(":")[4]
        rule = f"arn:aws:events:{p.get('region')}:{account}:rule/{p.get('ruleRef', {}).get('name')}"
        if not any(d.kind == "Permission" and m.group(2) in (_forward(d).get("functionName"),
                                                             _forward(d).get("functionNameRef", {}).get("name"))
                   and (_forward(d).get("principal"), _forward(d).get("sourceArn"), _forward(d).get("action"))
                   == ("events.amazonaws.com", rule, "lambda:InvokeFunction") for d in docs):
            problems.append(f"{t.where()}: no Permission lets {rule} invoke {m.group(2)}")
    return problems


def check_sweep(docs, sources=None):
    """Each function whose code sweeps (it declares Lambda.Invoke, its continuation) has exactly
    one Schedule invoking it with {"sweep": {}}, and no other function has one; the Scheduler's
    role trusts EventBridge Scheduler of the management account only, and may invoke exactly the
    scheduled functions."""
    problems = []
    account = management_account(docs)
    sweeping = {function_arn(docs, f) for f in FUNCTIONS if sweeps(f, (sources or {}).get(f))}
    scheduled, by_role = {}, {}
    for s in (d for d in docs if d.kind == "Schedule"):
        target = _forward(s).get("target") or {}
        scheduled.setdefault(target.get("arn"), []).append(s)
        if target.get("arn") not in sweeping:
            problems.append(f"{s.where()}: invokes {target.get('arn')}, which is not a function that sweeps")
        try:
            if json.loads(target.get("input") or "null") != {"sweep": {}}:
                problems.append(f"{s.where()}: its input is {target.get('input')}, not {{\"sweep\": {{}}}}")
        except json.JSONDecodeError:
            problems.append(f"{s.where()}: its input is not JSON")
        if not _forward(s).get("scheduleExpression", "").startswith(("rate(", "cron(")):
            problems.append(f"{s.where()}: scheduleExpression must be rate(...) or cron(...)")
        by_role.setdefault((s.namespace, target.get("roleArnRef", {}).get("name")), set()).add(target.get("arn"))
    for arn in sorted(sweeping):
        if len(scheduled.get(arn, [])) != 1:
            problems.append(f"{arn} sweeps (its code continues itself: Lambda.Invoke), but "
                            f"{len(scheduled.get(arn, []))} Schedules invoke it, not one")
    for (namespace, role), arns in sorted(by_role.items(), key=str):
        roles = [d for d in docs if d.kind == "Role" and d.namespace == namespace and d.name == role]
        if len(roles) != 1:
            problems.append(f"the Schedules' role {role}: expected one Role, found {len(roles)}")
            continue
        trust = _statements(_forward(roles[0])["assumeRolePolicy"])
        if [(s.get("Principal"), ((s.get("Condition") or {}).get("StringEquals") or {}).get("aws:SourceAccount"))
                for s in trust] != [({"Service": "scheduler.amazonaws.com"}, account)]:
            problems.append(f"{roles[0].where()}: must trust scheduler.amazonaws.com of {account} (aws:SourceAccount) only")
        invokable = {r for policy in _attached_policies(docs, role, namespace) for s in _statements(_forward(policy)["policy"])
                     if "lambda:InvokeFunction" in _listed(s.get("Action")) for r in _listed(s.get("Resource"))}
        if invokable != arns:
            problems.append(f"{roles[0].where()}: may invoke {sorted(invokable)}, not exactly its schedules' {sorted(arns)}")
    return problems


# --- the worked example: many accounts --------------------------------------------------------

EXAMPLE = INFRA / "examples" / "many-accounts"
MEMBER_SETTINGS = ("ALLOWED_ACCOUNTS", "ALLOWED_REGIONS", "ASSUME_ROLE_ARN_TEMPLATE", "ASSUME_ROLE_EXTERNAL_ID")


def check_many_accounts(docs, example=EXAMPLE):
    """The example as it renders (`docs`): each workload account has its namespace and a
    ProviderConfig assuming a role in it; the functions' ALLOWED_ACCOUNTS are the management
    account and those; ASSUME_ROLE_ARN_TEMPLATE names, in each, the function's role there (which
    the function may assume); ASSUME_ROLE_EXTERNAL_ID is what those roles require; every allowed
    region of every workload account forwards the events; the bus policy lists exactly the
    workload accounts; management/ applies what infra/ applies."""
    problems = []
    account = management_account(docs)
    workloads = {}
    for d in (d for d in docs if (d.api_version, d.kind) == ("aws.m.upbound.io/v1beta1", "ProviderConfig")):
        chain = d.body["spec"].get("assumeRoleChain") or [{}]
        m = re.fullmatch(r"arn:aws:iam::(\d{12}):role/[\w+=,.@/-]+", chain[-1].get("roleARN", ""))
        if not m or d.namespace != f"crossplane-lambda-{m.group(1)}":
            problems.append(f"{d.where()}: must assume a role of the account its namespace names")
            continue
        workloads[m.group(1)] = d.namespace
    if len(workloads) < 2:
        problems.append(f"the example has {len(workloads)} workload accounts")
    external_ids = member_external_ids(docs)
    forwarded = forwarded_patterns(docs)[0]
    wanted = set().union(*delivered_patterns(docs).values())
    functions = [d for d in docs if d.kind == "Function" and d.api_version.startswith("lambda.")]
    for f in functions:
        function = f.name.removeprefix("crossplane-lambda-")
        env = _forward(f).get("environment", {}).get("variables", {})
        if any(key not in env for key in MEMBER_SETTINGS):
            problems.append(f"{f.where()}: sets {[k for k in MEMBER_SETTINGS if k in env]}, not all of {list(MEMBER_SETTINGS)}")
            continue
        allowed = [a.strip() for a in env["ALLOWED_ACCOUNTS"].split(",")]
        if sorted(allowed) != sorted({account, *workloads}):
            problems.append(f"{f.where()}: ALLOWED_ACCOUNTS {env['ALLOWED_ACCOUNTS']}: not the management "
                            f"account and the workload accounts {sorted(workloads)}")
        policy = next(d for d in docs if d.kind == "Policy" and d.name == f.name)
        assumable = [r for s in _statements(_forward(policy)["policy"]) if "sts:AssumeRole" in _listed(s.get("Action"))
                     for r in _listed(s.get("Resource"))]
        for workload, namespace in sorted(workloads.items()):
            arn = env["ASSUME_ROLE_ARN_TEMPLATE"].replace("{account}", workload).replace("{function}", function)
            roles = [d for d in docs if d.kind == "Role" and d.namespace == namespace
                     and arn == f"arn:aws:iam::{workload}:role/{aws_name(d)}"]
            if len(roles) != 1:
                problems.append(f"{f.where()}: ASSUME_ROLE_ARN_TEMPLATE gives {arn}, which {namespace} does not define")
            if not any(re.fullmatch(re.escape(r).replace(r"\*", "[^:]*"), arn) for r in assumable):
                problems.append(f"{f.where()}: its policy does not let it assume {arn}")
            if external_ids.get((namespace, function)) != env["ASSUME_ROLE_EXTERNAL_ID"]:
                problems.append(f"{f.where()}: ASSUME_ROLE_EXTERNAL_ID is not the ExternalId its role in {namespace} requires")
            for region in (r.strip() for r in env["ALLOWED_REGIONS"].split(",")):
                if not wanted <= forwarded.get((namespace, region), set()):
                    problems.append(f"{namespace}: the events of {region} (an ALLOWED_REGIONS of {f.name}) are not forwarded")
    if len(functions) != len(FUNCTIONS):
        problems.append(f"the example renders {len(functions)} functions")
    buses = [d for d in docs if d.kind == "BusPolicy"]
    for d in buses:
        for s in _statements(_forward(d)["policy"]):
            principals = sorted(re.sub(r"^arn:aws:iam::(\d{12}):root$", r"\1", p) for p in _listed((s.get("Principal") or {}).get("AWS")))
            if principals != sorted(workloads):
                problems.append(f"{d.where()}: lets {principals} put events, not the workload accounts {sorted(workloads)}")
            callers = _listed(((s.get("Condition") or {}).get("ArnEquals") or {}).get("aws:PrincipalArn"))
            if callers and sorted(callers) != sorted(f"arn:aws:iam::{w}:role/crossplane-lambda-forward-events" for w in workloads):
                problems.append(f"{d.where()}: aws:PrincipalArn {callers}: not each workload account's forwarding role")
    if len(buses) != 1:
        problems.append(f"the example renders {len(buses)} BusPolicies, not one")
    applied = {(INFRA / r).resolve() for r in _kustomization(INFRA).get("resources") or []}
    management = {(example / "management" / r).resolve() for r in _kustomization(example / "management").get("resources") or []}
    if management - {(MEMBER / "management").resolve()} != applied:
        problems.append(f"{(example / 'management').relative_to(ROOT)}: its resources are not those of "
                        "infra/kustomization.yaml (and member-account/management)")
    return problems
