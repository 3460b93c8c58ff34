"""The app (processors.jobs) running against the fake Amazon and a real Redis, for the
tests/test_app_* modules. Not a conftest: each module opts in with a three-line fixture.
"""

from __future__ import annotations

import atexit
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

from minique import Job, Queue
from minique.events import Event, parse_entry
from processors import queues, runtime
from processors.accounts import add_seller_account
from processors.amazon import AmazonEndpoints, ClientSettings
from processors.fake_amazon import DAY_ZONES, FakeAmazon, FakeAmazonServer, FakeClock
from processors.fake_amazon.server import quiet_dropped_connection_logs
from processors.queues import QueueName
from processors.settings import AppSettings
from processors.storage import Storage, schema
from processors.sync_logic import SyncSettings
from processors.workers import WorkerGroup

_fake: FakeAmazonServer | None = None
_ids = itertools.count()
ACCOUNTS = ("acct-0", "acct-1")
SYNC_TABLES = (schema.orders, schema.order_items, schema.financial_transactions,
               schema.inventory_snapshots, schema.listings, schema.ad_performance, schema.ad_products)


def shared_fake() -> FakeAmazonServer:
    """One fake per test session (building its data takes a moment); reset per test."""
    global _fake
    if _fake is None:
        quiet_dropped_connection_logs()
        _fake = FakeAmazonServer(FakeAmazon(seed=7, clock=FakeClock(clear_of=DAY_ZONES))).start()
        atexit.register(_fake.stop)
    _fake.fake.reset()
    return _fake


@dataclass
class App:
    fake: FakeAmazon
    fake_url: str
    storage: Storage
    settings: AppSettings
    redis_url: str
    prefix: str
    workers: WorkerGroup | None

    def queue(self, name: QueueName) -> Queue:
        return queues.get_queue(name)

    async def run(self, name: QueueName, data: Any, timeout: float = 30.0, **options: Any) -> tuple[Job, Any]:
        """Adds a job, waits for it, and returns it refreshed with its return value."""
        job = await self.queue(name).add(name.value, data, **options)
        result = await job.wait_until_finished(timeout=timeout)
        return await job.refresh(), result

    async def events(self, name: QueueName, job_id: str | None = None) -> list[Event]:
        queue = self.queue(name)
        raw = await queue.redis.xrange(queue.keys.events)
        found = [e for i, f in raw for e in parse_entry(i, f)]
        return [e for e in found if job_id is None or e.job_id == job_id]


    async def forget_quota(self) -> None:
        """Empties our shared quota buckets (as if every bucket had refilled)."""
        redis = runtime.current().redis
        async for key in redis.scan_iter(match=f"{{{self.prefix}:quota}}*"):
            await redis.delete(key)

    async def progress_steps(self, name: QueueName, job_id: str) -> list[Any]:
        """The progress values the job reported, in order (from the events stream)."""
        queue = self.queue(name)
        raw = await queue.redis.xrange(queue.keys.events)
        return [msgspec.msgpack.decode(f[b"pg"]) for _, f in raw
                if f.get(b"ev") == b"progress" and f.get(b"id") == job_id.encode() and f.get(b"pg")]


def snapshot(storage: Storage, account_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every synced row, in key order; when a snapshot was captured is not synced data."""
    out = {}
    for table in SYNC_TABLES:
        rows = [{k: v for k, v in r.items() if k != "captured_at"} for r in storage.rows(table, account_id)]
        keys = [c.name for c in table.primary_key.columns]
        out[table.name] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in keys))
    return out


def add_fake_accounts(storage: Storage, fake: FakeAmazon, webhook_url: str | None = None) -> None:
    for seller in fake.sellers:
        add_seller_account(
            storage, id=f"acct-{seller.index}", name=seller.name, region="NA",
            marketplace_ids=list(seller.marketplace_ids), seller_id=seller.seller_id,
            lwa_client_id=seller.client_id, lwa_client_secret=seller.client_secret,
            refresh_token=seller.refresh_token, ads_refresh_token=seller.ads_refresh_token,
            acos_target=0.30, low_stock_days=14, webhook_url=webhook_url)


@asynccontextmanager
async def running_app(
    redis_url: str,
    tmp_path: Path,
    *,
    workers: Sequence[QueueName] | None = tuple(QueueName),
    webhook_urls: Sequence[str] = (),
    webhook_secret: str | None = None,
    webhook_on_jobs: bool = False,
    quota_scale: float = 1.0,
) -> AsyncIterator[App]:
    """The app with its own key prefix, quota buckets and database; workers for ``workers``.

    ``quota_scale`` multiplies every usage plan's rate, the fake's and the client's alike: a
    fast clock for Amazon's quotas."""
    server = shared_fake()
    server.fake.quota_scale = quota_scale
    prefix = f"app{next(_ids)}-{uuid.uuid4().hex[:6]}"
    queues.configure(url=redis_url, prefix=prefix)
    db_url = f"sqlite:///{tmp_path / 'app.db'}"
    storage = Storage.from_url(db_url)
    add_fake_accounts(storage, server.fake)
    settings = AppSettings(redis_url=redis_url, database_url=db_url, prefix=prefix,
                           report_dir=tmp_path / "reports", webhook_urls=tuple(webhook_urls),
                           webhook_secret=webhook_secret, webhook_on_jobs=webhook_on_jobs)
    client_settings = ClientSettings(endpoints=AmazonEndpoints.single_host(server.url),
                                     timeout=httpx.Timeout(5.0, connect=2.0), quota_scale=quota_scale)
    sync_settings = SyncSettings(report_dir=settings.report_dir, ads_poll_interval=0.01,
                                 ads_poll_timeout=30.0, env={}, clock=server.fake.clock.now)
    runtime.install(runtime.build_runtime(settings, client_settings=client_settings,
                                          sync_settings=sync_settings, storage=storage,
                                          quota_tag=f"{{{prefix}:quota}}"))
    group = WorkerGroup(workers, block_timeout=1.0).start() if workers else None
    try:
        yield App(server.fake, server.url, storage, settings, redis_url, prefix, group)
    finally:
        if group is not None:
            await group.close()
        for name in QueueName:
            queue = queues.get_queue(name)
            for scheduler in await queue.get_job_schedulers():
                await queue.remove_job_scheduler(scheduler.id)
            await queue.obliterate(force=True)
        await runtime.uninstall()
        await queues.close_queues()
        queues.reset_configuration()
        storage.dispose()
