"""Processors for tests/test_break14.py that must be importable by child processes."""

from __future__ import annotations

from typing import Any

from minique import UnrecoverableError


class BadStr(Exception):
    """An exception whose __str__ raises (a library's error class with a broken __str__)."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def raise_bad_str(job: Any) -> None:
    raise BadStr("boom")


class AccountClosed(UnrecoverableError):
    """A project's own "do not retry" error, carrying what it is about (a common shape: the
    constructor takes other arguments than the message)."""

    def __init__(self, account: str, status: int) -> None:
        super().__init__(f"account {account} is closed (HTTP {status})")
        self.account = account
        self.status = status


def raise_account_closed(job: Any) -> None:
    raise AccountClosed("acct-42", 403)
