"""Prints boto3's generate_presigned_post for the proxy as JSON ({"url", "fields"}).

Usage: python presigned_post.py ENDPOINT KEY_ID SECRET BUCKET KEY EXPIRES_IN JSON_FIELDS JSON_CONDITIONS
"""
import json
import sys

import boto3
from botocore.config import Config

endpoint, key_id, secret, bucket, key, expires_in, fields, conditions = sys.argv[1:]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=key_id,
    aws_secret_access_key=secret,
    region_name="us-east-1",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
)
post = s3.generate_presigned_post(
    Bucket=bucket,
    Key=key,
    Fields=json.loads(fields),
    Conditions=json.loads(conditions),
    ExpiresIn=int(expires_in),
)
print(json.dumps(post))
