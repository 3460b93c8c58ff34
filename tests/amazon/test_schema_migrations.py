"""Schema creation and migration: safe from several processes at once, and adopting a
database made before migrations existed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from processors.storage import AccountRecord, Storage, schema
from processors.storage.migrate import current, head, upgrade
from processors.storage.schema import metadata

from .conftest import postgres_url

# Every process imports everything, says it is ready, and waits for the go file; then all
# open the storage at once: the race of "two `accounts add` at once", or "`accounts add`
# while a worker starts".
OPEN_AT_ONCE = """
import pathlib, sys, time
from processors.storage import Storage
gate = pathlib.Path(sys.argv[2])
(gate.parent / (gate.name + "." + sys.argv[3])).touch()
while not gate.exists():
    time.sleep(0.001)
Storage.from_url(sys.argv[1], schema_name=sys.argv[4] or None).dispose()
"""


def _race(url: str, gate: Path, schema: str | None = None,
          processes: int = 3) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(gate), str(n), schema or ""],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(processes)]
    ready = [gate.parent / f"{gate.name}.{n}" for n in range(processes)]
    deadline = time.monotonic() + 60
    while not all(p.exists() for p in ready):
        assert time.monotonic() < deadline, "the processes never got ready"
        assert all(proc.poll() is None for proc in procs), [proc.communicate() for proc in procs]
        time.sleep(0.01)
    gate.touch()
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_two_processes_create_a_fresh_sqlite_database_at_once(tmp_path: Path) -> None:
    for attempt in range(2):
        url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        for result in _race(url, tmp_path / f"go{attempt}"):
            assert result.returncode == 0, result.stderr
        storage = Storage.from_url(url, create=False)
        try:
            assert current(storage.engine) == head()
            assert set(metadata.tables) <= set(inspect(storage.engine).get_table_names())
        finally:
            storage.dispose()


def test_two_processes_create_a_fresh_postgres_schema_at_once(tmp_path: Path) -> None:
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    schema = f"race_{uuid.uuid4().hex[:10]}"
    results = _race(url, tmp_path / "go", schema)
    storage = Storage.from_url(url, schema_name=schema, create=False)
    try:
        for result in results:
            assert result.returncode == 0, result.stderr
        assert current(storage.engine) == head()
    finally:
        storage.drop_schema()
        storage.dispose()


def test_a_database_from_before_migrations_is_adopted_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Storage.from_url(url, create=False)
    try:
        # The baseline's tables, as `metadata.create_all` made them, with no version table.
        upgrade_to_baseline_without_version(old)
        with old.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO amazon_accounts (id, name, region, marketplace_ids, seller_id, lwa_client_id,"
                " acos_target, low_stock_days, created_at) VALUES ('old', 'Old', 'NA', '[\"M\"]', 'S', 'c',"
                " 0.3, 14, '2026-01-01 00:00:00')"))
    finally:
        old.dispose()
    storage = Storage.from_url(url)
    try:
        assert current(storage.engine) == head()
        record = storage.get_account("old")
        assert (record.name, record.marketplace_ids) == ("Old", ("M",))
        storage.save_account(AccountRecord(id="new", name="New", region="NA", marketplace_ids=("M",),
                                           seller_id="S", lwa_client_id="c"))
        assert [r.id for r in storage.list_accounts()] == ["new", "old"]
    finally:
        storage.dispose()


def upgrade_to_baseline_without_version(storage: Storage) -> None:
    from alembic import command

    from processors.storage.migrate import _config

    with storage.engine.begin() as conn:
        command.upgrade(_config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))


def test_upgrade_is_a_no_op_at_head(tmp_path: Path) -> None:
    storage = Storage.from_url(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        upgrade(storage.engine)
        assert current(storage.engine) == head()
    finally:
        storage.dispose()


def test_migration_0002_moves_the_old_rows_to_the_new_shapes(tmp_path: Path) -> None:
    """Service fees and ad billing leave ``fees``; SP campaign rows and old reports are copied."""
    from alembic import command

    from processors.storage.migrate import _config

    url = f"sqlite:///{tmp_path / 'v1.db'}"
    old = Storage.from_url(url, create=False)
    try:
        with old.engine.begin() as conn:
            command.upgrade(_config(conn), "0001")
            conn.execute(text(
                "INSERT INTO amazon_accounts (id, name, region, marketplace_ids, seller_id,"
                " lwa_client_id, acos_target, low_stock_days, created_at) VALUES ('a', 'A', 'NA',"
                " '[\"ATVPDKIKX0DER\"]', 'S', 'c', 0.3, 14, '2026-01-01 00:00:00')"))
            for tx_id, kind, fees in (("T1", "Shipment", -1624), ("T2", "ServiceFee", -3999),
                                      ("T3", "ProductAdsPayment", -35673)):
                conn.execute(text(
                    "INSERT INTO amazon_financial_transactions (account_id, transaction_id, transaction_type,"
                    " posted_date, currency, total, sales, fees, refund) VALUES ('a', :id, :kind,"
                    " '2026-01-02 12:00:00', 'USD', 0, 0, :fees, 0)"),
                    {"id": tx_id, "kind": kind, "fees": fees})
            conn.execute(text(
                "INSERT INTO amazon_ad_performance (account_id, profile_id, campaign_id, date, impressions,"
                " clicks, cost, purchases7d, sales7d, purchases14d, sales14d) VALUES ('a', 'p', 7,"
                " '2026-01-02', 100, 4, 500, 1, 2000, 1, 2100)"))
            conn.execute(text(
                "INSERT INTO amazon_daily_reports (account_id, day, currency, orders, units, revenue, fees,"
                " refunds, ad_spend, ad_sales7d, net_proceeds, generated_at) VALUES ('a', '2026-01-02',"
                " 'USD', 1, 2, 10000, 1624, 0, 500, 2000, 7876, '2026-01-03 02:00:00')"))
    finally:
        old.dispose()
    storage = Storage.from_url(url)
    try:
        txs = {r["transaction_id"]: r for r in storage.rows(schema.financial_transactions, "a")}
        assert (txs["T1"]["fees"], txs["T1"]["service_fees"], txs["T1"]["ad_billing"]) == (
            Decimal("-16.24"), Decimal("0.00"), Decimal("0.00"))
        assert (txs["T2"]["fees"], txs["T2"]["service_fees"]) == (Decimal("0.00"), Decimal("-39.99"))
        assert (txs["T3"]["fees"], txs["T3"]["ad_billing"]) == (Decimal("0.00"), Decimal("-356.73"))
        [ad] = storage.rows(schema.ad_performance, "a")
        assert (ad["ad_product"], ad["cost"], ad["attributed_sales"], ad["attribution_days"]) == (
            "SPONSORED_PRODUCTS", Decimal("5.00"), Decimal("20.00"), 7)
        [report] = storage.rows(schema.reports, "a")
        assert (report["marketplace_id"], report["revenue"], report["complete"], report["missing"]) == (
            "ATVPDKIKX0DER", Decimal("100.00"), False, ["rebuild"])
        record = storage.get_account("a")
        assert (record.enabled, record.acos_window_days, record.no_sales_min_spend) == (
            True, 7, Decimal("10.00"))
    finally:
        storage.dispose()
