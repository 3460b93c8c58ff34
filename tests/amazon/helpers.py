"""Plain helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from processors.amazon import AmazonAccount, AmazonClient, AmazonEndpoints, ClientSettings, Secret
from processors.fake_amazon import FakeAmazon, FakeSeller
from processors.storage import AccountRecord, Storage
from processors.sync_logic import SyncContext, SyncSettings, add_account

POSTGRES_URL = "postgresql://{user}@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll a condition until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met before the deadline")
        time.sleep(interval)


def account_for(seller: FakeSeller) -> AmazonAccount:
    return AmazonAccount(
        id=f"acct-{seller.index}",
        region="NA",
        marketplace_ids=seller.marketplace_ids,
        seller_id=seller.seller_id,
        lwa_client_id=seller.client_id,
        lwa_client_secret=Secret(seller.client_secret),
        refresh_token=Secret(seller.refresh_token),
        ads_refresh_token=Secret(seller.ads_refresh_token),
    )


def record_for(seller: FakeSeller) -> AccountRecord:
    return AccountRecord(
        id=f"acct-{seller.index}",
        name=seller.name,
        region="NA",
        marketplace_ids=seller.marketplace_ids,
        seller_id=seller.seller_id,
        lwa_client_id=seller.client_id,
        lwa_client_secret=seller.client_secret,
        refresh_token=seller.refresh_token,
        ads_refresh_token=seller.ads_refresh_token,
        acos_target=0.30,
        low_stock_days=14,
    )


def settings_for(url: str, **overrides: object) -> ClientSettings:
    return ClientSettings(
        endpoints=AmazonEndpoints.single_host(url),
        timeout=httpx.Timeout(5.0, connect=2.0),
        **overrides,  # type: ignore[arg-type]
    )


def make_ctx(client: AmazonClient, storage: Storage, fake: FakeAmazon, tmp_path: Path) -> SyncContext:
    for seller in fake.sellers:
        add_account(storage, record_for(seller))
    settings = SyncSettings(
        report_dir=tmp_path / "reports",
        ads_poll_interval=0.01,
        ads_poll_timeout=30.0,
        env={},
        clock=fake.clock.now,
    )
    return SyncContext(client=client, storage=storage, settings=settings)
