"""Slicing a result list into pages with the fake's opaque tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from processors.fake_amazon.pagination import BadPageToken
from processors.fake_amazon.params import BadParam
from processors.fake_amazon.state import FakeAmazon

T = TypeVar("T")


def page_of(
    fake: FakeAmazon,
    items: list[T],
    *,
    token: str | None,
    query: Mapping[str, str],
    size: int,
    ttl: float,
) -> tuple[list[T], str | None]:
    now = fake.clock.time()
    offset = 0
    if token:
        try:
            offset = fake.page_tokens.redeem(token, query, now, ttl)
        except (BadPageToken, ValueError, KeyError) as exc:
            raise BadParam(str(exc) or "The provided nextToken is invalid.") from exc
    chunk = items[offset : offset + size]
    end = offset + len(chunk)
    next_token = fake.page_tokens.issue(end, query, now) if end < len(items) else None
    return chunk, next_token
