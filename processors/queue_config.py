"""What both the queues and the registry need to know: names, default options, payload types.

A module of its own so that the arrows stay one-way: ``processors.queues`` (the producer
side) and ``processors.jobs`` (the registry) both import it, and neither imports the other.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from processors.payloads import (
    AlertsPayload,
    DataSyncPayload,
    ManualSyncPayload,
    ReportPayload,
    WebhookPayload,
)


class QueueName(StrEnum):
    DATA_SYNC = "data-sync"
    REPORTS = "reports"
    ALERTS = "alerts"
    MANUAL_SYNC = "manual-sync"
    # Webhook delivery is a job of its own, so a slow receiver never holds up a sync.
    WEBHOOKS = "webhooks"


# Job names: one per queue, the same as the queue's name (the seed's "manual-sync").
JOB_NAMES: dict[QueueName, str] = {name: name.value for name in QueueName}

# The payload each queue's one job accepts; ``Queue.add`` checks it before anything is queued.
PAYLOAD_TYPES: dict[QueueName, type[msgspec.Struct]] = {
    QueueName.DATA_SYNC: DataSyncPayload,
    QueueName.REPORTS: ReportPayload,
    QueueName.ALERTS: AlertsPayload,
    QueueName.MANUAL_SYNC: ManualSyncPayload,
    QueueName.WEBHOOKS: WebhookPayload,
}

# The seed's defaults: 3 attempts, exponential backoff from 2 s, failed jobs kept 7 days,
# completed jobs 24 h and at most the last 1000.
DEFAULT_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 3,
    "backoff": {"type": "exponential", "delay": 2.0},
    "remove_on_complete": {"age": 24 * 3600, "count": 1000},
    "remove_on_fail": {"age": 7 * 24 * 3600},
}

# A receiver that is down for a while should still get its events: more, longer retries.
# 16 attempts reach the 600 s cap and stay there: the retries span about 77 minutes
# (2 + 4 + ... + 512 s, then 6 x 600 s, jitter aside). With 8 they spanned 254 s, and the
# cap was never reached: a receiver down for 5 minutes lost its events.
WEBHOOK_ATTEMPTS = 16
WEBHOOK_JOB_OPTIONS: dict[str, Any] = {
    "attempts": WEBHOOK_ATTEMPTS,
    "backoff": {"type": "exponential", "delay": 2.0, "jitter": 0.2, "max_delay": 600.0},
}

# Webhooks are delivered in batches per receiver (their group is the receiver,
# processors/webhooks.py): up to 10 at once, after at most 0.2 s of gathering.
WEBHOOK_BATCH: dict[str, Any] = {"size": 10, "timeout": 0.2, "group": "same"}

# Per worker and queue: 5 jobs at once, and at most 10 jobs started per second.
WORKER_OPTIONS: dict[str, Any] = {
    "concurrency": 5,
    "limiter": {"max": 10, "duration": 1.0},
}


def manual_sync_options(account_id: str, sync_type: str) -> dict[str, Any]:
    """Job options of a manual sync: one per account and sync type at a time. A user who
    clicks "sync now" ten times gets the job already queued or running back (minique's
    dedup; the id is free again once that job completes or fails)."""
    return {"dedup": {"id": f"manual-sync:{account_id}:{sync_type}"}}


def job_options(queue: QueueName) -> dict[str, Any]:
    """The default job options of ``queue``."""
    return WEBHOOK_JOB_OPTIONS if queue is QueueName.WEBHOOKS else DEFAULT_JOB_OPTIONS


def daily_report_flow(account_id: str, firing_id: str) -> dict[str, Any]:
    """The day's flow that a report scheduler's firing starts (a ``FlowProducer`` tree): the
    account's report, as the parent of a fresh sync of that account. The report runs once the
    sync is done; a sync that fails for good does not stop it (``on_failure: ignore``): the
    report is built on the data at hand and, being incomplete, flagged and alerted like any
    report on incomplete data. The sync takes its account's group, like the hourly ones.
    The report's id comes from the firing's, so a retried firing
    finds its flow instead of adding a second one."""
    data = {"amazon_account_id": account_id}
    return {
        "name": JOB_NAMES[QueueName.REPORTS], "queue": QueueName.REPORTS.value, "data": data,
        "opts": {**DEFAULT_JOB_OPTIONS, "job_id": "daily:" + firing_id.split(":", 1)[-1]},
        "children": [{"name": JOB_NAMES[QueueName.DATA_SYNC], "queue": QueueName.DATA_SYNC.value,
                      "data": data, "opts": {**DEFAULT_JOB_OPTIONS, "on_failure": "ignore",
                                             # data-sync's account group (processors/queues.py)
                                             "group": account_id}}],
    }
