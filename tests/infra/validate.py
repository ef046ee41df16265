"""Checks of infra/: every manifest against its CRD's openAPIV3Schema (and the provider's
"required parameter" rules), references that resolve, kustomizations that hold together, IAM
policies that grant exactly what each function's code declares it calls, and alarms and
dashboards that name only metrics, dimensions and values the code emits, only functions,
queues and log groups infra/ defines, and notify the alarm topic.

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
    def __init__(self, path, index, body, namespace=None):
        self.path, self.index, self.body = path, index, body
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
        return f"{self.path.relative_to(ROOT)}#{self.index} {self.kind}/{self.name}"


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


def declared_actions(function, source=None):
    """The IAM actions a function's code declares (its AWS_OPERATIONS, crates/F/src/lib.rs)."""
    text = source if source is not None else (ROOT / "crates" / function / "src" / "lib.rs").read_text()
    m = DECLARATION.search(text)
    if not m:
        raise AssertionError(f"crates/{function}/src/lib.rs has no AWS_OPERATIONS declaration")
    body = re.sub(r"//[^\n]*", "", m.group(1))
    return set(re.findall(r'"([a-z0-9-]+:[A-Za-z0-9*]+)"', body))


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
