"""Looks at a tenant's bucket on the store itself, with the tenant's own credentials (its role,
assumed with its ExternalId), never through the proxy: what really changed there.

Usage: store_view.py '{"endpoint": ..., "key": ..., "secret": ..., "role_arn": ...,
                       "external_id": ..., "bucket": ..., "op": "list"|"put"|"delete"|"acl",
                       "object": ..., "data": text, "prefix": ...}'
"list" (of the keys under "prefix", if given) prints {"objects": {key: {"size", "storage_class", "metadata", "tags", "body"}}};
"put" stores `data` under `object` and prints {"status": 200}.
"""

import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main():
    # The arguments arrive on standard input: an object body can be larger than one argument may be.
    args = json.loads(sys.stdin.read())
    sts = boto3.client(
        "sts",
        endpoint_url=args["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=args["key"],
        aws_secret_access_key=args["secret"],
    )
    assumed = sts.assume_role(
        RoleArn=args["role_arn"], RoleSessionName="store-view", ExternalId=args["external_id"]
    )["Credentials"]
    s3 = boto3.client(
        "s3",
        endpoint_url=args["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["SessionToken"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    bucket = args["bucket"]
    if args["op"] == "put":
        s3.put_object(Bucket=bucket, Key=args["object"], Body=args["data"].encode("utf-8"))
        print(json.dumps({"status": 200}))
        return
    if args["op"] == "delete":
        s3.delete_object(Bucket=bucket, Key=args["object"])
        print(json.dumps({"status": 204}))
        return
    if args["op"] == "acl":
        grants = s3.get_object_acl(Bucket=bucket, Key=args["object"])["Grants"]
        named = [
            f'{g["Grantee"].get("URI") or g["Grantee"].get("ID", "")} {g["Permission"]}'
            for g in grants
        ]
        print(json.dumps({"grants": sorted(named)}))
        return
    objects = {}
    # Tests share the tenants' buckets: a key another test deletes between the listing and
    # the reads below is left out, as it is gone.
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=args.get("prefix", ""))
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
                tags = s3.get_object_tagging(Bucket=bucket, Key=key).get("TagSet", [])
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read() if item["Size"] < 4096 else b""
            except ClientError as error:
                if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    continue
                raise
            objects[key] = {
                "size": item["Size"],
                "storage_class": head.get("StorageClass", "STANDARD"),
                "metadata": head.get("Metadata", {}),
                "tags": {t["Key"]: t["Value"] for t in tags},
                "body": body.decode("utf-8", "replace"),
            }
    print(json.dumps({"objects": objects}))


if __name__ == "__main__":
    main()
