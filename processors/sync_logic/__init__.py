"""Business logic of the Amazon seller jobs, as plain async functions (no queue imports).

``ctx`` is a ``SyncContext(client, storage, settings)``; ``progress`` is ``async def (pct: int)``.
"""

from processors.sync_logic.accounts import (
    AccountUnavailable,
    add_account,
    ads_connected,
    resolve_account,
    secret_env_name,
)
from processors.sync_logic.alerts import (
    DATA_INCOMPLETE,
    HIGH_ACOS,
    HIGH_ACOS_ACCOUNT,
    LOW_STOCK,
    SPEND_NO_SALES,
    Alert,
    check_alerts,
    incomplete_report_alerts,
)
from processors.sync_logic.context import Progress, SyncContext, SyncSettings, no_progress
from processors.sync_logic.daily_report import DailyReport, build_daily_report
from processors.sync_logic.sync import SYNC_KINDS, UnknownSyncKind, sync_account, validate_kinds
from processors.sync_logic.webhooks import (
    SIGNATURE_HEADER,
    WebhookDeliveryError,
    WebhookEvent,
    WebhookRejected,
    alert_event,
    deliver_webhook,
    encode_event,
    make_event,
    sign,
    verify_signature,
    webhook_url_problem,
)

__all__ = [
    "DATA_INCOMPLETE",
    "HIGH_ACOS",
    "HIGH_ACOS_ACCOUNT",
    "LOW_STOCK",
    "SIGNATURE_HEADER",
    "SPEND_NO_SALES",
    "SYNC_KINDS",
    "AccountUnavailable",
    "Alert",
    "DailyReport",
    "Progress",
    "SyncContext",
    "SyncSettings",
    "UnknownSyncKind",
    "WebhookDeliveryError",
    "WebhookEvent",
    "WebhookRejected",
    "add_account",
    "ads_connected",
    "alert_event",
    "build_daily_report",
    "check_alerts",
    "deliver_webhook",
    "encode_event",
    "incomplete_report_alerts",
    "make_event",
    "no_progress",
    "resolve_account",
    "secret_env_name",
    "sign",
    "sync_account",
    "validate_kinds",
    "verify_signature",
    "webhook_url_problem",
]
