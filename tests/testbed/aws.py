#!/usr/bin/env python3
"""Small AWS helpers for the demo and the end-to-end test, against moto (AWS_ENDPOINT_URL).

  aws.py create-instance ID [--namespace NS] [--tag KEY=VALUE ...]
      an RDS instance as Crossplane's AWS provider creates it, with its crossplane-* tags
  aws.py put-policy NAME FILE_OR_JSON      the tagger's policy as an SSM String parameter
  aws.py tags ARN [--json] [--before FILE] the resource's tags as a table (or JSON); with
                                           --before, marks what changed since that JSON
  aws.py create-table NAME                 the idempotency table (partition key id, TTL expires_at)
  aws.py put-secret NAME VALUE             a Secrets Manager secret (the Slack webhook)
  aws.py secret NAME                       a secret's JSON value, passwords masked
  aws.py parameters PATH                   the parameters under a path, passwords masked
"""
import argparse
import json
import os
import sys

import boto3


def client(service):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                        region_name=os.environ.get("AWS_REGION", "us-east-1"))


def create_instance(args):
    tags = {
        "crossplane-kind": "instance.rds.aws.m.upbound.io",
        "crossplane-name": args.id,
        "crossplane-namespace": args.namespace,
        "crossplane-providerconfig": "default",
        "crossplane-providerconfig-kind": "ProviderConfig",
    }
    for pair in args.tag:
        key, _, value = pair.partition("=")
        tags[key] = value
    out = client("rds").create_db_instance(
        DBInstanceIdentifier=args.id, DBInstanceClass="db.t4g.micro", Engine="postgres",
        EngineVersion="16.4", DBName="orders", MasterUsername="orders_admin",
        ManageMasterUserPassword=True, AllocatedStorage=20,
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    print(out["DBInstance"]["DBInstanceArn"])


def put_policy(args):
    text = open(args.policy).read() if os.path.exists(args.policy) else args.policy
    json.loads(text)
    client("ssm").put_parameter(Name=args.name, Value=text, Type="String", Overwrite=True)


def tags(args):
    found = client("rds").list_tags_for_resource(ResourceName=args.arn)["TagList"]
    current = {t["Key"]: t["Value"] for t in found}
    if args.json:
        print(json.dumps(current, sort_keys=True))
        return
    before = json.load(open(args.before)) if args.before else None
    width = max(len(k) for k in current) if current else 10
    for key in sorted(current):
        mark = "  "
        if before is not None and key not in before:
            mark = "+ "
        elif before is not None and before[key] != current[key]:
            mark = "~ "
        was = f"   (was {before[key]!r})" if mark == "~ " else ""
        print(f"  {mark}{key:<{width}}  {current[key]}{was}")


def mask(key, value):
    return "********" if key.endswith("password") else value


def secret(args):
    value = json.loads(client("secretsmanager").get_secret_value(SecretId=args.name)["SecretString"])
    versions = client("secretsmanager").list_secret_version_ids(SecretId=args.name)["Versions"]
    print(json.dumps({k: mask(k, v) for k, v in value.items()}, indent=2, sort_keys=True))
    print(f"({len(versions)} version{'s' if len(versions) != 1 else ''})")


def parameters(args):
    found = client("ssm").get_parameters_by_path(Path=args.path, WithDecryption=True)["Parameters"]
    for p in sorted(found, key=lambda p: p["Name"]):
        print(f"  {p['Name']:<48} {p['Type']:<13} {mask(p['Name'], p['Value'])}  (version {p['Version']})")


def create_table(args):
    dynamodb = client("dynamodb")
    try:
        dynamodb.create_table(
            TableName=args.name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    except dynamodb.exceptions.ResourceInUseException:
        pass
    dynamodb.update_time_to_live(TableName=args.name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires_at"})


def put_secret(args):
    client("secretsmanager").create_secret(Name=args.name, SecretString=args.value)


def untag(args):
    """A tag removed by hand: no event will tell the functions."""
    client("rds").remove_tags_from_resource(ResourceName=args.arn, TagKeys=[args.key])


def master_secret(args):
    """The ARN of the master user secret RDS manages for the instance."""
    found = client("rds").describe_db_instances(DBInstanceIdentifier=args.id)["DBInstances"][0]
    print(found["MasterUserSecret"]["SecretArn"])


def rotate(args):
    """What a rotation of the RDS-managed master secret does: a new password in a new version."""
    secrets = client("secretsmanager")
    current = json.loads(secrets.get_secret_value(SecretId=args.secret)["SecretString"])
    current["password"] = "rotated-" + os.urandom(9).hex()
    secrets.put_secret_value(SecretId=args.secret, SecretString=json.dumps(current))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create-instance")
    p.add_argument("id")
    p.add_argument("--namespace", default="team-a")
    p.add_argument("--tag", action="append", default=[])
    p.set_defaults(run=create_instance)
    p = sub.add_parser("put-policy")
    p.add_argument("name")
    p.add_argument("policy")
    p.set_defaults(run=put_policy)
    p = sub.add_parser("tags")
    p.add_argument("arn")
    p.add_argument("--json", action="store_true")
    p.add_argument("--before")
    p.set_defaults(run=tags)
    p = sub.add_parser("secret")
    p.add_argument("name")
    p.set_defaults(run=secret)
    p = sub.add_parser("parameters")
    p.add_argument("path")
    p.set_defaults(run=parameters)
    p = sub.add_parser("create-table")
    p.add_argument("name")
    p.set_defaults(run=create_table)
    p = sub.add_parser("put-secret")
    p.add_argument("name")
    p.add_argument("value")
    p.set_defaults(run=put_secret)
    p = sub.add_parser("untag")
    p.add_argument("arn")
    p.add_argument("key")
    p.set_defaults(run=untag)
    p = sub.add_parser("master-secret")
    p.add_argument("id")
    p.set_defaults(run=master_secret)
    p = sub.add_parser("rotate")
    p.add_argument("secret")
    p.set_defaults(run=rotate)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
