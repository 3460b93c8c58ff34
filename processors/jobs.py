"""The registry: which function runs each job, and the payload each queue accepts.

    minique worker processors.jobs:registry     # every queue of the app, 5 at once, 10 jobs/s

Errors become job outcomes in ``processors.outcomes``: a 429 delays that job alone (no
attempt used), a disconnected account fails at once, transient errors retry with backoff.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from minique import (
    Batch,
    Delayed,
    FlowProducer,
    GroupRateLimited,
    InvalidJobState,
    Job,
    RateLimited,
    Registry,
    UnrecoverableError,
)
from minique.keys import FIRING_ID_PREFIX
from processors import runtime, schedules, webhooks
from processors.account_lease import sync_exclusively
from processors.outcomes import maps_outcomes, queue_outcome
from processors.payloads import (
    AlertsPayload,
    DataSyncPayload,
    ManualSyncPayload,
    ReportPayload,
    WebhookPayload,
)
from processors.queue_config import (
    DEFAULT_JOB_OPTIONS,
    JOB_NAMES,
    PAYLOAD_TYPES,
    WEBHOOK_BATCH,
    WORKER_OPTIONS,
    QueueName,
    daily_report_flow,
)
from processors.storage import AccountRecord
from processors.sync_logic import (
    AccountUnavailable,
    Alert,
    DailyReport,
    SyncContext,
    WebhookDeliveryError,
    WebhookEvent,
    alert_event,
    build_daily_report,
    check_alerts,
    deliver_webhook,
    incomplete_report_alerts,
    sync_account,
)

log = logging.getLogger("processors.jobs")
# The seed's worker settings travel with the registry, so the plain command applies them.
registry = Registry(worker_options={**WORKER_OPTIONS, "default_job_options": DEFAULT_JOB_OPTIONS})

Processor = Callable[[Job], Awaitable[dict[str, Any]]]


def _processor(queue: QueueName, *, notify: bool = True) -> Callable[[Processor], Processor]:
    """Registers ``fn`` for ``queue``'s job: its errors mapped to queue outcomes, then (with
    ``notify``) its final outcome sent as a webhook."""

    def register(fn: Processor) -> Processor:
        wrapped = maps_outcomes(fn)
        registry.add(queue.value, notifies(wrapped) if notify else wrapped, name=JOB_NAMES[queue],
                     payload=PAYLOAD_TYPES[queue])
        return fn

    return register


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
        record = await ctx.db(ctx.storage.get_account, account_id)
    except KeyError:
        # Retrying cannot make an account appear: it was removed, or the id is wrong.
        raise AccountUnavailable(f"no Amazon account {account_id!r}") from None
    if not record.enabled:
        raise AccountUnavailable(f"account {account_id!r} is disabled")
    return record


async def _exclusive_sync(job: Job, account_id: str,
                          sync: Callable[[], Awaitable[dict[str, int]]]) -> dict[str, int]:
    """``sync()`` under the account's sync lease (``processors.account_lease``): a manual
    sync, a scheduled one and the daily flow's never overlap for one account, whichever
    queue each comes from, and a job turned away has the next turn."""
    rt = runtime.current()
    return await sync_exclusively(rt.redis, rt.settings.prefix, account_id, sync,
                                  waiter=f"{job.queue.name}:{job.id}")


@_processor(QueueName.DATA_SYNC)
async def data_sync(job: Job) -> dict[str, Any]:
    """The hourly sync of one account: orders, fees, PPC, inventory, listings, refunds."""
    payload: DataSyncPayload = job.payload
    ctx = runtime.current().sync
    await _account(ctx, payload.amazon_account_id)
    try:
        since = date.fromisoformat(payload.since) if payload.since else None
    except ValueError as exc:
        raise UnrecoverableError(f"since must be an ISO date (YYYY-MM-DD): {exc}") from None
    # The job's id names the run: after a 429 or an error it resumes where it stopped.
    written = await _exclusive_sync(job, payload.amazon_account_id, lambda: sync_account(
        ctx, payload.amazon_account_id, payload.sync_types, job.update_progress, run_id=job.id,
        since=since))
    return {"amazon_account_id": payload.amazon_account_id, "written": written}


@_processor(QueueName.MANUAL_SYNC)
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
    written = await _exclusive_sync(job, payload.amazon_account_id, lambda: sync_account(
        ctx, payload.amazon_account_id, [payload.sync_type], job.update_progress, run_id=job.id))
    return {"amazon_account_id": payload.amazon_account_id, "user_id": payload.user_id,
            "sync_type": payload.sync_type, "written": written}


@_processor(QueueName.REPORTS)
async def daily_report(job: Job) -> dict[str, Any]:
    """One account's report for one day per marketplace (each one's yesterday by default), as
    CSV and HTML; a report built on incomplete data also raises a "data incomplete" alert.

    Returns ``{"amazon_account_id", "reports": [{marketplace_id, country, currency, timezone,
    day, orders, units, revenue, fees, service_fees, refunds, ad_spend, ad_sales, net_proceeds,
    acos, tacos, complete, missing, csv_path, html_path}], "raised", "webhook_jobs"}``, money
    as decimal strings.
    """
    payload: ReportPayload = job.payload
    if job.id.startswith(FIRING_ID_PREFIX):
        return await _start_daily_flow(job, payload)
    ctx = runtime.current().sync
    record = await _account(ctx, payload.amazon_account_id)
    try:
        day = date.fromisoformat(payload.day) if payload.day else None
    except ValueError as exc:
        raise UnrecoverableError(f"day must be an ISO date (YYYY-MM-DD): {exc}") from None
    await job.update_progress(10)
    try:
        reports = await build_daily_report(ctx, payload.amazon_account_id, day, payload.marketplace_id)
    except ValueError as exc:  # a marketplace the account does not sell in
        raise UnrecoverableError(str(exc)) from None
    await job.update_progress(80)
    raised = await incomplete_report_alerts(ctx, reports, ctx.settings.clock())
    sent = await _send_alerts(raised, record)
    await job.update_progress(100)
    return {
        "amazon_account_id": payload.amazon_account_id,
        "reports": [_report_summary(r) for r in reports],
        "raised": [{"kind": a.kind, "subject": a.subject, "severity": a.severity} for a in raised],
        "webhook_jobs": sent,
    }


async def _start_daily_flow(job: Job, payload: ReportPayload) -> dict[str, Any]:
    """The 02:00 firing: the day's report becomes the parent of a fresh sync of the account
    (``queue_config.daily_report_flow``). Returns ``{"amazon_account_id", "report_job"}``."""
    tree = daily_report_flow(payload.amazon_account_id, job.id)
    flow = FlowProducer(connection=job.queue.redis, prefix=job.queue.prefix)
    try:
        report_id = (await flow.add(tree)).job.id
    except InvalidJobState:  # a retry of this firing: its flow was added already
        report_id = tree["opts"]["job_id"]
    return {"amazon_account_id": payload.amazon_account_id, "report_job": report_id}


def _report_summary(report: DailyReport) -> dict[str, Any]:
    money = ("revenue", "fees", "service_fees", "refunds", "ad_spend", "ad_sales", "net_proceeds")
    return {
        "marketplace_id": report.marketplace_id,
        "country": report.country,
        "currency": report.currency,
        "timezone": report.timezone,
        "day": report.day.isoformat(),
        "orders": report.orders,
        "units": report.units,
        # Money as strings: exact decimals, whatever reads the return value.
        **{name: str(getattr(report, name)) for name in money},
        "acos": report.acos,
        "tacos": report.tacos,
        "complete": report.complete,
        "missing": report.missing,
        "csv_path": str(report.csv_path),
        "html_path": str(report.html_path),
    }


async def _send_alerts(raised: list[Alert], record: AccountRecord) -> list[str]:
    """Queues a webhook per new alert; returns the webhook job ids."""
    sent: list[str] = []
    for alert in raised:
        event = alert_event(alert)
        # One id per alert (account, condition, subject, day): a re-sent alert is deduplicated.
        event_id = f"alert:{alert.account_id}:{alert.kind}:{alert.subject}:{alert.day.isoformat()}"
        sent += await webhooks.send_event(
            WebhookEvent(id=event_id, type=event.type, created_at=event.created_at, data=event.data),
            record.webhook_url,
        )
    return sent


@_processor(QueueName.ALERTS)
async def alerts(job: Job) -> dict[str, Any]:
    """Low stock, high ACOS (campaigns and account) and spend without sales; each new alert is
    sent as a webhook."""
    payload: AlertsPayload = job.payload
    ctx = runtime.current().sync
    record = await _account(ctx, payload.amazon_account_id)
    raised = await check_alerts(ctx, payload.amazon_account_id, ctx.settings.clock())
    await job.update_progress(50)
    sent = await _send_alerts(raised, record)
    await job.update_progress(100)
    return {
        "amazon_account_id": payload.amazon_account_id,
        "raised": [{"kind": a.kind, "subject": a.subject, "severity": a.severity} for a in raised],
        "webhook_jobs": sent,
    }


@registry.processor(QueueName.WEBHOOKS.value, name=JOB_NAMES[QueueName.WEBHOOKS],
                    payload=WebhookPayload, batch=WEBHOOK_BATCH)
async def webhook(batch: Batch) -> None:
    """The webhooks of one receiver (the batch's group), each its own signed POST, one after
    another and in order on one pooled connection. A job's return value is
    ``{"event_id", "status"}``. A 4xx other than 429 (or a 3xx) fails that job at once and
    the next is sent; a 5xx, a 429 or a network error fails it (retried with backoff) and the
    rest of the batch with it, untried: a receiver that is down is not called once per event.
    A 429 or 503 with Retry-After puts the whole batch back, no attempt used, and the
    receiver's group sleeps that long (at most 180 s). Any other error is that event's own
    (not the receiver's): it alone fails (retried) and the next is sent."""
    rt = runtime.current()
    secret = rt.settings.webhook_secret
    for i, job in enumerate(batch):
        payload: WebhookPayload = job.payload
        if not secret:
            batch.fail(job, UnrecoverableError("MINIQUE_WEBHOOK_SECRET is not set on this worker"))
            continue
        if batch.cancelled(job):
            continue  # cancelled (or another worker has it) while the batch ran: not sent
        try:
            status = await deliver_webhook(rt.webhook_http, payload.url, payload.body.encode(),
                                           secret, event_type=payload.event_type)
        except Exception as exc:
            outcome = queue_outcome(exc)
            if isinstance(outcome, UnrecoverableError):
                batch.fail(job, outcome)  # this event was refused; the receiver is up
                continue
            if isinstance(outcome, GroupRateLimited):
                # The receiver asked to wait (Retry-After): this event and the rest go back
                # to its group, which sleeps that long; no attempt used.
                for rest in batch.jobs[i:]:
                    batch.fail(rest, outcome)
                return
            if not isinstance(exc, WebhookDeliveryError):
                # Not the receiver's failure (this event's own problem): it alone retries.
                batch.fail(job, exc)
                continue
            batch.fail(job, exc)
            for rest in batch.jobs[i + 1:]:
                batch.fail(rest, f"not tried: the receiver failed ({exc})")
            return
        batch.complete(job, {"event_id": payload.event_id, "status": status})


@registry.on_startup
async def apply_schedules(redis_url: str, prefix: str) -> None:
    """``minique worker processors.jobs:registry`` applies the schedules before it starts
    (idempotent, so every worker process may do it), in the queues its workers serve."""
    from processors import queues

    queues.configure(url=redis_url, prefix=prefix)
    await queues.apply_group_defaults()
    applied = await schedules.apply_for_connected_accounts(runtime.current().storage)
    log.info("job schedulers applied: %s", {q: len(ids) for q, ids in applied.items()})
