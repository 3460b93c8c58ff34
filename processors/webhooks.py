"""Sending webhooks through the "webhooks" queue, so that delivery has its own retries.

An event becomes one job per receiver. The job id is derived from the event id and the URL,
so enqueueing the same event again (a retried job) adds nothing twice. The job's group is
its receiver (``endpoint_group``): the worker delivers a receiver's webhooks in batches
(``processors/jobs.py``), and a receiver that is down costs one failed POST per batch, not
one per event.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from minique import Job
from processors import queues, runtime
from processors.queues import JOB_NAMES, QueueName
from processors.sync_logic import WebhookEvent, encode_event

log = logging.getLogger("processors.webhooks")


def targets(account_webhook_url: str | None = None) -> list[str]:
    settings = runtime.current().settings
    urls = list(settings.webhook_urls)
    if account_webhook_url and account_webhook_url not in urls:
        urls.append(account_webhook_url)
    return urls


def endpoint_group(url: str) -> str:
    """The queue group of the webhooks to ``url``: a hash, since URLs may hold tokens and
    groups are listed in the dashboard."""
    return "endpoint:" + hashlib.sha256(url.encode()).hexdigest()[:24]


async def send_event(event: WebhookEvent, account_webhook_url: str | None = None) -> list[str]:
    """Queues ``event`` for every configured receiver; returns the webhook job ids."""
    urls = targets(account_webhook_url)
    if not urls:
        return []
    if not runtime.current().settings.webhook_secret:
        # An unsigned webhook cannot be trusted by its receiver, so none is sent.
        log.warning("webhook %s not sent: MINIQUE_WEBHOOK_SECRET is not set", event.type)
        return []
    body = encode_event(event).decode()
    queue = queues.get_queue(QueueName.WEBHOOKS)
    ids = []
    for url in urls:
        # Hashed: event ids may hold SKUs, and SKUs may hold characters job ids may not.
        digest = hashlib.sha256(f"{event.id}\n{url}".encode()).hexdigest()[:32]
        job = await queue.add(
            JOB_NAMES[QueueName.WEBHOOKS],
            {"url": url, "event_type": event.type, "event_id": event.id, "body": body},
            job_id=f"wh:{digest}",
            group=endpoint_group(url),
        )
        ids.append(job.id)
    return ids


async def notify_job_outcome(job: Job, outcome: str, detail: dict[str, Any]) -> None:
    """``job.completed`` / ``job.failed`` events, when MINIQUE_WEBHOOK_ON_JOBS is set.

    Sent from inside the processor, just before the worker records the outcome: a receiver
    may (rarely) hear of a completion whose recording then failed, never miss one.
    """
    if not runtime.current().settings.webhook_on_jobs:
        return
    data = {"queue": job.queue.name, "job_id": job.id, "job_name": job.name,
            "attempt": job.attempts_made + 1, **detail}
    # One event id per job attempt and outcome: queueing it twice sends it once.
    event = WebhookEvent(id=f"{job.queue.name}:{job.id}:{job.attempts_made}:{outcome}",
                         type=f"job.{outcome}", created_at=datetime.now(UTC), data=data)
    try:
        await send_event(event)
    except Exception as exc:  # a notification must never change the job's own outcome
        log.warning("job %s: %s webhook not queued (%s)", job.id, outcome, type(exc).__name__)
