"""What the processors share within one worker process: the Amazon client, the storage, the
webhook HTTP client and the settings.

A worker started by ``minique worker processors.jobs:registry`` builds it lazily from the
environment; tests and the demo ``install`` one of their own. Like a Queue, it belongs to one
event loop (its HTTP and Redis connections do).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

import httpx

from minique.connection import connect
from processors import queues
from processors.amazon import AmazonClient, ClientSettings, RedisQuota
from processors.settings import AppSettings
from processors.storage import Storage
from processors.sync_logic import SyncContext, SyncSettings


@dataclass
class Runtime:
    settings: AppSettings
    sync: SyncContext
    webhook_http: httpx.AsyncClient
    redis: Any

    @property
    def storage(self) -> Storage:
        return self.sync.storage

    async def aclose(self) -> None:
        await self.sync.client.aclose()
        await self.webhook_http.aclose()
        await self.redis.aclose()


def build_runtime(
    settings: AppSettings,
    *,
    client_settings: ClientSettings | None = None,
    sync_settings: SyncSettings | None = None,
    storage: Storage | None = None,
    quota_tag: str = "{minique:amazon-quota}",
) -> Runtime:
    """``quota_tag`` names the shared quota buckets; every worker of one deployment must use
    the same one (tests use their own, so they never share buckets)."""
    redis = connect(settings.redis_url)
    client = AmazonClient(client_settings, quota=RedisQuota(redis, hash_tag=quota_tag))
    sync = sync_settings or SyncSettings()
    if sync.report_dir == SyncSettings().report_dir:
        sync = dataclasses.replace(sync, report_dir=settings.report_dir)
    ctx = SyncContext(client=client, storage=storage or Storage.from_url(settings.database_url),
                      settings=sync)
    # No redirects: a webhook receiver must answer itself, not hand the signed body on.
    http = httpx.AsyncClient(follow_redirects=False)
    return Runtime(settings=settings, sync=ctx, webhook_http=http, redis=redis)


_runtimes: dict[int, tuple[asyncio.AbstractEventLoop, Runtime]] = {}


def install(runtime: Runtime) -> None:
    """Makes ``runtime`` the one the processors use in the running event loop."""
    loop = asyncio.get_running_loop()
    _runtimes[id(loop)] = (loop, runtime)


def current() -> Runtime:
    loop = asyncio.get_running_loop()
    found = _runtimes.get(id(loop))
    if found is not None and found[0] is loop:
        return found[1]
    settings = dataclasses.replace(AppSettings.from_env(), redis_url=queues.redis_url(),
                                   prefix=queues.queue_prefix())
    runtime = build_runtime(settings)
    _runtimes[id(loop)] = (loop, runtime)
    return runtime


async def uninstall() -> None:
    """Closes and forgets the running loop's runtime (the storage stays open: its owner
    disposes of it)."""
    loop = asyncio.get_running_loop()
    found = _runtimes.pop(id(loop), None)
    if found is not None:
        await found[1].aclose()
