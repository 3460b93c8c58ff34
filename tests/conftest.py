"""Every test talks to a real Redis server that the suite starts itself on a free port."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import driver
import pytest
import redis.asyncio as aioredis
from helpers import server_binary

from minique import Queue, scripts
from minique.server import RedisServer

_names = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run the long (chaos/soak) tests")
    parser.addoption("--chaos-long", action="store_true",
                     help="run the chaos tests in their long mode (the published figures)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("MINIQUE_RUN_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _script_mode_unchanged() -> Iterator[None]:
    """The script mode (functions or EVAL scripts) is process-wide: a test that turns it
    (a faked "unknown command 'FCALL'") must put it back, or every later test in its
    process runs in the other mode and tests that act on FCALL pass without acting."""
    before = scripts._use_functions
    yield
    after = scripts._use_functions
    scripts._use_functions = before
    assert after == before, "the test left the script mode turned (use monkeypatch)"


@pytest.fixture
async def library_server() -> AsyncIterator[tuple[RedisServer, Any]]:
    """A private server with the library loaded, and a client of its own: for tests that
    put a proxy in front of it or change its settings (maxmemory is put back after)."""
    with RedisServer(binary=server_binary()) as s:
        admin = aioredis.Redis.from_url(s.url)
        await scripts.load_library(admin)
        try:
            yield s, admin
        finally:
            await admin.config_set("maxmemory", "0")
            await admin.aclose()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(binary=server_binary()) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="module")
def module_redis_url() -> Iterator[str]:
    """A server for one test module alone, for checks that scan or list the keyspace: the
    shared server holds whatever every earlier test of the process left behind, and a
    SCAN or KEYS of it costs as much as all of that."""
    with RedisServer(binary=server_binary()) as server:
        yield server.url


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    c = aioredis.Redis.from_url(redis_url, decode_responses=False)
    yield c
    await c.aclose()


@pytest.fixture
def qname(request: pytest.FixtureRequest) -> str:
    """A queue name unique to the test, so tests never see each other's jobs."""
    return f"t{next(_names)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")


@pytest.fixture
async def queue(redis_url: str, qname: str) -> AsyncIterator[Queue]:
    q = Queue(qname, url=redis_url)
    yield q
    await driver.forget_holds(q)
    await q.obliterate(force=True)
    await q.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; killed at the end whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(5)
