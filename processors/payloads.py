"""The payload of each job, as msgspec Structs.

The registry declares them (``payload=``), so ``Queue.add`` checks a payload before anything
is queued and the worker decodes it into the Struct. A job carries an account id only:
credentials are looked up by the worker, never travel through Redis.
"""

from __future__ import annotations

from typing import Literal

import msgspec

# The same kinds as processors.sync_logic.SYNC_KINDS (a test keeps the two in step); a
# Literal lets msgspec reject an unknown one with an error that names the field.
SyncType = Literal["orders", "fees", "ppc", "inventory", "listings", "refunds"]
ALL_SYNC_TYPES: tuple[SyncType, ...] = ("orders", "fees", "ppc", "inventory", "listings", "refunds")


class _Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Unknown fields are refused too: a misspelt field would otherwise be silently dropped."""


class DataSyncPayload(_Payload, frozen=True):
    amazon_account_id: str
    sync_types: list[SyncType] = msgspec.field(default_factory=lambda: list(ALL_SYNC_TYPES))
    # ISO date: a back-fill re-pulls orders, transactions and ads from this day on.
    since: str | None = None


class ManualSyncPayload(_Payload, frozen=True):
    amazon_account_id: str
    user_id: str
    sync_type: SyncType


class ReportPayload(_Payload, frozen=True):
    amazon_account_id: str
    # ISO date, a day of each marketplace (in its time zone); None: each one's yesterday.
    day: str | None = None
    # One marketplace of the account; None: every one.
    marketplace_id: str | None = None


class AlertsPayload(_Payload, frozen=True):
    amazon_account_id: str


class WebhookPayload(_Payload, frozen=True):
    url: str
    event_type: str
    event_id: str
    # The JSON body exactly as it will be signed and sent (the signature is made per attempt,
    # so its timestamp stays fresh across retries).
    body: str
