"""Finances API 2024-06-19 listTransactions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec


class Currency(msgspec.Struct, rename="camel", frozen=True):
    """Finances money: ``currencyAmount`` is a JSON number."""

    currency_code: str
    currency_amount: Decimal


class Breakdown(msgspec.Struct, rename="camel", frozen=True):
    breakdown_type: str
    breakdown_amount: Currency
    breakdowns: list[Breakdown] = []


class RelatedIdentifier(msgspec.Struct, rename="camel", frozen=True):
    related_identifier_name: str
    related_identifier_value: str


class MarketplaceDetails(msgspec.Struct, rename="camel", frozen=True):
    marketplace_id: str | None = None
    marketplace_name: str | None = None


class SellingPartnerMetadata(msgspec.Struct, rename="camel", frozen=True):
    selling_partner_id: str | None = None
    account_type: str | None = None
    marketplace_id: str | None = None


class Transaction(msgspec.Struct, rename="camel", frozen=True):
    """One posted transaction. ``transactionType`` includes ``Shipment``, ``Refund``,
    ``ServiceFee`` (account-level charges) and ``ProductAdsPayment`` (ad billing)."""

    transaction_type: str
    posted_date: datetime
    total_amount: Currency
    transaction_id: str | None = None
    transaction_status: str | None = None
    description: str | None = None
    marketplace_details: MarketplaceDetails | None = None
    selling_partner_metadata: SellingPartnerMetadata | None = None
    related_identifiers: list[RelatedIdentifier] = []
    breakdowns: list[Breakdown] = []

    def related(self, name: str) -> str | None:
        for ident in self.related_identifiers:
            if ident.related_identifier_name == name:
                return ident.related_identifier_value
        return None

    def breakdown_total(self, breakdown_type: str) -> Decimal:
        """The sum of the top-level breakdowns of this type (e.g. "Sales", "Expenses")."""
        return sum(
            (
                b.breakdown_amount.currency_amount
                for b in self.breakdowns
                if b.breakdown_type == breakdown_type
            ),
            Decimal(0),
        )

    def nested_total(self, parent: str, child: str) -> Decimal:
        """The sum of ``child`` breakdowns anywhere below top-level ``parent`` ones, e.g.
        ``("Expenses", "Advertising")`` (a child is not searched below itself)."""
        return sum((_find(b.breakdowns, child) for b in self.breakdowns if b.breakdown_type == parent),
                   Decimal(0))

    @property
    def marketplace_id(self) -> str | None:
        if self.marketplace_details and self.marketplace_details.marketplace_id:
            return self.marketplace_details.marketplace_id
        return self.selling_partner_metadata.marketplace_id if self.selling_partner_metadata else None


def _find(breakdowns: list[Breakdown], kind: str) -> Decimal:
    total = Decimal(0)
    for b in breakdowns:
        total += b.breakdown_amount.currency_amount if b.breakdown_type == kind else _find(b.breakdowns, kind)
    return total


class TransactionsPayload(msgspec.Struct, rename="camel", frozen=True):
    transactions: list[Transaction]
    next_token: str | None = None


class ListTransactionsResponse(msgspec.Struct, frozen=True):
    payload: TransactionsPayload
