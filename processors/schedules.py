"""The recurring jobs (the seed's schedulers), one job scheduler per queue and account.

    data-sync  0 * * * *      every hour
    reports    0 2 * * *      daily at 02:00 in the account's home marketplace's time zone
    alerts     */15 * * * *   every 15 minutes

A seller's day is its marketplace's day (America/Los_Angeles for the US), so the daily report
runs two hours after that day ends there, not at a UTC hour.

Queue groups (per-account concurrency and rate limits, another issue) plug in here and in
``processors/jobs_cli.py``: each job of an account would be added to the group of its id.

Applying is idempotent: scheduler ids are ``<queue>:<account id>``, an upsert with the same
timing keeps the pending firing, and schedulers of accounts that are gone (or no longer
connected) are removed. Every worker process may apply them at start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from minique.scheduler import JobScheduler
from processors import queues
from processors.amazon import AccountDisconnected
from processors.payloads import AlertsPayload, DataSyncPayload, ReportPayload
from processors.queues import JOB_NAMES, QueueName
from processors.storage import Storage
from processors.sync_logic import AccountUnavailable, resolve_account
from processors.sync_logic.scopes import marketplace_scopes

TIMEZONE = "UTC"
SCHEDULES: dict[QueueName, str] = {
    QueueName.DATA_SYNC: "0 * * * *",
    QueueName.REPORTS: "0 2 * * *",
    QueueName.ALERTS: "*/15 * * * *",
}
_PAYLOADS: dict[QueueName, type[msgspec.Struct]] = {
    QueueName.DATA_SYNC: DataSyncPayload,
    QueueName.REPORTS: ReportPayload,
    QueueName.ALERTS: AlertsPayload,
}


def scheduler_id(queue: QueueName, account_id: str) -> str:
    return f"{queue.value}:{account_id}"


def connected_accounts(storage: Storage, env: Mapping[str, str] | None = None) -> list[str]:
    """Enabled accounts whose credentials are at hand (stored, or in the environment)."""
    ids = []
    for record in storage.list_accounts():
        try:
            resolve_account(record, env)
        except (AccountDisconnected, AccountUnavailable):
            continue
        ids.append(record.id)
    return ids


async def apply_schedules(
    account_ids: Iterable[str], zones: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Upserts the schedulers of ``account_ids`` and removes this module's others.

    ``zones``: account id -> the time zone its daily report runs in (default UTC).
    Returns the scheduler ids per queue.
    """
    accounts = list(dict.fromkeys(account_ids))
    zones = zones or {}
    applied: dict[str, list[str]] = {}
    for queue_name, cron in SCHEDULES.items():
        queue = queues.get_queue(queue_name)
        wanted = {scheduler_id(queue_name, a): a for a in accounts}
        for sid, account_id in wanted.items():
            data: dict[str, Any] = {"amazon_account_id": account_id}
            # The scheduler stores the data as given; check it as Queue.add would.
            msgspec.convert(data, _PAYLOADS[queue_name])
            tz = zones.get(account_id, TIMEZONE) if queue_name is QueueName.REPORTS else TIMEZONE
            await queue.upsert_job_scheduler(sid, cron=cron, tz=tz, job_name=JOB_NAMES[queue_name], data=data)
        existing: list[JobScheduler] = await queue.get_job_schedulers()
        for scheduler in existing:
            if scheduler.id.startswith(queue_name.value + ":") and scheduler.id not in wanted:
                await queue.remove_job_scheduler(scheduler.id)
        applied[queue_name.value] = sorted(wanted)
    return applied


def report_zones(storage: Storage) -> dict[str, str]:
    """Account id -> its home (first) marketplace's time zone (its Ads profile's when known)."""
    zones = {}
    for record in storage.list_accounts():
        scopes = marketplace_scopes(record, storage.ads_profiles(record.id))
        zones[record.id] = scopes[0].zone.key if scopes else TIMEZONE
    return zones


async def apply_for_connected_accounts(storage: Storage) -> dict[str, list[str]]:
    accounts = await asyncio.to_thread(connected_accounts, storage)
    zones = await asyncio.to_thread(report_zones, storage)
    return await apply_schedules(accounts, zones)
