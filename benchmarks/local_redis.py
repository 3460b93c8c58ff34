"""Runs a benchmark coroutine on the Redis at ``url``, or on a private server it starts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from minique.server import RedisServer


def run_on_redis(url: str | None, bench: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    if url:
        asyncio.run(bench(url))
        return
    with RedisServer() as server:
        asyncio.run(bench(server.url))
