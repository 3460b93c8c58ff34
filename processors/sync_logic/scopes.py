"""What a report or an alert covers: one marketplace of an account, in its currency and zone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from processors.amazon.marketplaces import MARKETPLACES
from processors.storage.records import AccountRecord, AdsProfileRecord
from processors.sync_logic.accounts import secret_env_name


@dataclass(frozen=True)
class MarketplaceScope:
    """``zone``: the marketplace's time zone (its Ads profile's when one is known), the one
    every daily figure is counted in. ``profile_ids``: the Ads profiles whose spend counts
    here (those in the marketplace's currency). ``home``: the account's first marketplace,
    which takes transactions that name no marketplace."""

    marketplace_id: str
    country: str
    currency: str
    zone: ZoneInfo
    profile_ids: tuple[str, ...]
    home: bool

    def today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()


def marketplace_scopes(record: AccountRecord, profiles: list[AdsProfileRecord]) -> list[MarketplaceScope]:
    scopes = []
    for n, marketplace_id in enumerate(record.marketplace_ids):
        known = MARKETPLACES.get(marketplace_id)
        mine = [p for p in profiles if p.marketplace_id == marketplace_id]
        currency = known.currency if known else (mine[0].currency if mine else "USD")
        timezone = mine[0].timezone if mine else (known.timezone if known else "UTC")
        scopes.append(MarketplaceScope(
            marketplace_id=marketplace_id,
            country=known.country if known else marketplace_id,
            currency=currency,
            zone=ZoneInfo(timezone),
            profile_ids=tuple(p.profile_id for p in mine if p.currency == currency),
            home=n == 0,
        ))
    return scopes


def ads_configured(record: AccountRecord, env: Mapping[str, str]) -> bool:
    """Whether the account is meant to have Ads data (an Ads grant, or a pinned profile)."""
    return bool(record.ads_refresh_token or env.get(secret_env_name(record.id, "ADS_REFRESH_TOKEN"))
                or record.ads_profile_id)
