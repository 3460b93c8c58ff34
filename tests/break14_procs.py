"""Processors for tests/test_break14.py that must be importable by child processes."""

from __future__ import annotations

from typing import Any


class BadStr(Exception):
    """An exception whose __str__ raises (a library's error class with a broken __str__)."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def raise_bad_str(job: Any) -> None:
    raise BadStr("boom")
