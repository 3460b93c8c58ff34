"""``python -m processors sync|report|backfill``: the app's jobs, started from the shell.

    python -m processors sync acme-us                      # a data-sync of everything
    python -m processors sync acme-us --type orders --wait # a manual-sync of one kind
    python -m processors report acme-us --day 2026-08-01 --wait
    python -m processors backfill acme-us --from 2026-07-01 --to 2026-07-31

The jobs go to the queues (--url, --prefix; $MINIQUE_REDIS_URL, $MINIQUE_PREFIX) and the
workers run them; ``--wait`` waits for the outcome and prints it. ``backfill`` re-pulls
orders, transactions and ads from the first day (a data-sync with ``since``), waits for it,
then builds a report for every day of the range (``--no-sync``: the reports only).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import click

from minique import JobFailed
from processors.cli_options import prefix_option, redis_option, run_with_queues
from processors.payloads import ALL_SYNC_TYPES
from processors.queue_config import manual_sync_options
from processors.queues import QueueName, account_group, get_queue

DEFAULT_TIMEOUT = 600.0
timeout_option = click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=float,
                              help="Seconds to wait for each job (with --wait).")


def _print_reports(result: dict[str, Any]) -> None:
    for r in result["reports"]:
        state = "complete" if r["complete"] else "INCOMPLETE (missing " + ", ".join(r["missing"]) + ")"
        click.echo(f"{result['amazon_account_id']} {r['country']} {r['day']} ({r['currency']}): "
                   f"orders {r['orders']}, units {r['units']}, revenue {r['revenue']}, fees {r['fees']}, "
                   f"service fees {r['service_fees']}, refunds {r['refunds']}, ad spend {r['ad_spend']}, "
                   f"net {r['net_proceeds']}; {state}")
        click.echo(f"  {r['html_path']}\n  {r['csv_path']}")


async def _finish(job: Any, timeout: float) -> Any:
    try:
        return await job.wait_until_finished(timeout=timeout)
    except JobFailed as exc:
        raise click.ClickException(f"job {job.id} failed: {exc}") from None
    except TimeoutError:
        raise click.ClickException(f"job {job.id} did not finish within {timeout:g}s (is a worker "
                                   "running? `minique worker processors.jobs:registry`)") from None


@click.command("sync")
@click.argument("account_id")
@click.option("--type", "kinds", multiple=True, type=click.Choice(ALL_SYNC_TYPES),
              help="Sync only these kinds (repeatable; a manual-sync each). Default: a data-sync of all.")
@click.option("--user-id", default="cli", show_default=True, help="Recorded with a manual sync.")
@click.option("--wait", is_flag=True, help="Wait for the outcome and print it.")
@timeout_option
@redis_option
@prefix_option
def sync(account_id: str, kinds: tuple[str, ...], user_id: str, wait: bool, timeout: float,
         redis_url: str | None, prefix: str | None) -> None:
    """Trigger a sync of one account."""

    async def work() -> None:
        if kinds:
            queue = get_queue(QueueName.MANUAL_SYNC)
            jobs = [await queue.add("manual-sync", {"amazon_account_id": account_id, "user_id": user_id,
                                                    "sync_type": kind},
                                    **account_group(QueueName.MANUAL_SYNC, account_id),
                                    **manual_sync_options(account_id, kind)) for kind in kinds]
        else:
            jobs = [await get_queue(QueueName.DATA_SYNC).add(
                "data-sync", {"amazon_account_id": account_id},
                **account_group(QueueName.DATA_SYNC, account_id))]
        for job in jobs:
            click.echo(f"queued {job.name} job {job.id}")
        if wait:
            for job in jobs:
                result = await _finish(job, timeout)
                click.echo(f"job {job.id} done: written {result['written']}")

    run_with_queues(redis_url, prefix, work)


@click.command("report")
@click.argument("account_id")
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The marketplace's day (default: its yesterday).")
@click.option("--marketplace", default=None, help="One marketplace id (default: every one of the account).")
@click.option("--wait", is_flag=True, help="Wait for the report and print its figures and files.")
@timeout_option
@redis_option
@prefix_option
def report(account_id: str, day: Any, marketplace: str | None, wait: bool, timeout: float,
           redis_url: str | None, prefix: str | None) -> None:
    """Build the report of one day (again: a rebuild replaces it)."""
    payload: dict[str, Any] = {"amazon_account_id": account_id}
    if day is not None:
        payload["day"] = day.date().isoformat()
    if marketplace:
        payload["marketplace_id"] = marketplace

    async def work() -> None:
        job = await get_queue(QueueName.REPORTS).add("reports", payload)
        click.echo(f"queued reports job {job.id}")
        if wait:
            _print_reports(await _finish(job, timeout))

    run_with_queues(redis_url, prefix, work)


@click.command("backfill")
@click.argument("account_id")
@click.option("--from", "first", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option("--to", "last", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option("--no-sync", is_flag=True, help="Only rebuild the reports from the data already synced.")
@click.option("--marketplace", default=None, help="One marketplace id (default: every one of the account).")
@timeout_option
@redis_option
@prefix_option
def backfill(account_id: str, first: Any, last: Any, no_sync: bool, marketplace: str | None,
             timeout: float, redis_url: str | None, prefix: str | None) -> None:
    """Re-pull a range of days from Amazon and rebuild their reports."""
    start, end = first.date(), last.date()
    if end < start:
        raise click.UsageError(f"--to ({end}) is before --from ({start})")
    if (end - start).days > 366:
        raise click.UsageError("a back-fill covers at most 366 days")

    async def work() -> None:
        if not no_sync:
            job = await get_queue(QueueName.DATA_SYNC).add(
                "data-sync", {"amazon_account_id": account_id, "since": start.isoformat()})
            click.echo(f"queued data-sync job {job.id} from {start}")
            result = await _finish(job, timeout)
            click.echo(f"synced: {result['written']}")
        queue = get_queue(QueueName.REPORTS)
        jobs = []
        day: date = start
        while day <= end:
            payload: dict[str, Any] = {"amazon_account_id": account_id, "day": day.isoformat()}
            if marketplace:
                payload["marketplace_id"] = marketplace
            jobs.append(await queue.add("reports", payload))
            day += timedelta(days=1)
        click.echo(f"queued {len(jobs)} reports job(s)")
        incomplete = 0
        for job in jobs:
            result = await _finish(job, timeout)
            _print_reports(result)
            incomplete += sum(1 for r in result["reports"] if not r["complete"])
        click.echo(f"{len(jobs)} day(s) rebuilt" + (f", {incomplete} report(s) on incomplete data"
                                                     if incomplete else ""))

    run_with_queues(redis_url, prefix, work)
