"""Adding and listing seller accounts (the Python side of ``python -m processors accounts``).

    from processors.accounts import add_seller_account
    add_seller_account(storage, id="acme-us", name="Acme US", region="NA",
                       marketplace_ids=["ATVPDKIKX0DER"], seller_id="A1B2C3",
                       lwa_client_id="amzn1.application-oa2-client.x", ads_profile_id="123",
                       acos_target=0.30, low_stock_days=14)

Secrets (LWA client secret, refresh token) may be stored, or left out and given to the
workers as ``AMAZON_ACCOUNT_<ID>_LWA_CLIENT_SECRET`` / ``AMAZON_ACCOUNT_<ID>_REFRESH_TOKEN``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from processors.amazon import AccountDisconnected, AmazonEndpoints
from processors.storage import AccountRecord, Storage
from processors.sync_logic import add_account, resolve_account, secret_env_name


def add_seller_account(
    storage: Storage,
    *,
    id: str,
    name: str,
    region: str,
    marketplace_ids: Sequence[str],
    seller_id: str,
    lwa_client_id: str,
    lwa_client_secret: str | None = None,
    refresh_token: str | None = None,
    ads_profile_id: str | None = None,
    acos_target: float = 0.30,
    low_stock_days: int = 14,
    webhook_url: str | None = None,
) -> AccountRecord:
    """Stores (or updates) an account; raises ValueError on bad input."""
    AmazonEndpoints.for_region(region, env={})  # rejects an unknown region with the known ones
    if not id or any(c.isspace() or c in "{}:" for c in id):
        # The id goes into scheduler ids ("data-sync:<id>") and Redis keys.
        raise ValueError(f"account id must be non-empty, without spaces, braces or ':', got {id!r}")
    if low_stock_days < 1:
        raise ValueError("low_stock_days must be at least 1")
    record = AccountRecord(
        id=id, name=name, region=region.upper(), marketplace_ids=tuple(marketplace_ids),
        seller_id=seller_id, lwa_client_id=lwa_client_id, lwa_client_secret=lwa_client_secret or None,
        refresh_token=refresh_token or None, ads_profile_id=ads_profile_id or None,
        acos_target=acos_target, low_stock_days=low_stock_days, webhook_url=webhook_url or None,
    )
    add_account(storage, record)
    return record


@dataclass(frozen=True)
class AccountSummary:
    """What may be shown about an account: never a secret, only where it comes from."""

    id: str
    name: str
    region: str
    marketplace_ids: tuple[str, ...]
    ads_profile_id: str | None
    acos_target: float
    low_stock_days: int
    credentials: str  # "stored", "environment" or "missing (set AMAZON_ACCOUNT_..._*)"


def list_accounts(storage: Storage, env: Mapping[str, str] | None = None) -> list[AccountSummary]:
    out = []
    for record in storage.list_accounts():
        environ = os.environ if env is None else env
        try:
            resolve_account(record, environ)
            from_env = any(environ.get(secret_env_name(record.id, what))
                           for what in ("LWA_CLIENT_SECRET", "REFRESH_TOKEN"))
            source = "environment" if from_env else "stored"
        except AccountDisconnected:
            source = f"missing (set {secret_env_name(record.id, 'LWA_CLIENT_SECRET')} and _REFRESH_TOKEN)"
        out.append(AccountSummary(record.id, record.name, record.region, record.marketplace_ids,
                                  record.ads_profile_id, record.acos_target, record.low_stock_days,
                                  source))
    return out
