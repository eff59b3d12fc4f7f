"""The compatibility matrix: real S3 clients, used as their users use them, through the proxy,
every effect checked on the store itself (with the store's or the tenant's own credentials,
never through the proxy).

Usage: matrix.py '{"proxy": "http://127.0.0.1:PORT", "virtual_proxy": "http://localhost:PORT",
                   "key": ..., "secret": ..., "bucket": LOGICAL_BUCKET,
                   "store": {"endpoint", "key", "secret", "bucket", "prefix",
                             "role_arn"?, "external_id"?},
                   "aws": PATH_TO_AWS_CLI, "clients_dir": .clients, "big_mib": 64,
                   "clients": [...]?, "parallel": 4}'

Prints {"results": {client: {operation: "ok" | "n/a: why" | "FAIL: what"}}}. Each client works
under its own key prefix, so clients run in parallel.
"""

import concurrent.futures
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import traceback
import urllib.request
from datetime import timedelta
from pathlib import Path

import boto3
from botocore.config import Config

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
OPERATIONS = ["buckets", "list", "get", "range", "put", "stream", "multipart", "presign", "awkward", "delete"]
AWKWARD = "a b+c ü.txt"
SEED = b"seeded on the store\n"
RANGED = bytes((i * 7 + 3) % 251 for i in range(4096))
STREAMED = bytes((i * 13 + 5) % 256 for i in range(1 << 20))


class NotApplicable(Exception):
    """The client has no such operation."""


class Store:
    """The bucket on the store itself, under the integration's prefix."""

    def __init__(self, spec):
        key, secret, token = spec["key"], spec["secret"], None
        if spec.get("role_arn"):
            sts = boto3.client("sts", endpoint_url=spec["endpoint"], region_name="us-east-1",
                               aws_access_key_id=key, aws_secret_access_key=secret)
            assumed = sts.assume_role(RoleArn=spec["role_arn"], RoleSessionName="matrix",
                                      ExternalId=spec["external_id"])["Credentials"]
            key, secret, token = (assumed["AccessKeyId"], assumed["SecretAccessKey"],
                                  assumed["SessionToken"])
        self.s3 = boto3.client(
            "s3", endpoint_url=spec["endpoint"], region_name="us-east-1",
            aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        self.bucket = spec["bucket"]
        self.prefix = spec["prefix"]

    def put(self, key, data):
        self.s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def get(self, key):
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def keys(self, under):
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + under)
        return sorted(item["Key"][len(self.prefix):]
                      for page in pages for item in page.get("Contents", []))


def run(command, stdin=None, env=None):
    done = subprocess.run(command, input=stdin, capture_output=True, env=env, timeout=300)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")
        if len(stderr) > 1000:
            stderr = stderr[:500] + " … " + stderr[-500:]
        raise AssertionError(f"{Path(command[0]).name} exited {done.returncode}: {stderr}")
    return done.stdout


def fetch(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


class Client:
    """One client's way of doing each operation; `base` is its key prefix (`{name}/`)."""

    name = "?"

    def __init__(self, args, base):
        self.args = args
        self.bucket = args["bucket"]
        self.base = base

    def key(self, name):
        return self.base + name


class Boto3(Client):
    def __init__(self, args, base, style):
        super().__init__(args, base)
        endpoint = args["virtual_proxy"] if style == "virtual" else args["proxy"]
        # As README's example: only the endpoint, the keys and the addressing style.
        self.s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=args["key"],
                               aws_secret_access_key=args["secret"],
                               config=Config(s3={"addressing_style": style}))

    def buckets(self):
        return [b["Name"] for b in self.s3.list_buckets()["Buckets"]]

    def list(self):
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                  Prefix=self.base)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def get(self, key):
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def range(self, key, start, length):
        return self.s3.get_object(Bucket=self.bucket, Key=key,
                                  Range=f"bytes={start}-{start + length - 1}")["Body"].read()

    def put(self, key, data):
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    def stream(self, key, data):
        # A reader with no length and no seek: boto3 reads it and picks PUT or multipart.
        self.s3.upload_fileobj(NonSeekable(data), self.bucket, key)

    def multipart(self, key, path):
        from boto3.s3.transfer import TransferConfig
        self.s3.upload_file(str(path), self.bucket, key, Config=TransferConfig(
            multipart_threshold=16 << 20, multipart_chunksize=16 << 20))

    def presign(self, key):
        # README's example, as is: boto3 signs SigV2 here (a custom endpoint, no
        # signature_version).
        return self.s3.generate_presigned_url("get_object",
                                              Params={"Bucket": self.bucket, "Key": key})

    def delete(self, key):
        self.s3.delete_object(Bucket=self.bucket, Key=key)


class NonSeekable(io.RawIOBase):
    def __init__(self, data):
        self.inner = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        chunk = self.inner.read(min(len(buffer), 65536))
        buffer[:len(chunk)] = chunk
        return len(chunk)


class AwsCli(Client):
    name = "aws-cli"

    def buckets(self):
        out = self.aws("s3", "ls").decode()
        return [line.split()[-1] for line in out.splitlines() if line.strip()]

    def env(self):
        return {**os.environ, "AWS_ACCESS_KEY_ID": self.args["key"],
                "AWS_SECRET_ACCESS_KEY": self.args["secret"], "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    def aws(self, *arguments, stdin=None):
        return run([self.args["aws"], "--endpoint-url", self.args["proxy"], *arguments],
                   stdin=stdin, env=self.env())

    def url(self, key):
        return f"s3://{self.bucket}/{key}"

    def list(self):
        out = self.aws("s3", "ls", "--recursive", self.url(self.base)).decode()
        return [line.split(None, 3)[3] for line in out.splitlines() if line.strip()]

    def get(self, key):
        return self.aws("s3", "cp", self.url(key), "-")

    def range(self, key, start, length):
        with tempfile.NamedTemporaryFile() as out:
            self.aws("s3api", "get-object", "--bucket", self.bucket, "--key", key, "--range",
                     f"bytes={start}-{start + length - 1}", out.name)
            return Path(out.name).read_bytes()

    def put(self, key, data):
        with tempfile.NamedTemporaryFile() as file:
            file.write(data)
            file.flush()
            self.aws("s3", "cp", file.name, self.url(key))

    def stream(self, key, data):
        self.aws("s3", "cp", "-", self.url(key), stdin=data)

    def multipart(self, key, path):
        self.aws("s3", "cp", str(path), self.url(key))

    def presign(self, key):
        return self.aws("s3", "presign", self.url(key), "--expires-in", "300").decode().strip()

    def delete(self, key):
        self.aws("s3", "rm", self.url(key))


class Rclone(Client):
    name = "rclone"

    def buckets(self):
        out = self.rclone("lsd", "proxy:").decode()
        return [line.split()[-1] for line in out.splitlines() if line.strip()]

    def env(self):
        return {**os.environ, "RCLONE_CONFIG": "/dev/null",
                "RCLONE_CONFIG_PROXY_TYPE": "s3", "RCLONE_CONFIG_PROXY_PROVIDER": "Other",
                "RCLONE_CONFIG_PROXY_ENDPOINT": self.args["proxy"],
                "RCLONE_CONFIG_PROXY_ACCESS_KEY_ID": self.args["key"],
                "RCLONE_CONFIG_PROXY_SECRET_ACCESS_KEY": self.args["secret"],
                "RCLONE_CONFIG_PROXY_REGION": "us-east-1"}

    def rclone(self, *arguments, stdin=None):
        return run(["rclone", *arguments], stdin=stdin, env=self.env())

    def remote(self, key):
        return f"proxy:{self.bucket}/{key}"

    def list(self):
        out = self.rclone("lsf", "-R", "--files-only", self.remote(self.base)).decode()
        return [self.base + line for line in out.splitlines() if line]

    def get(self, key):
        return self.rclone("cat", self.remote(key))

    def range(self, key, start, length):
        return self.rclone("cat", "--offset", str(start), "--count", str(length),
                           self.remote(key))

    def put(self, key, data):
        with tempfile.NamedTemporaryFile() as file:
            file.write(data)
            file.flush()
            # Stock settings: rclone sends CreateBucket first (no_check_bucket = false).
            self.rclone("copyto", file.name, self.remote(key))

    def stream(self, key, data):
        self.rclone("rcat", "--streaming-upload-cutoff", "64k", self.remote(key), stdin=data)

    def multipart(self, key, path):
        self.rclone("copyto", "--s3-upload-cutoff", "16M", "--s3-chunk-size", "16M", str(path),
                    self.remote(key))

    def presign(self, key):
        return self.rclone("link", "--expire", "5m", self.remote(key)).decode().strip()

    def delete(self, key):
        self.rclone("deletefile", self.remote(key))


class S3cmd(Client):
    name = "s3cmd"

    def buckets(self):
        out = self.s3cmd("ls").decode()
        return [line.split("s3://", 1)[1] for line in out.splitlines() if "s3://" in line]

    def s3cmd(self, *arguments, stdin=None):
        host = self.args["proxy"].split("://", 1)[1]
        config = Path(tempfile.gettempdir()) / "s3sp-matrix.s3cfg"
        config.write_text("[default]\n")
        return run([str(VENV_BIN / "s3cmd"), "-c", str(config), "--no-ssl", f"--host={host}",
                    f"--host-bucket={host}", f"--access_key={self.args['key']}",
                    f"--secret_key={self.args['secret']}", "--region=us-east-1", *arguments],
                   stdin=stdin)

    def url(self, key):
        return f"s3://{self.bucket}/{key}"

    def list(self):
        out = self.s3cmd("ls", "--recursive", self.url(self.base)).decode()
        marker = f"s3://{self.bucket}/"
        return [line.split(marker, 1)[1] for line in out.splitlines() if marker in line]

    def get(self, key):
        return self.s3cmd("get", "--quiet", self.url(key), "-")

    def range(self, key, start, length):
        raise NotApplicable("s3cmd has no ranged get")

    def put(self, key, data):
        with tempfile.NamedTemporaryFile() as file:
            file.write(data)
            file.flush()
            self.s3cmd("put", "--quiet", file.name, self.url(key))

    def stream(self, key, data):
        self.s3cmd("put", "--quiet", "-", self.url(key), stdin=data)

    def multipart(self, key, path):
        self.s3cmd("put", "--quiet", "--multipart-chunk-size-mb=16", str(path), self.url(key))

    def presign(self, key):
        # SigV2 only.
        return self.s3cmd("signurl", self.url(key), "+300").decode().strip()

    def delete(self, key):
        self.s3cmd("del", "--quiet", self.url(key))


class S5cmd(Client):
    name = "s5cmd"

    def buckets(self):
        out = self.s5cmd("--json", "ls").decode()
        return [json.loads(line)["name"] for line in out.splitlines() if line]

    def s5cmd(self, *arguments, stdin=None):
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.args["key"],
               "AWS_SECRET_ACCESS_KEY": self.args["secret"], "AWS_REGION": "us-east-1",
               "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        return run([str(VENV_BIN / "s5cmd"), "--endpoint-url", self.args["proxy"], *arguments],
                   stdin=stdin, env=env)

    def url(self, key):
        return f"s3://{self.bucket}/{key}"

    def list(self):
        out = self.s5cmd("--json", "ls", self.url(self.base) + "*").decode()
        marker = f"s3://{self.bucket}/"
        return [json.loads(line)["key"].split(marker, 1)[1] for line in out.splitlines() if line]

    def get(self, key):
        return self.s5cmd("cat", self.url(key))

    def range(self, key, start, length):
        raise NotApplicable("s5cmd has no ranged get")

    def put(self, key, data):
        with tempfile.NamedTemporaryFile() as file:
            file.write(data)
            file.flush()
            self.s5cmd("cp", file.name, self.url(key))

    def stream(self, key, data):
        self.s5cmd("pipe", self.url(key), stdin=data)

    def multipart(self, key, path):
        self.s5cmd("cp", "--part-size", "16", str(path), self.url(key))

    def presign(self, key):
        return self.s5cmd("presign", self.url(key)).decode().strip()

    def delete(self, key):
        self.s5cmd("rm", self.url(key))


class MinioSdk(Client):
    name = "minio-py"

    def __init__(self, args, base):
        super().__init__(args, base)
        from minio import Minio
        host = args["proxy"].split("://", 1)[1]
        self.minio = Minio(host, access_key=args["key"], secret_key=args["secret"],
                           secure=False, region="us-east-1")

    def buckets(self):
        return [b.name for b in self.minio.list_buckets()]

    def list(self):
        return [o.object_name for o in self.minio.list_objects(
            bucket_name=self.bucket, prefix=self.base, recursive=True)]

    def get(self, key):
        return self.minio.get_object(bucket_name=self.bucket, object_name=key).read()

    def range(self, key, start, length):
        return self.minio.get_object(bucket_name=self.bucket, object_name=key, offset=start,
                                     length=length).read()

    def put(self, key, data):
        self.minio.put_object(bucket_name=self.bucket, object_name=key, data=io.BytesIO(data),
                              length=len(data))

    def stream(self, key, data):
        self.minio.put_object(bucket_name=self.bucket, object_name=key, data=io.BytesIO(data),
                              length=-1, part_size=5 << 20)

    def multipart(self, key, path):
        self.minio.fput_object(bucket_name=self.bucket, object_name=key, file_path=str(path),
                               part_size=16 << 20)

    def presign(self, key):
        return self.minio.presigned_get_object(bucket_name=self.bucket, object_name=key,
                                               expires=timedelta(minutes=5))

    def delete(self, key):
        self.minio.remove_object(bucket_name=self.bucket, object_name=key)


class PyArrow(Client):
    name = "pyarrow"

    def __init__(self, args, base):
        super().__init__(args, base)
        from pyarrow import fs
        self.fs_module = fs
        host = args["proxy"].split("://", 1)[1]
        self.fs = fs.S3FileSystem(access_key=args["key"], secret_key=args["secret"],
                                  endpoint_override=host, scheme="http", region="us-east-1")

    def buckets(self):
        fs = self.fs_module
        return [i.path for i in self.fs.get_file_info(fs.FileSelector("", recursive=False))]

    def path(self, key):
        return f"{self.bucket}/{key}"

    def list(self):
        fs = self.fs_module
        infos = self.fs.get_file_info(fs.FileSelector(self.path(self.base), recursive=True))
        return [i.path.split("/", 1)[1] for i in infos if i.type == fs.FileType.File]

    def get(self, key):
        with self.fs.open_input_stream(self.path(key)) as f:
            return f.read()

    def range(self, key, start, length):
        with self.fs.open_input_file(self.path(key)) as f:
            return f.read_at(length, start)

    def put(self, key, data):
        with self.fs.open_output_stream(self.path(key)) as f:
            f.write(data)

    def stream(self, key, data):
        with self.fs.open_output_stream(self.path(key)) as f:
            for at in range(0, len(data), 65536):
                f.write(data[at:at + 65536])

    def multipart(self, key, path):
        with self.fs.open_output_stream(self.path(key)) as f, open(path, "rb") as source:
            while chunk := source.read(4 << 20):
                f.write(chunk)

    def presign(self, key):
        raise NotApplicable("pyarrow does not presign")

    def delete(self, key):
        self.fs.delete_file(self.path(key))


class Obstore(Client):
    name = "obstore"

    def __init__(self, args, base):
        super().__init__(args, base)
        from obstore.store import S3Store
        import obstore
        self.obs = obstore
        self.store = S3Store(self.bucket, endpoint=args["proxy"], access_key_id=args["key"],
                             secret_access_key=args["secret"], region="us-east-1",
                             virtual_hosted_style_request=False,
                             client_options={"allow_http": True})

    def buckets(self):
        raise NotApplicable("an object_store store is one bucket")

    def list(self):
        return [meta["path"] for batch in self.obs.list(self.store, prefix=self.base)
                for meta in batch]

    def get(self, key):
        return bytes(self.obs.get(self.store, key).bytes())

    def range(self, key, start, length):
        return bytes(self.obs.get_range(self.store, key, start=start, end=start + length))

    def put(self, key, data):
        self.obs.put(self.store, key, data)

    def stream(self, key, data):
        # An iterator: object_store streams it as a multipart upload of unknown length.
        self.obs.put(self.store, key, iter([data[at:at + 65536]
                                            for at in range(0, len(data), 65536)]))

    def multipart(self, key, path):
        self.obs.put(self.store, key, Path(path), chunk_size=16 << 20)

    def presign(self, key):
        return self.obs.sign(self.store, "GET", key, timedelta(minutes=5))

    def delete(self, key):
        self.obs.delete(self.store, key)


class S3fs(Client):
    name = "s3fs"

    def __init__(self, args, base):
        super().__init__(args, base)
        import s3fs
        self.fs = s3fs.S3FileSystem(key=args["key"], secret=args["secret"],
                                    endpoint_url=args["proxy"],
                                    client_kwargs={"region_name": "us-east-1"},
                                    skip_instance_cache=True)

    def buckets(self):
        return [p.rstrip("/") for p in self.fs.ls("")]

    def path(self, key):
        return f"{self.bucket}/{key}"

    def list(self):
        return [p.split("/", 1)[1] for p in self.fs.find(self.path(self.base))]

    def get(self, key):
        return self.fs.cat_file(self.path(key))

    def range(self, key, start, length):
        return self.fs.cat_file(self.path(key), start=start, end=start + length)

    def put(self, key, data):
        self.fs.pipe_file(self.path(key), data)

    def stream(self, key, data):
        with self.fs.open(self.path(key), "wb", block_size=5 << 20) as f:
            for at in range(0, len(data), 65536):
                f.write(data[at:at + 65536])

    def multipart(self, key, path):
        with self.fs.open(self.path(key), "wb", block_size=16 << 20) as f, \
                open(path, "rb") as source:
            while chunk := source.read(4 << 20):
                f.write(chunk)

    def presign(self, key):
        return self.fs.url(self.path(key), expires=300)

    def delete(self, key):
        self.fs.rm_file(self.path(key))


class DuckDb(Client):
    name = "duckdb"

    def __init__(self, args, base):
        super().__init__(args, base)
        import duckdb
        import duckdb_ext  # noqa: F401  (the httpfs extension, from PyPI, for offline use)
        self.con = duckdb.connect()
        extension = next(Path(sys.modules["duckdb_ext"].__path__[0]).rglob("httpfs.duckdb_extension"))
        self.con.execute(f"LOAD '{extension}'")
        host = args["proxy"].split("://", 1)[1]
        self.con.execute(
            f"CREATE SECRET proxy (TYPE s3, KEY_ID '{args['key']}', SECRET '{args['secret']}', "
            f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')")

    def buckets(self):
        raise NotApplicable("DuckDB reads paths inside a bucket")

    def url(self, key):
        return f"s3://{self.bucket}/{key}".replace("'", "''")

    def list(self):
        rows = self.con.execute(f"SELECT file FROM glob('{self.url(self.base)}**')").fetchall()
        marker = f"s3://{self.bucket}/"
        return [row[0].split(marker, 1)[1] for row in rows]

    def get(self, key):
        return self.con.execute(f"SELECT content FROM read_blob('{self.url(key)}')").fetchone()[0]

    def range(self, key, start, length):
        raise NotApplicable("run by parquet_ranges")

    def parquet_ranges(self, store, key):
        """A Parquet file placed on the store, read through the proxy: DuckDB reads its footer
        and the one column asked for with ranged GETs. Returns (rows, sum) both ways."""
        query = "SELECT range AS n, repeat('x', 100) AS padding FROM range(200000)"
        with tempfile.TemporaryDirectory() as local:
            local_path = Path(local) / "table.parquet"
            self.con.execute(f"COPY ({query}) TO '{local_path}' (FORMAT parquet)")
            store.put(key, local_path.read_bytes())
            expected = self.con.execute(
                f"SELECT count(*), sum(n) FROM read_parquet('{local_path}')").fetchone()
        got = self.con.execute(
            f"SELECT count(*), sum(n) FROM read_parquet('{self.url(key)}')").fetchone()
        return expected, got

    def put(self, key, data):
        # A query result of one text line is written as that line.
        line = data.decode().removesuffix("\n").replace("'", "''")
        self.con.execute(f"COPY (SELECT '{line}' AS line) TO '{self.url(key)}' "
                         "(FORMAT csv, HEADER false, QUOTE '')")

    def stream(self, key, data):
        raise NotApplicable("DuckDB writes query results only (see multipart)")

    def multipart(self, key, path):
        raise NotApplicable("run by multipart_query")

    def multipart_query(self, key):
        """COPY of a query result (~70 MiB of CSV) to the store, and the same COPY locally."""
        query = "SELECT range AS n, range * 7 AS m FROM range(5000000)"
        with tempfile.TemporaryDirectory() as local:
            local_path = Path(local) / "big.csv"
            self.con.execute(f"COPY ({query}) TO '{local_path}' (FORMAT csv)")
            self.con.execute(f"COPY ({query}) TO '{self.url(key)}' (FORMAT csv)")
            return local_path.read_bytes()

    def presign(self, key):
        raise NotApplicable("DuckDB does not presign")

    def delete(self, key):
        raise NotApplicable("DuckDB does not delete")


class JsSdk(Client):
    name = "js-sdk-v3"

    def buckets(self):
        return self.call("buckets")["names"]

    def call(self, op, **extra):
        args = {"endpoint": self.args["proxy"], "key": self.args["key"],
                "secret": self.args["secret"], "bucket": self.bucket, "op": op, **extra}
        env = {**os.environ, "S3SP_CLIENTS": self.args["clients_dir"]}
        out = run(["node", str(HERE / "js_client.mjs"), json.dumps(args)], env=env)
        return json.loads(out)

    def list(self):
        return self.call("list", prefix=self.base)["keys"]

    def get(self, key):
        return bytes.fromhex(self.call("get", object=key)["hex"])

    def range(self, key, start, length):
        return bytes.fromhex(self.call("get", object=key,
                                       range=f"bytes={start}-{start + length - 1}")["hex"])

    def put(self, key, data):
        with tempfile.NamedTemporaryFile() as file:
            file.write(data)
            file.flush()
            self.call("put", object=key, path=file.name)

    def stream(self, key, data):
        with tempfile.NamedTemporaryFile() as file:
            file.write(data)
            file.flush()
            self.call("stream", object=key, path=file.name)

    def multipart(self, key, path):
        self.call("upload", object=key, path=str(path))

    def presign(self, key):
        return self.call("presign", object=key)["url"]

    def delete(self, key):
        self.call("delete", object=key)


CLIENTS = {
    "boto3 (path)": lambda args, base: Boto3(args, base, "path"),
    "boto3 (virtual)": lambda args, base: Boto3(args, base, "virtual"),
    "aws-cli": AwsCli,
    "rclone": Rclone,
    "s3cmd": S3cmd,
    "s5cmd": S5cmd,
    "minio-py": MinioSdk,
    "pyarrow": PyArrow,
    "obstore": Obstore,
    "s3fs": S3fs,
    "duckdb": DuckDb,
    "js-sdk-v3": JsSdk,
}


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def exercise(name, args, store, big):
    """Runs every operation of one client; returns {operation: outcome}."""
    base = name.replace(" ", "-").replace("(", "").replace(")", "") + "/"
    store.put(base + "seed.txt", SEED)
    store.put(base + "ranged.bin", RANGED)
    store.put(base + "delete-me.txt", b"to be deleted\n")
    outcomes = {}
    try:
        client = CLIENTS[name](args, base)
    except Exception as error:  # noqa: BLE001 (the client could not even start)
        return {op: f"FAIL: setup: {error}" for op in OPERATIONS}

    def attempt(op, body):
        try:
            body()
            outcomes[op] = "ok"
        except NotApplicable as why:
            outcomes[op] = f"n/a: {why}"
        except Exception as error:  # noqa: BLE001 (recorded, the matrix goes on)
            detail = "".join(traceback.format_exception_only(error)).strip()
            outcomes[op] = f"FAIL: {detail[:1200]}"

    def buckets():
        names = client.buckets()
        check(args["bucket"] in names, f"{args['bucket']} not in {names}")

    def listed():
        keys = client.list()
        for expected in ["seed.txt", "ranged.bin"]:
            check(base + expected in keys, f"{base + expected} not in {keys}")
        check(all(k.startswith(base) for k in keys), f"a key outside {base}: {keys}")

    def got():
        data = client.get(base + "seed.txt")
        check(data == SEED, f"got {data[:80]!r}")

    def ranged():
        if isinstance(client, DuckDb):
            expected, got = client.parquet_ranges(store, base + "table.parquet")
            check(expected == got, f"read {got}, not {expected}")
            return
        data = client.range(base + "ranged.bin", 1000, 100)
        check(data == RANGED[1000:1100], f"got {len(data)} bytes, not bytes 1000-1099")

    def put():
        data = b"put through the proxy by " + name.encode() + b"\n"
        client.put(base + "put.txt", data)
        check(store.get(base + "put.txt") == data, "the store does not hold what was put")

    def streamed():
        client.stream(base + "stream.bin", STREAMED)
        on_store = store.get(base + "stream.bin")
        check(on_store == STREAMED,
              f"the store holds {None if on_store is None else len(on_store)} bytes, not 1 MiB")

    def multipart():
        if isinstance(client, DuckDb):
            local = client.multipart_query(base + "big.csv")
            on_store = store.get(base + "big.csv")
            check(on_store is not None and hashlib.md5(on_store).digest() ==
                  hashlib.md5(local).digest(), "the store's CSV differs from DuckDB's local one")
            return
        client.multipart(base + "big.bin", big["path"])
        on_store = store.get(base + "big.bin")
        check(on_store is not None and len(on_store) == big["size"],
              f"the store holds {None if on_store is None else len(on_store)} bytes")
        check(hashlib.md5(on_store).hexdigest() == big["md5"], "the store's bytes differ")

    def presigned():
        url = client.presign(base + "seed.txt")
        data = fetch(url)
        check(data == SEED, f"{url} gave {data[:80]!r}")

    def awkward():
        key = base + AWKWARD
        data = b"awkward key\n"
        try:
            client.put(key, data)
            check(store.get(key) == data, "the store does not hold the awkward key")
        except NotApplicable:
            store.put(key, data)
        check(client.get(key) == data, "the awkward key reads back differently")
        check(key in client.list(), "the awkward key is not listed as itself")

    def deleted():
        client.delete(base + "delete-me.txt")
        check(store.get(base + "delete-me.txt") is None, "still on the store")

    for op, body in zip(OPERATIONS, [buckets, listed, got, ranged, put, streamed, multipart, presigned,
                                     awkward, deleted]):
        attempt(op, body)
    return outcomes


def main():
    args = json.loads(sys.argv[1])
    # Plain HTTP on loopback only; a machine-wide CA bundle setting makes rclone's SDK fail
    # before it sends anything ("unsupported transport").
    os.environ.pop("AWS_CA_BUNDLE", None)
    store = Store(args["store"])
    names = args.get("clients") or list(CLIENTS)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "big.bin"
        size = args.get("big_mib", 64) << 20
        block = os.urandom(1 << 20)
        digest = hashlib.md5()
        with open(path, "wb") as f:
            for i in range(size >> 20):
                chunk = bytes([i % 256]) + block[1:]
                f.write(chunk)
                digest.update(chunk)
        big = {"path": path, "size": size, "md5": digest.hexdigest()}
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.get("parallel", 4)) as pool:
            futures = {name: pool.submit(exercise, name, args, store, big) for name in names}
            results = {name: future.result() for name, future in futures.items()}
    print(json.dumps({"results": results}, ensure_ascii=False))


if __name__ == "__main__":
    main()
