"""Processors for tests/test_break_sync.py, run in real worker processes."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import redis

from minique import Registry

registry = Registry()


def _mark(job: Any, what: str) -> None:
    r = redis.Redis.from_url(job.data["url"])
    try:
        r.rpush(job.data["key"], f"{what} {job.id} {job.attempts_made}")
    finally:
        r.close()


def _start(job: Any) -> None:
    _mark(job, "start")
    what = job.data.get("raise")
    if what == "SystemExit":
        sys.exit(3)
    if what == "KeyboardInterrupt":
        raise KeyboardInterrupt


def exits(job: Any) -> str:
    """A plain ``def`` processor (in a thread or a child process): raises SystemExit(3)
    or KeyboardInterrupt when data["raise"] says so, else sleeps data["sleep"] seconds.
    Leaves "start <id> <attempt>" / "end <id> <attempt>" under data["key"]."""
    _start(job)
    time.sleep(job.data.get("sleep", 0))
    _mark(job, "end")
    return "ok"


async def aexits(job: Any) -> str:
    """The same as an ``async def`` processor (on the worker's own event loop)."""
    _start(job)
    await asyncio.sleep(job.data.get("sleep", 0))
    _mark(job, "end")
    return "ok"


registry.add("bs", exits, name="exits")
registry.add("bs", aexits, name="aexits")
