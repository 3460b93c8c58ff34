"""Storage on SQLite and PostgreSQL: upserts, exact money, accounts, watermarks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from processors.storage import AccountRecord, Storage, schema
from processors.sync_logic import add_account, resolve_account, secret_env_name


def order(order_id: str, total: str, status: str = "SHIPPED") -> dict[str, object]:
    moment = datetime(2026, 8, 1, 12, tzinfo=UTC)
    return {
        "account_id": "a",
        "order_id": order_id,
        "created_time": moment,
        "last_updated_time": moment,
        "status": status,
        "units": 1,
        "order_total": Decimal(total),
        "currency": "USD",
    }


def test_upsert_never_duplicates_and_updates(storage: Storage) -> None:
    storage.upsert(schema.orders, [order("1", "10.00"), order("2", "5.00")])
    storage.upsert(schema.orders, [order("1", "10.00"), order("2", "7.50", "CANCELLED")])
    rows = {r["order_id"]: r for r in storage.rows(schema.orders, "a")}
    assert len(rows) == 2
    assert rows["2"]["status"] == "CANCELLED"
    assert rows["2"]["order_total"] == Decimal("7.50")


def test_money_is_exact(storage: Storage) -> None:
    storage.upsert(schema.orders, [order(str(n), "0.10") for n in range(30)])
    totals = storage.rows(schema.orders, "a")
    assert sum(r["order_total"] for r in totals) == Decimal("3.00")
    assert totals[0]["created_time"].tzinfo is not None


def test_insert_if_absent_deduplicates(storage: Storage) -> None:
    row = {
        "account_id": "a",
        "kind": "low_stock",
        "subject": "SKU-1",
        "day": date(2026, 8, 1),
        "severity": "warning",
        "message": "m",
        "created_at": datetime.now(UTC),
    }
    assert storage.insert_if_absent(schema.alerts, row) is True
    assert storage.insert_if_absent(schema.alerts, row) is False
    assert storage.count(schema.alerts, "a") == 1


def test_large_batches_are_chunked(storage: Storage) -> None:
    storage.upsert(schema.orders, [order(str(n), "1.00") for n in range(1234)])
    assert storage.count(schema.orders, "a") == 1234


def test_account_roundtrip_and_env_secrets(storage: Storage) -> None:
    record = AccountRecord(
        id="acme-us",
        name="Acme",
        region="NA",
        marketplace_ids=("ATVPDKIKX0DER",),
        seller_id="A1",
        lwa_client_id="amzn1.application-oa2-client.x",
        ads_profile_id="42",
        acos_target=0.25,
        low_stock_days=10,
    )
    add_account(storage, record)
    add_account(storage, record)
    assert storage.list_accounts() == [record]
    assert "secret" not in repr(record)
    env = {
        secret_env_name("acme-us", "LWA_CLIENT_SECRET"): "s3cret",
        secret_env_name("acme-us", "REFRESH_TOKEN"): "Atzr|r",
    }
    account = resolve_account(storage.get_account("acme-us"), env)
    assert account.refresh_token.reveal() == "Atzr|r"
    assert "Atzr|r" not in repr(account) and "s3cret" not in repr(account)
    with pytest.raises(KeyError):
        storage.get_account("nope")


def test_sync_state_roundtrip(storage: Storage) -> None:
    assert storage.sync_state("a", "orders").watermark is None
    moment = datetime(2026, 8, 1, 12, 30, tzinfo=UTC)
    storage.save_sync_state("a", "orders", moment, {"token": "t"})
    state = storage.sync_state("a", "orders")
    assert state.watermark == moment and state.cursor == {"token": "t"}
    storage.save_sync_state("a", "orders", moment, None)
    assert storage.sync_state("a", "orders").cursor is None


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    store = Storage.from_url(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.dispose()
