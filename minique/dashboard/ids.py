"""Job, scheduler and worker ids in URLs: every valid id reachable, whatever it contains.

An id made only of letters, digits and ``. _ : @ -`` (and not only dots) is written as it is:
``/queues/q/jobs/1234``. Any other id, e.g. ``acme/2024-01/report`` or ``a b?``, is written as
``~`` followed by its UTF-8 bytes in unpadded base64url: ``/queues/q/jobs/~YWNtZS8y...``.
Percent-encoding would not do: servers and proxies decode ``%2F`` before routing, and
browsers resolve ``.`` and ``..`` segments. Decoding accepts both forms.
"""

from __future__ import annotations

import base64
import binascii
import re

_PLAIN = re.compile(r"[A-Za-z0-9._:@-]+")


def encode_id(value: str) -> str:
    """The URL path segment of an id."""
    if _PLAIN.fullmatch(value) and value.strip("."):
        return value
    return "~" + base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode("ascii")


def decode_id(segment: str) -> str:
    """The id a path segment names; ValueError for a ``~`` segment that does not decode."""
    if not segment.startswith("~"):
        return segment
    body = segment[1:]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{segment!r} is not a valid encoded id (~ + base64url of the id)") from exc
