"""Checks of infra/: every manifest against its CRD's openAPIV3Schema (and the provider's
"required parameter" rules), references that resolve, kustomizations that hold together, and
IAM policies that grant exactly what each function's code declares it calls.

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
}
ARN = re.compile(r"^arn:aws:(lambda|sqs|events):[^:]*:\d+:(?:function:|rule/)?([A-Za-z0-9_.-]+)$")
ARN_KINDS = {"lambda": ("lambda.aws.m.upbound.io", "Function"), "sqs": ("sqs.aws.m.upbound.io", "Queue"),
             "events": ("cloudwatchevents.aws.m.upbound.io", "Rule")}


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
