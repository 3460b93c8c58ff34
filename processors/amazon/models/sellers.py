"""Sellers API getMarketplaceParticipations."""

from __future__ import annotations

import msgspec


class Marketplace(msgspec.Struct, rename="camel", frozen=True):
    id: str
    name: str
    country_code: str
    default_currency_code: str
    default_language_code: str
    domain_name: str


class Participation(msgspec.Struct, rename="camel", frozen=True):
    is_participating: bool
    has_suspended_listings: bool


class MarketplaceParticipation(msgspec.Struct, rename="camel", frozen=True):
    marketplace: Marketplace
    participation: Participation
    store_name: str | None = None


class MarketplaceParticipationsResponse(msgspec.Struct, frozen=True):
    payload: list[MarketplaceParticipation]
