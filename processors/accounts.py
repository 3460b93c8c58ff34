"""Seller accounts: adding, listing, disabling, rotating and removing them (the Python side
of ``python -m processors accounts``).

    from processors.accounts import add_seller_account
    add_seller_account(storage, id="acme-us", name="Acme US", region="NA",
                       marketplace_ids=["ATVPDKIKX0DER"], seller_id="A1B2C3",
                       lwa_client_id="amzn1.application-oa2-client.x",
                       acos_target=0.30, low_stock_days=14)

Secrets (LWA client secret, SP-API refresh token, Amazon Ads refresh token) may be stored, or
left out and given to the workers as ``AMAZON_ACCOUNT_<ID>_LWA_CLIENT_SECRET``,
``..._REFRESH_TOKEN`` and ``..._ADS_REFRESH_TOKEN``. The Ads profiles are found with the Ads
API's ``listProfiles`` at the first sync; ``ads_profile_id`` pins one instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from processors.amazon import AccountDisconnected, AmazonEndpoints
from processors.amazon.marketplaces import marketplace
from processors.storage import AccountRecord, Storage
from processors.sync_logic import (
    AccountUnavailable,
    add_account,
    resolve_account,
    secret_env_name,
    webhook_url_problem,
)

SECRET_NAMES = ("LWA_CLIENT_SECRET", "REFRESH_TOKEN", "ADS_REFRESH_TOKEN")


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
    ads_refresh_token: str | None = None,
    ads_profile_id: str | None = None,
    acos_target: float = 0.30,
    low_stock_days: int = 14,
    acos_window_days: int = 7,
    sales_window_days: int = 14,
    no_sales_min_spend: Decimal | str = Decimal("10.00"),
    webhook_url: str | None = None,
) -> AccountRecord:
    """Stores (or updates) an account; raises ValueError on bad input (naming the field)."""
    AmazonEndpoints.for_region(region, env={})  # rejects an unknown region with the known ones
    if not id or any(c.isspace() or c in "{}:" for c in id):
        # The id goes into scheduler ids ("data-sync:<id>") and Redis keys.
        raise ValueError(f"account id must be non-empty, without spaces, braces or ':', got {id!r}")
    for marketplace_id in marketplace_ids:
        marketplace(marketplace_id)  # its currency and time zone must be known
    problem = webhook_url_problem(webhook_url) if webhook_url else None
    if problem is not None:
        # Refused here: stored, every alert webhook to it would fail.
        raise ValueError(f"webhook_url is {problem}")
    try:
        min_spend = Decimal(no_sales_min_spend)
    except InvalidOperation:
        raise ValueError(f"no_sales_min_spend must be an amount, got {no_sales_min_spend!r}") from None
    record = AccountRecord(
        id=id, name=name, region=region.upper(), marketplace_ids=tuple(marketplace_ids),
        seller_id=seller_id, lwa_client_id=lwa_client_id, lwa_client_secret=lwa_client_secret or None,
        refresh_token=refresh_token or None, ads_refresh_token=ads_refresh_token or None,
        ads_profile_id=ads_profile_id or None, acos_target=acos_target, low_stock_days=low_stock_days,
        acos_window_days=acos_window_days, sales_window_days=sales_window_days,
        no_sales_min_spend=min_spend, webhook_url=webhook_url or None,
    )
    add_account(storage, record)
    return record


def set_enabled(storage: Storage, account_id: str, enabled: bool) -> None:
    """Disables (or enables again) an account: a disabled one keeps its data, gets no
    schedules, and its jobs fail at once. KeyError when there is no such account."""
    storage.update_account(account_id, enabled=enabled)


def rotate_secrets(
    storage: Storage,
    account_id: str,
    *,
    lwa_client_secret: str | None = None,
    refresh_token: str | None = None,
    ads_refresh_token: str | None = None,
) -> list[str]:
    """Replaces the stored secrets given (the others stay); returns the names replaced.

    Workers pick the new ones up at their next job: cached access tokens are keyed by the
    refresh token they came from. KeyError when there is no such account; ValueError when
    nothing is given.
    """
    values = {k: v for k, v in (("lwa_client_secret", lwa_client_secret), ("refresh_token", refresh_token),
                                ("ads_refresh_token", ads_refresh_token)) if v}
    if not values:
        raise ValueError("give at least one of lwa_client_secret, refresh_token, ads_refresh_token")
    storage.update_account(account_id, **values)
    return sorted(values)


def remove_account(storage: Storage, account_id: str, *, purge: bool = False) -> None:
    """Removes the account (and, with ``purge``, every row synced or built for it)."""
    storage.delete_account(account_id, purge=purge)


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
    enabled: bool = True
    ads: str = "not connected"  # "own grant", "SP-API grant (pinned profile)" or "not connected"


def list_accounts(storage: Storage, env: Mapping[str, str] | None = None) -> list[AccountSummary]:
    out = []
    environ = os.environ if env is None else env
    for record in storage.list_accounts():
        ads = "not connected"
        try:
            account = resolve_account(dataclasses.replace(record, enabled=True), environ)
            from_env = any(environ.get(secret_env_name(record.id, what)) for what in SECRET_NAMES)
            source = "environment" if from_env else "stored"
            if account.ads_refresh_token:
                ads = "own grant"
            elif account.ads_profile_id:
                ads = "SP-API grant (pinned profile)"
        except (AccountDisconnected, AccountUnavailable):
            source = f"missing (set {secret_env_name(record.id, 'LWA_CLIENT_SECRET')} and _REFRESH_TOKEN)"
        out.append(AccountSummary(record.id, record.name, record.region, record.marketplace_ids,
                                  record.ads_profile_id, record.acos_target, record.low_stock_days,
                                  source, record.enabled, ads))
    return out
