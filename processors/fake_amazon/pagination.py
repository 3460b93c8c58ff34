"""Opaque, expiring page tokens bound to the query that produced them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass


class BadPageToken(Exception):
    """The token is malformed, expired, or was issued for a different query."""


@dataclass(frozen=True)
class PageTokens:
    """Issues tokens as ``base64(json) + "." + mac`` so clients cannot forge offsets."""

    key: bytes

    @classmethod
    def random(cls) -> PageTokens:
        return cls(secrets.token_bytes(16))

    def issue(self, offset: int, query: Mapping[str, str], now: float) -> str:
        body = json.dumps({"o": offset, "q": _digest(query), "t": now}).encode()
        encoded = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{encoded}.{self._mac(encoded)}"

    def redeem(self, token: str, query: Mapping[str, str], now: float, ttl: float) -> int:
        encoded, _, mac = token.partition(".")
        if not hmac.compare_digest(mac, self._mac(encoded)):
            raise BadPageToken("The provided nextToken is invalid.")
        padded = encoded + "=" * (-len(encoded) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded))
        if now - float(body["t"]) > ttl:
            raise BadPageToken("The provided nextToken has expired.")
        if body["q"] != _digest(query):
            raise BadPageToken("The nextToken does not match the request parameters.")
        return int(body["o"])

    def _mac(self, encoded: str) -> str:
        return hmac.new(self.key, encoded.encode(), hashlib.sha256).hexdigest()[:16]


def _digest(query: Mapping[str, str]) -> str:
    canonical = json.dumps(sorted(query.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
