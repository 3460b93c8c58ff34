"""Fixtures: a private redis-server, the fake Amazon, a client, and storages."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from processors.amazon import (
    AmazonAccount,
    AmazonClient,
    RedisQuota,
)
from processors.fake_amazon import DAY_ZONES, FakeAmazon, FakeAmazonServer, FakeClock
from processors.fake_amazon.server import quiet_dropped_connection_logs
from processors.storage import Storage
from processors.sync_logic import SyncContext

from .helpers import POSTGRES_URL, account_for, free_port, make_ctx, settings_for, wait_for


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = redis.Redis(port=port)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("redis-server exited during startup")
        try:
            return bool(probe.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(up)
        yield port
    finally:
        probe.close()
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
async def redis_client(redis_port: int) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=redis_port)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def shared_fake_server() -> Iterator[FakeAmazonServer]:
    quiet_dropped_connection_logs()
    with FakeAmazonServer(FakeAmazon(seed=7, clock=FakeClock(clear_of=DAY_ZONES))) as server:
        yield server


@pytest.fixture
def fake_server(shared_fake_server: FakeAmazonServer) -> FakeAmazonServer:
    """One server per session; every test starts from its reset state."""
    shared_fake_server.fake.reset()
    return shared_fake_server


@pytest.fixture
def fake(fake_server: FakeAmazonServer) -> FakeAmazon:
    return fake_server.fake


@pytest.fixture
def account(fake: FakeAmazon) -> AmazonAccount:
    return account_for(fake.sellers[0])


@pytest.fixture
async def client(fake_server: FakeAmazonServer, redis_client: aioredis.Redis) -> AsyncIterator[AmazonClient]:
    async with AmazonClient(settings_for(fake_server.url), quota=RedisQuota(redis_client)) as amazon:
        yield amazon


def postgres_url() -> str | None:
    """The test PostgreSQL's URL, or None when none answers on 127.0.0.1:5432."""
    try:
        with contextlib.closing(socket.create_connection(("127.0.0.1", 5432), timeout=1)):
            pass
    except OSError:
        return None
    for user in ("root", "postgres"):
        url = POSTGRES_URL.format(user=user)
        try:
            probe = Storage.from_url(url, create=False)
            with probe.engine.connect():
                pass
            probe.dispose()
            return url
        except Exception:
            continue
    return None


def _postgres_storage() -> Storage | None:
    url = postgres_url()
    if url is None:
        return None
    return Storage.from_url(url, schema_name=f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "sqlite":
        store = Storage.from_url(f"sqlite:///{tmp_path / 'amazon.db'}")
        yield store
        store.dispose()
        return
    store = _postgres_storage()
    if store is None:
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    try:
        yield store
    finally:
        store.drop_schema()
        store.dispose()


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage.from_url(f"sqlite:///{tmp_path / 'amazon.db'}")
    yield store
    store.dispose()


@pytest.fixture
def ctx(client: AmazonClient, sqlite_storage: Storage, fake: FakeAmazon, tmp_path: Path) -> SyncContext:
    return make_ctx(client, sqlite_storage, fake, tmp_path)
