"""Ratios that are undefined (None) rather than infinite when the denominator is zero."""

from __future__ import annotations

from decimal import Decimal


def ratio(numerator: Decimal, denominator: Decimal) -> float | None:
    if denominator <= 0:
        return None
    return float(numerator / denominator)
