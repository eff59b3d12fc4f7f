"""Signs one request with botocore's own signers, as a captured request would have been signed,
and prints what was signed: {"url", "headers"}. The test then sends it, perhaps with another
body (a replay). botocore is the reference here, not the proxy's own code.

Usage: sign_request.py '{"key": ..., "secret": ..., "form": "v4-header"|"v4-query"|"v2-header"|"v2-query",
                         "method": ..., "url": ..., "headers": {...}, "body": text (utf-8),
                         "content_md5": true|false}'
"v4-header" signs UNSIGNED-PAYLOAD, so the body is bound by its Content-MD5 alone. A bucket's
URL is written `/bucket/?sub`, as botocore's SigV2 signer signs a bucket's resource.
"""

import base64
import hashlib
import json
import sys

from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class UnsignedPayloadSigV4(S3SigV4Auth):
    """SigV4 in the headers with UNSIGNED-PAYLOAD, as botocore signs over HTTPS."""

    def _should_sha256_sign_payload(self, request):
        return False


def main():
    args = json.loads(sys.argv[1])
    credentials = Credentials(args["key"], args["secret"])
    body = args.get("body", "").encode("utf-8")
    headers = dict(args.get("headers", {}))
    if args.get("content_md5", True):
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    # A presigned URL signs no body (botocore would read a POST body as form fields): the
    # body is sent later, bound only by the Content-MD5 header the URL signs.
    query_form = args["form"].endswith("-query")
    request = AWSRequest(method=args["method"], url=args["url"], headers=headers,
                         data=b"" if query_form else body)
    signer = {
        "v4-header": lambda: UnsignedPayloadSigV4(credentials, "s3", "us-east-1"),
        "v4-query": lambda: S3SigV4QueryAuth(credentials, "s3", "us-east-1", expires=300),
        "v2-header": lambda: HmacV1Auth(credentials),
        "v2-query": lambda: HmacV1QueryAuth(credentials, expires=300),
    }[args["form"]]()
    signer.add_auth(request)
    prepared = request.prepare()
    print(json.dumps({
        "url": prepared.url,
        "headers": {name: value for name, value in prepared.headers.items()
                    if name.lower() not in ("content-length", "host")},
    }))


if __name__ == "__main__":
    main()
