"""Amazon marketplaces: country, currency and the time zone a seller's day is counted in.

The time zone is the one Amazon Ads reports its dates in (a profile's ``timezone``, e.g.
``America/Los_Angeles`` for the US, Canada and Mexico); Seller Central shows a marketplace's
sales by the same day. When an Ads profile is known for a marketplace, its ``timezone`` wins
over this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Marketplace:
    id: str
    country: str
    currency: str
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_KNOWN = [
    Marketplace("ATVPDKIKX0DER", "US", "USD", "America/Los_Angeles"),
    Marketplace("A2EUQ1WTGCTBG2", "CA", "CAD", "America/Los_Angeles"),
    Marketplace("A1AM78C64UM0Y8", "MX", "MXN", "America/Los_Angeles"),
    Marketplace("A2Q3Y263D00KWC", "BR", "BRL", "America/Sao_Paulo"),
    Marketplace("A1F83G8C2ARO7P", "UK", "GBP", "Europe/London"),
    Marketplace("A1PA6795UKMFR9", "DE", "EUR", "Europe/Paris"),
    Marketplace("A13V1IB3VIYZZH", "FR", "EUR", "Europe/Paris"),
    Marketplace("APJ6JRA9NG5V4", "IT", "EUR", "Europe/Paris"),
    Marketplace("A1RKKUPIHCS9HS", "ES", "EUR", "Europe/Paris"),
    Marketplace("A1805IZSGTT6HS", "NL", "EUR", "Europe/Amsterdam"),
    Marketplace("A2NODRKZP88ZB9", "SE", "SEK", "Europe/Stockholm"),
    Marketplace("A1C3SOZRARQ6R3", "PL", "PLN", "Europe/Warsaw"),
    Marketplace("AMEN7PMS3EDWL", "BE", "EUR", "Europe/Brussels"),
    Marketplace("A33AVAJ2PDY3EV", "TR", "TRY", "Europe/Istanbul"),
    Marketplace("A2VIGQ35RCS4UG", "AE", "AED", "Asia/Dubai"),
    Marketplace("A17E79C6D8DWNP", "SA", "SAR", "Asia/Riyadh"),
    Marketplace("ARBP9OOSHTCHU", "EG", "EGP", "Africa/Cairo"),
    Marketplace("A21TJRUUN4KGV", "IN", "INR", "Asia/Kolkata"),
    Marketplace("A1VC38T7YXB528", "JP", "JPY", "Asia/Tokyo"),
    Marketplace("A39IBJ37TRP1C6", "AU", "AUD", "Australia/Sydney"),
    Marketplace("A19VAU5U5O7RUS", "SG", "SGD", "Asia/Singapore"),
]
MARKETPLACES: dict[str, Marketplace] = {m.id: m for m in _KNOWN}


def marketplace(marketplace_id: str) -> Marketplace:
    """The marketplace with this id; raises ValueError naming the known ones."""
    try:
        return MARKETPLACES[marketplace_id]
    except KeyError:
        known = ", ".join(f"{m.id} ({m.country})" for m in _KNOWN)
        raise ValueError(f"unknown marketplace id {marketplace_id!r}; known: {known}") from None
