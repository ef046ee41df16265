#!/usr/bin/env python3
"""make publish: uploads each function's release zip to S3, where the Crossplane Functions of
infra/functions read it, and writes the new s3Key and sourceCodeHash into those manifests.
Commit the change and let Crossplane (or Argo CD / Flux) roll it out: a new build has a new
hash, so Crossplane updates the function's code.

  publish.py --bucket BUCKET [--region REGION] [--lambda-dir target/lambda] [--infra infra]

The key holds the hash (<function>/<sha256 prefix>/bootstrap.zip): a zip already uploaded is
not uploaded again, and an old manifest keeps pointing at its own build.
"""
import argparse
import base64
import hashlib
import os
import pathlib
import re
import sys

import boto3

FUNCTIONS = ["tagger", "secret-syncer", "slack-notifier"]


def set_field(text, field, value):
    pattern = re.compile(rf"^(\s+{field}: ).*$", re.M)
    if not pattern.search(text):
        raise SystemExit(f"no {field} field to update")
    return pattern.sub(lambda m: m.group(1) + value, text, count=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION"))
    parser.add_argument("--lambda-dir", default="target/lambda", type=pathlib.Path)
    parser.add_argument("--infra", default="infra", type=pathlib.Path)
    args = parser.parse_args()
    s3 = boto3.client("s3", region_name=args.region)
    for function in FUNCTIONS:
        archive = args.lambda_dir / function / "bootstrap.zip"
        if not archive.exists():
            sys.exit(f"{archive} is missing: run `make package` first")
        data = archive.read_bytes()
        digest = hashlib.sha256(data)
        key = f"{function}/{digest.hexdigest()[:16]}/bootstrap.zip"
        source_hash = base64.b64encode(digest.digest()).decode()
        try:
            s3.head_object(Bucket=args.bucket, Key=key)
            uploaded = "already there"
        except s3.exceptions.ClientError:
            s3.put_object(Bucket=args.bucket, Key=key, Body=data)
            uploaded = "uploaded"
        manifest = args.infra / "functions" / f"{function}.yaml"
        text = manifest.read_text()
        for field, value in (("s3Bucket", args.bucket), ("s3Key", key), ("sourceCodeHash", source_hash)):
            text = set_field(text, field, value)
        manifest.write_text(text)
        print(f"{function}: s3://{args.bucket}/{key} ({len(data)} bytes, {uploaded}); sourceCodeHash {source_hash}")


if __name__ == "__main__":
    main()
