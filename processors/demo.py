"""The demo: the Amazon seller jobs end to end, on this machine only (no network).

    python -m processors.demo                 # sync, report, alert; print stats; exit
    python -m processors.demo --short         # the same in a few seconds (14 days of data)
    python -m processors.demo --keep-running  # then stay up with the schedules live

It uses the Redis at $MINIQUE_REDIS_URL (a private one is started when none answers), a fake
Amazon with two seller accounts in this process, a SQLite file and the reports under
``.demo/``, and a local webhook receiver that checks every signature. The queues live under
the key prefix ``minique-demo``, so a shared Redis's real queues are never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from minique import QueueEvents
from minique.connection import resolve_url
from minique.server import RedisServer, reachable
from processors import queues, runtime, schedules
from processors.accounts import add_seller_account
from processors.amazon.config import (
    ENV_ADS_ENDPOINT,
    ENV_ADS_TOKEN_URL,
    ENV_LWA_TOKEN_URL,
    ENV_SPAPI_ENDPOINT,
)
from processors.demo_progress import ProgressBoard
from processors.fake_amazon import FakeAmazon, FakeAmazonServer
from processors.queues import QueueName, get_queue, get_queue_stats
from processors.settings import AppSettings
from processors.storage import Storage
from processors.sync_logic import SyncSettings
from processors.webhook_receiver import WebhookReceiver
from processors.workers import WorkerGroup

PREFIX = "minique-demo"
DEMO_USER = "demo-user"
QUOTA_TAG = "{minique-demo:amazon-quota}"


@contextlib.contextmanager
def redis_for_demo() -> Iterator[str]:
    """The configured Redis if it answers; otherwise a private server for this run."""
    url = resolve_url(None)
    if reachable(url):
        yield url
        return
    print(f"no Redis at {url}; starting a private one")
    with RedisServer() as server:
        yield server.url


def point_amazon_at(base_url: str) -> None:
    """Every Amazon base URL comes from these variables, so nothing leaves this machine."""
    os.environ[ENV_SPAPI_ENDPOINT] = base_url
    os.environ[ENV_ADS_ENDPOINT] = base_url
    os.environ[ENV_LWA_TOKEN_URL] = base_url + "/auth/o2/token"
    os.environ[ENV_ADS_TOKEN_URL] = base_url + "/auth/o2/token"


def fresh_storage(directory: Path) -> tuple[Storage, str]:
    # The fake's data is generated relative to today, so yesterday's rows would not match.
    for old in directory.glob("demo.db*"):
        old.unlink()
    url = f"sqlite:///{directory / 'demo.db'}"
    return Storage.from_url(url), url


def add_demo_accounts(storage: Storage, fake: FakeAmazon) -> list[str]:
    ids = []
    for seller in fake.sellers:
        account_id = f"demo-{seller.index + 1}"
        add_seller_account(
            storage, id=account_id, name=seller.name, region="NA",
            marketplace_ids=list(seller.marketplace_ids), seller_id=seller.seller_id,
            lwa_client_id=seller.client_id, lwa_client_secret=seller.client_secret,
            refresh_token=seller.refresh_token, ads_refresh_token=seller.ads_refresh_token,
            acos_target=0.30, low_stock_days=14)
        ids.append(account_id)
    return ids


@dataclass(frozen=True)
class Setup:
    url: str
    fake: FakeAmazon
    receiver: WebhookReceiver
    directory: Path
    storage: Storage
    database_url: str
    accounts: list[str]


def prepare(url: str, fake: FakeAmazon, receiver: WebhookReceiver, directory: Path) -> Setup:
    directory.mkdir(parents=True, exist_ok=True)
    storage, db_url = fresh_storage(directory)
    return Setup(url, fake, receiver, directory, storage, db_url, add_demo_accounts(storage, fake))


async def run(args: argparse.Namespace, setup: Setup) -> int:
    queues.configure(url=setup.url, prefix=PREFIX)
    for name in QueueName:  # a clean slate for this run (the demo's own prefix only)
        queue = get_queue(name)
        # Schedulers first: obliterate leaves them behind, pointing at deleted firings.
        for scheduler in await queue.get_job_schedulers():
            await queue.remove_job_scheduler(scheduler.id)
        await queue.obliterate(force=True)
    settings = AppSettings(redis_url=setup.url, database_url=setup.database_url, prefix=PREFIX,
                           report_dir=setup.directory / "reports", webhook_urls=(setup.receiver.url,),
                           webhook_secret=setup.receiver.secret, webhook_on_jobs=True)
    sync_settings = SyncSettings(report_dir=settings.report_dir, initial_lookback_days=setup.fake.days,
                                 ads_poll_interval=0.1, clock=setup.fake.clock.now)
    rt = runtime.build_runtime(settings, sync_settings=sync_settings, storage=setup.storage,
                               quota_tag=QUOTA_TAG)
    # The fake Amazon is new on every run, so our buckets from an earlier run are stale (and a
    # drained searchOrders bucket takes minutes to refill).
    async for key in rt.redis.scan_iter(match=QUOTA_TAG + ":*"):
        await rt.redis.delete(key)
    runtime.install(rt)
    workers = WorkerGroup(block_timeout=1.0).start()
    try:
        return await _show(args, setup.accounts, setup.receiver, setup.directory)
    finally:
        await workers.close()
        await runtime.uninstall()
        await queues.close_queues()
        setup.storage.dispose()


async def _show(args: argparse.Namespace, accounts: list[str], receiver: WebhookReceiver,
                directory: Path) -> int:
    print(f"accounts: {', '.join(accounts)} (fake Amazon, {len(accounts)} sellers)")
    applied = await schedules.apply_for_connected_accounts(runtime.current().storage)
    for queue_name, ids in applied.items():
        cron = schedules.SCHEDULES[QueueName(queue_name)]
        print(f"schedule {queue_name:<10} {cron:<13} {', '.join(ids)}")
    board = ProgressBoard()
    print("\nsyncing (orders, fees, ppc, inventory, listings, refunds):")
    for account in accounts:
        job = await get_queue(QueueName.DATA_SYNC).add("data-sync", {"amazon_account_id": account})
        board.track(f"data-sync   {account}", job)
    # The seed's manual job, exactly as a web request would add it.
    job = await get_queue(QueueName.MANUAL_SYNC).add(
        "manual-sync", {"amazon_account_id": accounts[0], "user_id": DEMO_USER, "sync_type": "inventory"})
    board.track(f"manual-sync {accounts[0]} (inventory)", job)
    if not await board.follow(timeout=120) or board.failed:
        return _failed(board)
    print("\nreports and alerts:")
    board = ProgressBoard()  # a board of its own, drawn below the heading
    for account in accounts:
        board.track(f"reports     {account}", await get_queue(QueueName.REPORTS).add(
            "reports", {"amazon_account_id": account}))
        board.track(f"alerts      {account}", await get_queue(QueueName.ALERTS).add(
            "alerts", {"amazon_account_id": account}))
    if not await board.follow(timeout=60) or board.failed:
        return _failed(board)
    await _wait_for_webhooks(timeout=30)
    await _summary(board, receiver, directory)
    if args.keep_running:
        print("\nrunning with the schedules live (data-sync hourly, alerts every 15 min, "
              "reports at 02:00 in each marketplace's time zone); Ctrl-C to stop")
        watchers = [asyncio.create_task(_print_outcomes(name)) for name in QueueName]
        await _until_signal()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    return 0


async def _print_outcomes(name: QueueName) -> None:
    """One line per finished job, so the scheduled runs show up as they happen."""
    async with QueueEvents(name.value, url=queues.redis_url(), prefix=PREFIX) as events:
        async for event in events:
            if event.name in ("completed", "failed", "retrying"):
                reason = event.fields.get("reason", "")
                print(f"{time.strftime('%H:%M:%S')}  {name.value:<12} job {event.job_id} {event.name} "
                      f"{reason}".rstrip(), flush=True)


async def _wait_for_webhooks(timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        stats = await get_queue_stats(QueueName.WEBHOOKS)
        if stats["waiting"] + stats["active"] + stats["delayed"] == 0:
            return
        await asyncio.sleep(0.05)


async def _summary(board: ProgressBoard, receiver: WebhookReceiver, directory: Path) -> None:
    print("\nqueue stats (delayed: the schedulers' next firings):")
    print(f"  {'queue':<12}" + "".join(f"{k:>10}" for k in
                                        ("waiting", "active", "completed", "failed", "delayed", "total")))
    for name in QueueName:
        stats = await get_queue_stats(name)
        print(f"  {name.value:<12}" + "".join(f"{stats[k]:>10}" for k in
                                              ("waiting", "active", "completed", "failed", "delayed",
                                               "total")))
    print("\nreports:")
    for row in board.rows:
        if row.job.name == "reports":
            result = await row.job.wait_until_finished(timeout=5)
            for report in result["reports"]:  # one per marketplace, each in its own currency
                print(f"  {result['amazon_account_id']} {report['country']} {report['day']}: revenue "
                      f"{report['revenue']} {report['currency']}, ad spend {report['ad_spend']}, "
                      f"net {report['net_proceeds']}" + ("" if report["complete"] else " (incomplete)"))
                print(f"    {report['html_path']}")
                print(f"    {report['csv_path']}")
    events = receiver.events()
    verified = sum(1 for e in events if e.verified)
    kinds = sorted({e.event_type for e in events})
    print(f"\nwebhooks received: {len(events)} ({verified} with a valid signature): {', '.join(kinds)}")
    print(f"database: {directory / 'demo.db'}")


def _failed(board: ProgressBoard) -> int:
    for row in board.rows:
        if row.state != "completed":
            print(f"job {row.label} did not complete: {row.state} {row.reason or ''}", file=sys.stderr)
    return 1


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The workers keep the schedulers' fire times topped up while they run.
    await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processors.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true",
                        help="a quick run (14 days of data instead of 90), e.g. for CI")
    parser.add_argument("--keep-running", action="store_true",
                        help="stay up afterwards, with the schedules live")
    parser.add_argument("--dir", default=".demo", help="where the database and reports go")
    parser.add_argument("--seed", type=int, default=7, help="the fake Amazon's data seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    # The fake drops connections on purpose only when asked; its access log is noise here.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    fake = FakeAmazon(seed=args.seed, seller_count=2, days=14 if args.short else 90)
    with redis_for_demo() as url, FakeAmazonServer(fake) as server, \
            WebhookReceiver(secrets.token_hex(16)) as receiver:
        point_amazon_at(server.url)
        print(f"redis: {url}   fake Amazon: {server.url}   webhooks: {receiver.url}")
        setup = prepare(url, fake, receiver, Path(args.dir).resolve())
        return asyncio.run(run(args, setup))


if __name__ == "__main__":
    sys.exit(main())
