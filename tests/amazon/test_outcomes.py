"""The Amazon client knows nothing of queues; the processors map its errors to job outcomes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from minique import Delayed, GroupRateLimited, UnrecoverableError
from processors.amazon import (
    AccountDisconnected,
    AmazonClientError,
    AmazonDecodeError,
    AmazonRateLimited,
    AmazonReportNotReady,
    AmazonServerError,
)
from processors.outcomes import queue_outcome
from processors.sync_logic import AccountUnavailable, WebhookRejected

ROOT = Path(__file__).resolve().parents[2] / "processors"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", ["amazon", "sync_logic", "storage"])
def test_client_logic_and_storage_never_import_the_queue(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path) if m.split(".")[0] == "minique")
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_queues_and_registry_do_not_import_each_other() -> None:
    assert "processors.jobs" not in _imports(ROOT / "queues.py")
    assert "processors.queues" not in _imports(ROOT / "jobs.py")


def test_errors_map_to_queue_outcomes() -> None:
    throttled = queue_outcome(AmazonRateLimited(12.5, operation="searchOrders", account_id="a"))
    # The account's group sleeps (a job without a group waits alone, as with Delayed).
    assert isinstance(throttled, GroupRateLimited) and throttled.delay == 12.5
    assert "searchOrders throttled for account a" in str(throttled)
    waiting = queue_outcome(AmazonReportNotReady("r1", "PENDING", poll_after=30))
    assert isinstance(waiting, Delayed) and waiting.delay == 30
    for final in (AccountDisconnected("a", "invalid_grant"),
                  AmazonClientError("getReport", 400, "InvalidInput", "bad"),
                  AccountUnavailable("account a is disabled"),
                  WebhookRejected("rejected with 401")):
        mapped = queue_outcome(final)
        assert isinstance(mapped, UnrecoverableError) and str(final) in str(mapped)
    # Transient and unexpected errors stay themselves: the queue retries them with backoff.
    assert queue_outcome(AmazonServerError("listTransactions", 503)) is None
    assert queue_outcome(AmazonDecodeError("searchOrders", 200, "bad")) is None
    assert queue_outcome(ValueError("x")) is None
