"""Starts moto (S3 + STS + IAM) on an ephemeral loopback port with IAM auth enforced, and
provisions what the proxy's tests need, as a customer and a platform would in AWS:

- an admin user (created by the first unauthenticated calls) that provisions everything else;
- the proxy's own IAM user, allowed only sts:AssumeRole;
- per tenant: a bucket, a role whose trust policy names the proxy's user and requires the
  tenant's own ExternalId, and a role policy allowing reads (tenants a, b) or reads and
  writes (tenant w) of that bucket only;
- a static-keys reader allowed to read tenant A's bucket;
- seeded objects: awkward keys, a prefix, and a 1 MiB object for range tests.

Prints one line of JSON describing it all, then serves until its standard input closes (the
test process exited), so no server outlives the tests.
"""

import json
import os
import sys

AUTH_FREE_CALLS = 3  # create_user, create_access_key, put_user_policy for the admin
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(AUTH_FREE_CALLS)
os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"


def awkward_keys():
    return [
        "plain.txt",
        "with space.txt",
        "plus+sign.txt",
        "percent%20literal.txt",
        "equals=and&amp.txt",
        "tilde~file.txt",
        "semi;colon,comma.txt",
        "star*quote'paren().txt",
        "question?mark#hash.txt",
        "brackets[1]{2}@$!.txt",
        "unicode/ünïcødé/日本語.txt",
        "emoji/😀.txt",
        "dir/trailing/",
        "long/" + "x" * 250 + ".txt",
    ]


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def body_for(key):
    return ("object:" + key + "\n").encode("utf-8") * 3


def main():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    plain = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})

    def client(service, key="bootstrap", secret="bootstrap"):
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=plain,
        )

    # The only unauthenticated calls: an admin who provisions the rest.
    iam = client("iam")
    iam.create_user(UserName="admin")
    admin_key = iam.create_access_key(UserName="admin")["AccessKey"]
    iam.put_user_policy(
        UserName="admin",
        PolicyName="everything",
        PolicyDocument=policy(allow("*", "*")),
    )
    admin = (admin_key["AccessKeyId"], admin_key["SecretAccessKey"])
    iam = client("iam", *admin)
    s3 = client("s3", *admin)

    iam.create_user(UserName="s3-signing-proxy")
    proxy_key = iam.create_access_key(UserName="s3-signing-proxy")["AccessKey"]
    iam.put_user_policy(
        UserName="s3-signing-proxy",
        PolicyName="assume-integration-roles",
        PolicyDocument=policy(allow("sts:AssumeRole", "*")),
    )

    tenants = {}
    # a and b may read their own bucket; w may read and write its own, and so may j, whose
    # bucket only the jail tests use (they list it whole to find any escaped write).
    writers = ("w", "j")
    for name, external_id in [
        ("a", "ext-a-5f1c"), ("b", "ext-b-93d2"), ("w", "ext-w-c0de"), ("j", "ext-j-7a11"),
    ]:
        bucket = f"tenant-{name}-media"
        s3.create_bucket(Bucket=bucket)
        role = iam.create_role(
            RoleName=f"tenant-{name}-reader",
            AssumeRolePolicyDocument=policy(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/s3-signing-proxy"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
                }
            ),
        )["Role"]
        iam.put_role_policy(
            RoleName=f"tenant-{name}-reader",
            PolicyName="read-own-bucket",
            PolicyDocument=policy(
                allow(
                    # moto checks HeadBucket against an action of that name, where AWS
                    # checks s3:ListBucket: grant both so HeadBucket behaves as on AWS.
                    "s3:*" if name in writers else ["s3:GetObject", "s3:ListBucket", "s3:HeadBucket"],
                    [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                )
            ),
        )
        tenants[name] = {"bucket": bucket, "role_arn": role["Arn"], "external_id": external_id}
        s3.put_object(Bucket=bucket, Key="owner.txt", Body=f"tenant {name}\n".encode())

    bucket_a = tenants["a"]["bucket"]
    for key in awkward_keys():
        s3.put_object(Bucket=bucket_a, Key=key, Body=body_for(key))
        s3.put_object(Bucket=bucket_a, Key="labelling/" + key, Body=b"prefixed:" + body_for(key))
    s3.put_object(Bucket=bucket_a, Key="labelling-other/secret.txt", Body=b"sibling of the prefix\n")
    ranged = bytes((i * 7 + 3) % 251 for i in range(1 << 20))
    s3.put_object(Bucket=bucket_a, Key="media/ranged.bin", Body=ranged, ContentType="application/octet-stream")

    iam.create_user(UserName="static-reader")
    static_key = iam.create_access_key(UserName="static-reader")["AccessKey"]
    iam.put_user_policy(
        UserName="static-reader",
        PolicyName="read-tenant-a",
        PolicyDocument=policy(allow("s3:GetObject", f"arn:aws:s3:::{bucket_a}/*")),
    )

    print(
        json.dumps(
            {
                "port": port,
                "admin": {"access_key_id": admin[0], "secret_access_key": admin[1]},
                "proxy_user": {
                    "access_key_id": proxy_key["AccessKeyId"],
                    "secret_access_key": proxy_key["SecretAccessKey"],
                },
                "static_reader": {
                    "access_key_id": static_key["AccessKeyId"],
                    "secret_access_key": static_key["SecretAccessKey"],
                },
                "tenants": tenants,
                "awkward_keys": awkward_keys(),
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # returns when the test process exits and the pipe closes
    os._exit(0)


if __name__ == "__main__":
    main()
