"""Shapes shared by several APIs."""

from __future__ import annotations

from decimal import Decimal

import msgspec


class Money(msgspec.Struct, rename="camel", frozen=True):
    """Orders 2026 / Listings money: ``amount`` is a decimal string."""

    amount: Decimal
    currency_code: str


class Pagination(msgspec.Struct, rename="camel", frozen=True):
    next_token: str | None = None


class SpApiError(msgspec.Struct, frozen=True):
    code: str
    message: str = ""
    details: str | None = None


class SpApiErrorBody(msgspec.Struct, frozen=True):
    errors: list[SpApiError]


class AdsErrorBody(msgspec.Struct, frozen=True):
    code: str = ""
    details: str | None = None
    detail: str | None = None
