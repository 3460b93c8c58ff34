"""The registry: which function runs each job, and the payload each queue accepts.

    minique worker processors.jobs:registry     # every queue of the app, 5 at once, 10 jobs/s

Errors keep the core's meaning. ``AmazonRateLimited`` (a 429, or an empty quota bucket)
becomes a ``GroupRateLimited``: Amazon's quotas are per selling account, and the sync jobs
are grouped by account (processors/queues.py), so that account's group sleeps for the delay,
without using an attempt, while the queue goes on with other accounts' jobs. A job without
a group (added without ``account_group``) waits alone, as a ``Delayed``. Transient Amazon
errors are plain exceptions, retried with the queue's backoff; ``AccountDisconnected`` is an
``UnrecoverableError`` (failed at once).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

from minique import Delayed, GroupRateLimited, Job, RateLimited, Registry, UnrecoverableError
from processors import runtime, schedules, webhooks
from processors.amazon import AmazonRateLimited
from processors.payloads import (
    AlertsPayload,
    DataSyncPayload,
    ManualSyncPayload,
    ReportPayload,
    WebhookPayload,
)
from processors.queues import DEFAULT_JOB_OPTIONS, JOB_NAMES, WORKER_OPTIONS, QueueName
from processors.storage import AccountRecord
from processors.sync_logic import (
    SyncContext,
    WebhookEvent,
    alert_event,
    build_daily_report,
    check_alerts,
    deliver_webhook,
    sync_account,
)

log = logging.getLogger("processors.jobs")
# The seed's worker settings travel with the registry, so the plain command applies them.
registry = Registry(worker_options={**WORKER_OPTIONS, "default_job_options": DEFAULT_JOB_OPTIONS})

Processor = Callable[[Job], Awaitable[dict[str, Any]]]


def _job(queue: QueueName) -> tuple[str, str]:
    """(queue, job name): each queue has one kind of job, named like the queue."""
    return queue.value, JOB_NAMES[queue]


def _account_of(job: Job) -> str | None:
    return getattr(job.payload, "amazon_account_id", None)


def notifies(fn: Processor) -> Processor:
    """Sends ``job.completed`` / ``job.failed`` webhooks (when configured) around ``fn``.

    A failure is reported only when it is the last attempt: an unrecoverable error, or the
    final one of ``attempts``. A throttled job has not failed: its account's group sleeps
    (``GroupRateLimited``; a job without a group waits alone), since one seller's quota
    says nothing about the others'.
    """

    @functools.wraps(fn)
    async def run(job: Job) -> dict[str, Any]:
        try:
            result = await fn(job)
        except AmazonRateLimited as exc:
            raise GroupRateLimited(exc.delay, str(exc)) from exc
        except (RateLimited, Delayed):
            raise
        except Exception as exc:
            if isinstance(exc, UnrecoverableError) or job.attempts_made + 1 >= job.opts.attempts:
                await webhooks.notify_job_outcome(job, "failed", {
                    "amazon_account_id": _account_of(job), "reason": f"{type(exc).__name__}: {exc}"})
            raise
        await webhooks.notify_job_outcome(job, "completed", {
            "amazon_account_id": _account_of(job), "result": result})
        return result

    return run


async def _account(ctx: SyncContext, account_id: str) -> AccountRecord:
    try:
        return await ctx.db(ctx.storage.get_account, account_id)
    except KeyError:
        # Retrying cannot make an account appear: it was removed, or the id is wrong.
        raise UnrecoverableError(f"no Amazon account {account_id!r}") from None


@registry.processor(*_job(QueueName.DATA_SYNC), payload=DataSyncPayload)
@notifies
async def data_sync(job: Job) -> dict[str, Any]:
    """The hourly sync of one account: orders, fees, PPC, inventory, listings, refunds."""
    payload: DataSyncPayload = job.payload
    ctx = runtime.current().sync
    await _account(ctx, payload.amazon_account_id)
    written = await sync_account(ctx, payload.amazon_account_id, payload.sync_types, job.update_progress)
    return {"amazon_account_id": payload.amazon_account_id, "written": written}


@registry.processor(*_job(QueueName.MANUAL_SYNC), payload=ManualSyncPayload)
@notifies
async def manual_sync(job: Job) -> dict[str, Any]:
    """One ``sync_type`` for one account, started by a user (recorded for audit)."""
    payload: ManualSyncPayload = job.payload
    ctx = runtime.current().sync
    await _account(ctx, payload.amazon_account_id)
    # The audit trail: in the job's log (kept with the job) and in the worker's log.
    await job.log(f"manual {payload.sync_type} sync of {payload.amazon_account_id} "
                  f"requested by user {payload.user_id}")
    log.info("manual-sync job %s: %s of %s for user %s", job.id, payload.sync_type,
             payload.amazon_account_id, payload.user_id)
    written = await sync_account(ctx, payload.amazon_account_id, [payload.sync_type], job.update_progress)
    return {"amazon_account_id": payload.amazon_account_id, "user_id": payload.user_id,
            "sync_type": payload.sync_type, "written": written}


@registry.processor(*_job(QueueName.REPORTS), payload=ReportPayload)
@notifies
async def daily_report(job: Job) -> dict[str, Any]:
    """One account's report for one UTC day (yesterday by default), as CSV and HTML."""
    payload: ReportPayload = job.payload
    ctx = runtime.current().sync
    await _account(ctx, payload.amazon_account_id)
    try:
        day = (date.fromisoformat(payload.day) if payload.day
               else ctx.settings.clock().date() - timedelta(days=1))
    except ValueError as exc:
        raise UnrecoverableError(f"day must be an ISO date (YYYY-MM-DD): {exc}") from None
    await job.update_progress(10)
    report = await build_daily_report(ctx, payload.amazon_account_id, day)
    await job.update_progress(100)
    return {
        "amazon_account_id": report.account_id,
        "day": report.day.isoformat(),
        "csv_path": str(report.csv_path),
        "html_path": str(report.html_path),
        "currency": report.currency,
        "orders": report.orders,
        "units": report.units,
        # Money as strings: exact decimals, whatever reads the return value.
        "revenue": str(report.revenue),
        "fees": str(report.fees),
        "refunds": str(report.refunds),
        "ad_spend": str(report.ad_spend),
        "net_proceeds": str(report.net_proceeds),
        "acos": report.acos,
        "tacos": report.tacos,
    }


@registry.processor(*_job(QueueName.ALERTS), payload=AlertsPayload)
@notifies
async def alerts(job: Job) -> dict[str, Any]:
    """Low stock, high ACOS and spend without sales; each new alert is sent as a webhook."""
    payload: AlertsPayload = job.payload
    ctx = runtime.current().sync
    record = await _account(ctx, payload.amazon_account_id)
    raised = await check_alerts(ctx, payload.amazon_account_id, ctx.settings.clock())
    await job.update_progress(50)
    sent: list[str] = []
    for alert in raised:
        event = alert_event(alert)
        # One id per alert (account, condition, subject, day): a re-sent alert is deduplicated.
        event_id = f"alert:{alert.account_id}:{alert.kind}:{alert.subject}:{alert.day.isoformat()}"
        sent += await webhooks.send_event(
            WebhookEvent(id=event_id, type=event.type, created_at=event.created_at, data=event.data),
            record.webhook_url,
        )
    await job.update_progress(100)
    return {
        "amazon_account_id": payload.amazon_account_id,
        "raised": [{"kind": a.kind, "subject": a.subject, "severity": a.severity} for a in raised],
        "webhook_jobs": sent,
    }


@registry.processor(*_job(QueueName.WEBHOOKS), payload=WebhookPayload)
async def webhook(job: Job) -> dict[str, Any]:
    """One signed POST. 5xx, 429 and network errors retry; other 4xx fail at once."""
    payload: WebhookPayload = job.payload
    rt = runtime.current()
    secret = rt.settings.webhook_secret
    if not secret:
        raise UnrecoverableError("MINIQUE_WEBHOOK_SECRET is not set on this worker")
    status = await deliver_webhook(rt.webhook_http, payload.url, payload.body.encode(), secret,
                                   event_type=payload.event_type)
    return {"event_id": payload.event_id, "status": status}


@registry.on_startup
async def apply_schedules(redis_url: str, prefix: str) -> None:
    """``minique worker processors.jobs:registry`` applies the schedules before it starts
    (idempotent, so every worker process may do it), in the queues its workers serve."""
    from processors import queues

    queues.configure(url=redis_url, prefix=prefix)
    await queues.apply_group_defaults()
    applied = await schedules.apply_for_connected_accounts(runtime.current().storage)
    log.info("job schedulers applied: %s", {q: len(ids) for q, ids in applied.items()})
