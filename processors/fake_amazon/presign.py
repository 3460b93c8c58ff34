"""Presigned "S3" URLs for report documents, shaped like AWS SigV4 query signatures.

The signature works as a credential (anyone holding the URL can download until it expires),
which is why a client must never log it; the fake checks it so that a mangled URL fails.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from processors.fake_amazon.state import FakeAmazon

EXPIRES = 3600


def _signature(fake: FakeAmazon, path: str, stamp: str) -> str:
    return hmac.new(fake.page_tokens.key, f"{path}\n{stamp}".encode(), hashlib.sha256).hexdigest()


def presign(fake: FakeAmazon, base_url: str, path: str) -> str:
    """``base_url + path`` with X-Amz-* query parameters, valid for an hour of the fake's clock."""
    now: datetime = fake.clock.now()
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"AKIAFAKEEXAMPLE/{now:%Y%m%d}/us-east-1/s3/aws4_request",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": str(EXPIRES),
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": _signature(fake, path, stamp),
    }
    return f"{base_url}{path}?{urlencode(query)}"


def refused(fake: FakeAmazon, request: Request) -> Response | None:
    """S3's 403 when the signature is missing, wrong or expired; None when it is good."""
    stamp = request.query_params.get("X-Amz-Date", "")
    given = request.query_params.get("X-Amz-Signature", "")
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").timestamp()
    except ValueError:
        signed_at = None
    expected = _signature(fake, request.url.path, stamp)
    if signed_at is None or not hmac.compare_digest(given, expected):
        return _denied("SignatureDoesNotMatch")
    if fake.clock.time() - signed_at > EXPIRES + 60:
        return _denied("AccessDenied")  # S3 says "Request has expired"
    return None


def _denied(code: str) -> Response:
    return Response(f"<Error><Code>{code}</Code></Error>".encode(), 403, media_type="application/xml")
