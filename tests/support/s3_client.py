"""Runs one S3 call with boto3, as an SDK user of the proxy would, and prints the outcome as
JSON: {"status", "body"|"length"|"url"} or {"status", "code"} for an S3 error.

Usage: s3_client.py '{"endpoint": ..., "key": ..., "secret": ..., "style": "path"|"virtual",
                      "op": "get"|"head"|"head_meta"|"attributes"|"put"|"delete"|"copy"|"presign"|
                            "list_buckets"|"create_bucket"|…,
                      "bucket": ..., "object": ..., "range": ..., "expires": seconds,
                      "data": text (latin-1), "metadata": {...}, "acl": ..., "content_type": ...,
                      "source_bucket": ..., "source_object": ..., "verify": CA bundle path,
                      "signature": "s3v4" (default) | "s3" (SigV2) | null (boto3's default)}'
"""

import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main():
    args = json.loads(sys.argv[1])
    s3 = boto3.client(
        "s3",
        endpoint_url=args["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=args["key"],
        aws_secret_access_key=args["secret"],
        config=Config(
            # "s3v4" unless the test asks for SigV2 ("s3") or boto3's own default (None).
            signature_version=args.get("signature", "s3v4"),
            s3={"addressing_style": args.get("style", "path")},
            retries={"max_attempts": 1},
            request_checksum_calculation=args.get("checksums", "when_supported"),
        ),
        # A CA bundle's path for an https endpoint the system does not trust.
        verify=args.get("verify", True),
    )
    where = {"Bucket": args["bucket"], "Key": args.get("object", "")}
    try:
        if args["op"] == "list":
            # Every page, following continuation tokens (or markers) as a paginator does.
            params = {"Bucket": args["bucket"]}
            for name, arg in [("Prefix", "prefix"), ("Delimiter", "delimiter"), ("EncodingType", "encoding")]:
                if arg in args:
                    params[name] = args[arg]
            operation = "list_objects_v2" if args.get("version", 2) == 2 else "list_objects"
            pages = s3.get_paginator(operation).paginate(
                **params, PaginationConfig={"PageSize": args.get("page_size", 1000)}
            )
            keys, prefixes, count, names = [], [], 0, set()
            for page in pages:
                count += 1
                names.add(page["Name"])
                keys += [item["Key"] for item in page.get("Contents", [])]
                prefixes += [item["Prefix"] for item in page.get("CommonPrefixes", [])]
            print(json.dumps({"keys": keys, "prefixes": prefixes, "pages": count, "names": sorted(names)}))
            return
        if args["op"] == "multipart_abort":
            # Start an upload, add a part, look at it as the client sees it, then abort.
            upload = s3.create_multipart_upload(**where)
            s3.upload_part(**where, UploadId=upload["UploadId"], PartNumber=1, Body=b"part one")
            parts = s3.list_parts(**where, UploadId=upload["UploadId"])
            uploads = s3.list_multipart_uploads(Bucket=args["bucket"])
            s3.abort_multipart_upload(**where, UploadId=upload["UploadId"])
            after = s3.list_multipart_uploads(Bucket=args["bucket"])
            print(json.dumps({
                "created": {"bucket": upload["Bucket"], "key": upload["Key"]},
                "parts": {"bucket": parts["Bucket"], "key": parts["Key"], "count": len(parts.get("Parts", []))},
                "uploads": sorted(u["Key"] for u in uploads.get("Uploads", [])),
                "after_abort": len(after.get("Uploads", [])),
            }))
            return
        if args["op"] == "delete_many":
            response = s3.delete_objects(
                Bucket=args["bucket"], Delete={"Objects": [{"Key": key} for key in args["objects"]]}
            )
            print(json.dumps({
                "deleted": sorted(item["Key"] for item in response.get("Deleted", [])),
                "errors": response.get("Errors", []),
            }))
            return
        if args["op"] == "list_buckets":
            response = s3.list_buckets()
            print(json.dumps({
                "status": 200,
                "names": [b["Name"] for b in response["Buckets"]],
                "dated": all(b.get("CreationDate") for b in response["Buckets"]),
                "owner": response.get("Owner", {}).get("ID"),
            }))
            return
        if args["op"] == "create_bucket":
            response = s3.create_bucket(Bucket=args["bucket"])
            out = {}
            out["status"] = response["ResponseMetadata"]["HTTPStatusCode"]
            print(json.dumps(out))
            return
        if args["op"] == "head_bucket":
            response = s3.head_bucket(Bucket=args["bucket"])
            print(json.dumps({"status": 200, "region": response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-bucket-region")}))
            return
        if args["op"] == "location":
            response = s3.get_bucket_location(Bucket=args["bucket"])
            print(json.dumps({"status": 200, "location": response.get("LocationConstraint")}))
            return
        if args["op"] == "get":
            extra = {"Range": args["range"]} if "range" in args else {}
            response = s3.get_object(**where, **extra)
            out = {"body": response["Body"].read().decode("latin-1")}
        elif args["op"] == "head":
            response = s3.head_object(**where)
            out = {"length": response["ContentLength"]}
        elif args["op"] == "put":
            extra = {}
            if "acl" in args:
                extra["ACL"] = args["acl"]
            if "content_type" in args:
                extra["ContentType"] = args["content_type"]
            response = s3.put_object(
                **where, Body=args["data"].encode("latin-1"), Metadata=args.get("metadata", {}), **extra
            )
            out = {"etag": response["ETag"]}
        elif args["op"] == "delete":
            response = s3.delete_object(**where)
            out = {}
        elif args["op"] == "copy":
            source = {"Bucket": args["source_bucket"], "Key": args["source_object"]}
            response = s3.copy_object(**where, CopySource=source)
            out = {}
        elif args["op"] == "attributes":
            response = s3.get_object_attributes(
                **where, ObjectAttributes=["ETag", "ObjectSize", "StorageClass", "ObjectParts"]
            )
            out = {"etag": response.get("ETag"), "size": response.get("ObjectSize")}
        elif args["op"] == "head_meta":
            response = s3.head_object(**where)
            out = {"metadata": response["Metadata"], "length": response["ContentLength"]}
        elif args["op"] == "presign":
            url = s3.generate_presigned_url("get_object", Params=where, ExpiresIn=args.get("expires", 300))
            print(json.dumps({"url": url}))
            return
        else:
            raise SystemExit(f"unknown op {args['op']}")
        out["status"] = response["ResponseMetadata"]["HTTPStatusCode"]
    except ClientError as error:
        out = {
            "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
            "code": error.response["Error"]["Code"],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
