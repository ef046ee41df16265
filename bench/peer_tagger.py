"""The tagger's core job as a plain Python 3 Lambda with boto3: the peer `make bench` compares
the Rust functions with. Not a product: a ready RDS Instance event only, no guard, no batches.

It makes the calls our tagger makes for one event (find the resource and its tags, the policy
once, check the instance is live, write only what is missing), with the boto3 equivalents:
the Resource Groups Tagging API's GetResources by Crossplane's tags instead of
ListTagsForResource on the event's ARN, and RDS AddTagsToResource instead of TagResources.
The clients are created at init, as a Python Lambda does, so init includes importing boto3.
It polls the Runtime API with urllib, as a minimal custom runtime would.
"""
import json
import os
import urllib.request

import boto3

RUNTIME = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"
POLICY_PARAMETER = os.environ.get("TAG_POLICY_PARAMETER")
DERIVED = ("crossplane.io/claim-name", "crossplane.io/claim-namespace", "crossplane.io/composite")
tagging = boto3.client("resourcegroupstaggingapi")
rds = boto3.client("rds")
ssm = boto3.client("ssm")
_policy = None


def policy():
    """The tag policy, read once per process (the tagger caches it for its TTL)."""
    global _policy
    if _policy is None:
        _policy = {"tags": {}, "defaults": {}}
        if POLICY_PARAMETER:
            _policy = json.loads(ssm.get_parameter(Name=POLICY_PARAMETER, WithDecryption=True)["Parameter"]["Value"])
    return _policy


def desired(meta, current):
    """The tags to write: policy tags over derived tags, defaults only where none is set."""
    labels, annotations = meta.get("labels", {}), meta.get("annotations", {})
    want = {}
    prefix = policy().get("labelPrefix")
    if prefix:
        want.update({k[len(prefix):]: v for k, v in labels.items() if k.startswith(prefix) and k != prefix})
    want.update({k: labels[k] for k in DERIVED if k in labels})
    if "crossplane.io/composition-resource-name" in annotations:
        want["crossplane.io/composition-resource-name"] = annotations["crossplane.io/composition-resource-name"]
    if meta.get("namespace"):
        want["crossplane.io/namespace"] = meta["namespace"]
    want.update(policy().get("tags", {}))
    missing = {k: v for k, v in want.items() if current.get(k) != v}
    missing.update({k: v for k, v in policy().get("defaults", {}).items() if k not in want and k not in current})
    return missing


def handle(event):
    obj = event["data"]
    meta = obj["metadata"]
    group = obj["apiVersion"].split("/")[0]
    filters = [{"Key": "crossplane-kind", "Values": [f"{obj['kind']}.{group}".lower()]},
               {"Key": "crossplane-name", "Values": [meta["name"]]}]
    if meta.get("namespace"):
        filters.append({"Key": "crossplane-namespace", "Values": [meta["namespace"]]})
    found = tagging.get_resources(TagFilters=filters, ResourceTypeFilters=["rds:db"])["ResourceTagMappingList"]
    if len(found) != 1:
        return result(event, None, "skipped", f"{len(found)} resources carry the tags")
    arn = found[0]["ResourceARN"]
    missing = desired(meta, {t["Key"]: t["Value"] for t in found[0]["Tags"]})
    if not missing:
        return result(event, arn, "unchanged", "")
    instance = rds.describe_db_instances(DBInstanceIdentifier=arn.rsplit(":", 1)[1])["DBInstances"][0]
    if instance["DBInstanceStatus"] == "deleting":
        return result(event, arn, "skipped", "being deleted")
    rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": k, "Value": v} for k, v in sorted(missing.items())])
    return result(event, arn, "applied", "set " + ", ".join(sorted(missing)))


def result(event, arn, outcome, detail):
    return {"handler": "peer-tagger", "results": [
        {"event": event["id"], "resource": arn, "lifecycle": "ready", "outcome": outcome, "detail": detail}]}


def main():
    while True:
        with urllib.request.urlopen(f"{RUNTIME}/invocation/next") as answer:
            request_id = answer.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.load(answer)
        try:
            path, body = "response", handle(event)
        except Exception as error:  # noqa: BLE001 - reported to the caller, as Lambda's runtime does
            path, body = "error", {"errorType": type(error).__name__, "errorMessage": str(error)}
        post = urllib.request.Request(f"{RUNTIME}/invocation/{request_id}/{path}",
                                      data=json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(post).close()


if __name__ == "__main__":
    main()
