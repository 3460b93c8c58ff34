"""The app's commands: accounts disable/enable/rotate/remove (schedules follow in Redis), and
sync, report and backfill through the queues and real workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from amazon.expected import day_totals, zone_of
from app_support import App, running_app
from click.testing import CliRunner, Result

from processors import queues, schedules
from processors.cli import main
from processors.queues import QueueName
from processors.storage import Storage, schema

ADD = ["accounts", "add", "--name", "Acme", "--region", "NA", "--marketplace", "ATVPDKIKX0DER",
       "--seller-id", "A1SELLER", "--lwa-client-id", "amzn1.client"]
SECRETS = {"AMAZON_LWA_CLIENT_SECRET": "s3cret", "AMAZON_REFRESH_TOKEN": "Atzr|old",
           "AMAZON_ADS_REFRESH_TOKEN": "Atzr|ads-old"}


def _schedulers(redis_url: str, prefix: str) -> list[str]:
    async def read() -> list[str]:
        ids: list[str] = []
        try:
            for name in schedules.SCHEDULES:
                ids += [s.id for s in await queues.get_queue(name).get_job_schedulers()]
        finally:
            await queues.close_queues()
        return sorted(ids)

    with queues.configured(url=redis_url, prefix=prefix):
        return asyncio.run(read())


def test_accounts_disable_enable_rotate_remove(redis_url: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    prefix = f"cli-{uuid.uuid4().hex[:6]}"
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
        return runner.invoke(main, [*args, "--database-url", db], env=env, input=stdin)

    for account in ("acme-us", "beta-us"):
        added = run(*ADD, "--id", account, env=SECRETS)
        assert added.exit_code == 0, added.output
    where = ["--url", redis_url, "--prefix", prefix]
    disabled = run("accounts", "disable", "beta-us", *where)
    assert disabled.exit_code == 0, disabled.output
    assert _schedulers(redis_url, prefix) == ["alerts:acme-us", "data-sync:acme-us", "reports:acme-us"]
    assert "DISABLED" in run("accounts", "list").output.split("beta-us")[1].splitlines()[0]
    enabled = run("accounts", "enable", "beta-us", *where)
    assert enabled.exit_code == 0 and len(_schedulers(redis_url, prefix)) == 6

    rotated = run("accounts", "rotate", "acme-us", "--refresh-token", "--ads-refresh-token", "Atzr|ads-new",
                  stdin="Atzr|new\n")
    assert rotated.exit_code == 0, rotated.output
    assert "replaced ads_refresh_token, refresh_token" in rotated.output and "Atzr|new" not in rotated.output
    storage = Storage.from_url(db)
    try:
        record = storage.get_account("acme-us")
        assert (record.refresh_token, record.ads_refresh_token, record.lwa_client_secret) == (
            "Atzr|new", "Atzr|ads-new", "s3cret")
        storage.upsert(schema.listings, [{"account_id": "beta-us", "sku": "S", "marketplace_id": "M"}])
    finally:
        storage.dispose()

    unknown = run("accounts", "disable", "nope", *where)
    assert unknown.exit_code == 1 and unknown.output.strip() == "Error: no Amazon account 'nope'"
    nothing = run("accounts", "rotate", "acme-us")
    assert nothing.exit_code == 2 and "give at least one of" in nothing.output

    refused = run("accounts", "remove", "beta-us", *where, stdin="n\n")
    assert refused.exit_code == 1 and _schedulers(redis_url, prefix) != []
    removed = run("accounts", "remove", "beta-us", "--purge", "--yes", *where)
    assert removed.exit_code == 0, removed.output
    assert _schedulers(redis_url, prefix) == ["alerts:acme-us", "data-sync:acme-us", "reports:acme-us"]
    storage = Storage.from_url(db)
    try:
        assert [r.id for r in storage.list_accounts()] == ["acme-us"]
        assert storage.count(schema.listings, "beta-us") == 0
    finally:
        storage.dispose()
    # Without Redis, the account still changes; the schedules wait for the workers' start.
    offline = run("accounts", "disable", "acme-us", "--url", "redis://127.0.0.1:9/0")
    assert offline.exit_code == 0 and "schedules not updated (cannot reach Redis" in offline.output


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path) as running:
        yield running


async def _cli(app: App, *args: str) -> Result:
    """The command in a thread of its own (it runs its own event loop), on the app's queues."""
    return await asyncio.to_thread(
        CliRunner().invoke, main, [*args, "--url", app.redis_url, "--prefix", app.prefix])


async def test_sync_and_report_commands(app: App) -> None:
    synced = await _cli(app, "sync", "acct-0", "--type", "listings", "--wait", "--timeout", "60")
    assert synced.exit_code == 0, synced.output
    assert f"written {{'listings': {len(app.fake.data[0].listings)}}}" in synced.output
    await _cli(app, "sync", "acct-0", "--type", "orders", "--type", "fees", "--type", "ppc", "--wait")
    day = app.fake.clock.now().astimezone(zone_of("ATVPDKIKX0DER")).date() - timedelta(days=4)
    reported = await _cli(app, "report", "acct-0", "--day", day.isoformat(), "--wait")
    assert reported.exit_code == 0, reported.output
    want = day_totals(app.fake.data[0], day)
    assert f"acct-0 US {day.isoformat()} (USD): orders {want['orders']}, units {want['units']}, " \
           f"revenue {want['revenue']}" in reported.output
    assert "; complete" in reported.output and ".html" in reported.output
    bad = await _cli(app, "report", "acct-0", "--day", "2026-13-01")
    assert bad.exit_code == 2 and "2026-13-01" in bad.output


async def test_backfill_re_pulls_the_range_and_rebuilds_its_reports(app: App) -> None:
    await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0"})
    zone = zone_of("ATVPDKIKX0DER")
    last = app.fake.clock.now().astimezone(zone).date() - timedelta(days=10)
    first = last - timedelta(days=2)
    # Orders lost from the database (say, from before a restore): the watermarks are past them.
    with app.storage.engine.begin() as conn:
        conn.execute(schema.orders.delete())
    backfilled = await _cli(app, "backfill", "acct-0", "--from", first.isoformat(), "--to", last.isoformat())
    assert backfilled.exit_code == 0, backfilled.output
    assert "3 day(s) rebuilt" in backfilled.output and "incomplete" not in backfilled.output
    for n in range(3):
        day = first + timedelta(days=n)
        want = day_totals(app.fake.data[0], day)
        [row] = [r for r in app.storage.rows(schema.reports, "acct-0") if r["day"] == day]
        assert (row["orders"], row["revenue"]) == (want["orders"], want["revenue"]), day
        assert row["revenue"] > Decimal(0)
    backwards = await _cli(app, "backfill", "acct-0", "--from", last.isoformat(), "--to", first.isoformat())
    assert backwards.exit_code == 2 and "is before --from" in backwards.output
