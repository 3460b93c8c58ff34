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
    storage.save_account(account)


def resolve_account(record: AccountRecord, env: Mapping[str, str] | None = None) -> AmazonAccount:
    """Env vars win over stored secrets, so they can be rotated without touching the database."""
    environ = os.environ if env is None else env
    secret = environ.get(secret_env_name(record.id, "LWA_CLIENT_SECRET")) or record.lwa_client_secret
    refresh = environ.get(secret_env_name(record.id, "REFRESH_TOKEN")) or record.refresh_token
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
        ads_profile_id=record.ads_profile_id,
    )
