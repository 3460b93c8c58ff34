"""Chaos tests run a short mode by default; ``--chaos-long`` (or MINIQUE_CHAOS_LONG=1) runs
the long mode with the figures published in benchmarks/RELIABILITY.md."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def long_mode(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--chaos-long") or os.environ.get("MINIQUE_CHAOS_LONG"))
