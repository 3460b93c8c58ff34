"""Seller accounts: adding them, and turning a stored record into client credentials."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from processors.amazon.account import AmazonAccount
from processors.amazon.errors import AccountDisconnected
from processors.amazon.secret import Secret
from processors.storage.records import AccountRecord
from processors.storage.store import Storage


class AccountUnavailable(Exception):
    """The account was removed or disabled: no job can run for it until it is back."""


def secret_env_name(account_id: str, what: str) -> str:
    """E.g. ``AMAZON_ACCOUNT_ACME_US_REFRESH_TOKEN`` for account ``acme-us``."""
    return f"AMAZON_ACCOUNT_{re.sub(r'[^A-Z0-9]', '_', account_id.upper())}_{what}"


def add_account(storage: Storage, account: AccountRecord) -> None:
    """Store (or update) a seller account. Secrets may be left None and supplied by env vars."""
    if not account.marketplace_ids:
        raise ValueError("an account needs at least one marketplace id")
    if not 0 < account.acos_target < 10:
        raise ValueError("acos_target is a ratio, e.g. 0.30 for 30 %")
    for name in ("acos_window_days", "sales_window_days", "low_stock_days"):
        if not 1 <= getattr(account, name) <= 365:
            raise ValueError(f"{name} must be between 1 and 365 days, got {getattr(account, name)}")
    if account.no_sales_min_spend < 0:
        raise ValueError("no_sales_min_spend must not be negative")
    storage.save_account(account)


def resolve_account(record: AccountRecord, env: Mapping[str, str] | None = None) -> AmazonAccount:
    """The client's view of ``record``, with its secrets.

    Env vars win over stored secrets, so they can be rotated without touching the database.
    Raises ``AccountUnavailable`` for a disabled account, ``AccountDisconnected`` when the LWA
    client secret or the SP-API refresh token is nowhere to be found.
    """
    if not record.enabled:
        raise AccountUnavailable(f"account {record.id!r} is disabled")
    environ = os.environ if env is None else env
    secret = environ.get(secret_env_name(record.id, "LWA_CLIENT_SECRET")) or record.lwa_client_secret
    refresh = environ.get(secret_env_name(record.id, "REFRESH_TOKEN")) or record.refresh_token
    ads_refresh = environ.get(secret_env_name(record.id, "ADS_REFRESH_TOKEN")) or record.ads_refresh_token
    if not secret or not refresh:
        raise AccountDisconnected(
            record.id,
            "no LWA client secret or refresh token stored or set in "
            + secret_env_name(record.id, "LWA_CLIENT_SECRET|REFRESH_TOKEN"),
        )
    return AmazonAccount(
        id=record.id,
        region=record.region,
        marketplace_ids=record.marketplace_ids,
        seller_id=record.seller_id,
        lwa_client_id=record.lwa_client_id,
        lwa_client_secret=Secret(secret),
        refresh_token=Secret(refresh),
        ads_refresh_token=Secret(ads_refresh) if ads_refresh else None,
        ads_profile_id=record.ads_profile_id,
    )


def ads_connected(account: AmazonAccount) -> bool:
    """Whether the account has an Amazon Ads grant to sync with: its own Ads refresh token,
    or a pinned profile (then the SP-API grant is taken to carry the advertising scope)."""
    return bool(account.ads_refresh_token) or bool(account.ads_profile_id)
