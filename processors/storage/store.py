"""``Storage``: the synchronous data access used by the sync logic (via ``asyncio.to_thread``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, RowMapping, Table, and_, func, select
from sqlalchemy.schema import DropSchema

from processors.storage import schema
from processors.storage.engine import make_engine
from processors.storage.migrate import upgrade
from processors.storage.records import AccountRecord, DailyTotals, SyncState
from processors.storage.upsert import insert_if_absent, upsert

ZERO = Decimal("0.00")


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


class Storage:
    def __init__(self, engine: Engine, schema_name: str | None = None) -> None:
        self.engine = engine
        self.schema_name = schema_name

    @classmethod
    def from_url(cls, url: str, *, schema_name: str | None = None, create: bool = True) -> Storage:
        """``schema_name`` (PostgreSQL) keeps every table in its own schema, e.g. per test run."""
        storage = cls(make_engine(url, schema=schema_name), schema_name)
        if create:
            storage.create_all()
        return storage

    def create_all(self) -> None:
        """Creates or migrates the tables; safe when several processes start at once."""
        upgrade(self.engine, self.schema_name)

    def drop_schema(self) -> None:
        if self.schema_name is None:
            raise ValueError("drop_schema is for storages created with a schema_name")
        with self.engine.begin() as conn:
            conn.execute(DropSchema(self.schema_name, cascade=True, if_exists=True))

    def dispose(self) -> None:
        self.engine.dispose()

    # -- generic writes ------------------------------------------------------

    def upsert(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
        with self.engine.begin() as conn:
            return upsert(conn, table, rows)

    def insert_if_absent(self, table: Table, row: Mapping[str, Any]) -> bool:
        with self.engine.begin() as conn:
            return insert_if_absent(conn, table, row)

    def count(self, table: Table, account_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(table).where(table.c.account_id == account_id)
                ).scalar_one()
            )

    def rows(self, table: Table, account_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(select(table).where(table.c.account_id == account_id))
            return [dict(r._mapping) for r in result]

    # -- accounts ------------------------------------------------------------

    def save_account(self, account: AccountRecord, now: datetime | None = None) -> None:
        row = {
            "id": account.id,
            "name": account.name,
            "region": account.region,
            "marketplace_ids": list(account.marketplace_ids),
            "seller_id": account.seller_id,
            "lwa_client_id": account.lwa_client_id,
            "lwa_client_secret": account.lwa_client_secret,
            "refresh_token": account.refresh_token,
            "ads_profile_id": account.ads_profile_id,
            "acos_target": account.acos_target,
            "low_stock_days": account.low_stock_days,
            "webhook_url": account.webhook_url,
            "created_at": now or datetime.now(UTC),
        }
        self.upsert(schema.accounts, [row])

    def get_account(self, account_id: str) -> AccountRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.accounts).where(schema.accounts.c.id == account_id)).first()
        if row is None:
            raise KeyError(f"no Amazon account {account_id!r}")
        return _account(row._mapping)

    def list_accounts(self) -> list[AccountRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.accounts).order_by(schema.accounts.c.id)).all()
        return [_account(r._mapping) for r in rows]

    # -- sync watermarks -----------------------------------------------------

    def sync_state(self, account_id: str, stream: str) -> SyncState:
        t = schema.sync_watermarks
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.c.watermark, t.c.cursor).where(
                    and_(t.c.account_id == account_id, t.c.stream == stream)
                )
            ).first()
        if row is None:
            return SyncState(None, None)
        return SyncState(row.watermark, row.cursor)

    def save_sync_state(
        self,
        account_id: str,
        stream: str,
        watermark: datetime | None,
        cursor: dict[str, Any] | None,
    ) -> None:
        self.upsert(
            schema.sync_watermarks,
            [
                {
                    "account_id": account_id,
                    "stream": stream,
                    "watermark": watermark,
                    "cursor": cursor,
                    "updated_at": datetime.now(UTC),
                }
            ],
        )

    # -- reads for reports and alerts ----------------------------------------

    def daily_totals(self, account_id: str, first: date, last: date) -> list[DailyTotals]:
        """Per-day totals for ``first..last`` inclusive (UTC days), including empty days."""
        lo, hi = day_start(first), day_start(last + timedelta(days=1))
        orders_by_day: dict[date, set[str]] = defaultdict(set)
        units: dict[date, int] = defaultdict(int)
        revenue: dict[date, Decimal] = defaultdict(lambda: ZERO)
        fees: dict[date, Decimal] = defaultdict(lambda: ZERO)
        refunds: dict[date, Decimal] = defaultdict(lambda: ZERO)
        spend: dict[date, Decimal] = defaultdict(lambda: ZERO)
        ad_sales: dict[date, Decimal] = defaultdict(lambda: ZERO)
        o, i, tx, ad = (
            schema.orders,
            schema.order_items,
            schema.financial_transactions,
            schema.ad_performance,
        )
        with self.engine.connect() as conn:
            sold = conn.execute(
                select(o.c.order_id, o.c.created_time, i.c.quantity, i.c.item_total)
                .select_from(o.join(i, and_(o.c.account_id == i.c.account_id, o.c.order_id == i.c.order_id)))
                .where(o.c.account_id == account_id, o.c.created_time >= lo, o.c.created_time < hi)
                .where(o.c.status != "CANCELLED")
            )
            for order_id, created, quantity, item_total in sold:
                d = created.date()
                orders_by_day[d].add(order_id)
                units[d] += quantity
                revenue[d] += item_total or ZERO
            money = conn.execute(
                select(tx.c.posted_date, tx.c.fees, tx.c.refund).where(
                    tx.c.account_id == account_id, tx.c.posted_date >= lo, tx.c.posted_date < hi
                )
            )
            for posted, fee, refund in money:
                # Fees are stored signed (charges negative); reports show the cost as positive.
                fees[posted.date()] -= fee
                refunds[posted.date()] += refund
            ads = conn.execute(
                select(ad.c.date, func.sum(ad.c.cost), func.sum(ad.c.sales7d))
                .where(ad.c.account_id == account_id, ad.c.date >= first, ad.c.date <= last)
                .group_by(ad.c.date)
            )
            for d, cost, sales7d in ads:
                spend[d] += cost or ZERO
                ad_sales[d] += sales7d or ZERO
        result = []
        d = first
        while d <= last:
            result.append(
                DailyTotals(
                    d,
                    len(orders_by_day[d]),
                    units[d],
                    revenue[d],
                    fees[d],
                    refunds[d],
                    spend[d],
                    ad_sales[d],
                )
            )
            d += timedelta(days=1)
        return result

    def units_by_sku(self, account_id: str, since: datetime, until: datetime) -> dict[str, int]:
        o, i = schema.orders, schema.order_items
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(i.c.sku, func.sum(i.c.quantity))
                .select_from(o.join(i, and_(o.c.account_id == i.c.account_id, o.c.order_id == i.c.order_id)))
                .where(
                    o.c.account_id == account_id,
                    o.c.created_time >= since,
                    o.c.created_time < until,
                )
                .where(o.c.status != "CANCELLED")
                .group_by(i.c.sku)
            )
            return {sku: int(total) for sku, total in rows if sku is not None}

    def latest_inventory(self, account_id: str) -> list[dict[str, Any]]:
        inv = schema.inventory_snapshots
        with self.engine.connect() as conn:
            latest = conn.execute(
                select(func.max(inv.c.snapshot_date)).where(inv.c.account_id == account_id)
            ).scalar_one()
            if latest is None:
                return []
            rows = conn.execute(
                select(inv).where(inv.c.account_id == account_id, inv.c.snapshot_date == latest)
            )
            return [dict(r._mapping) for r in rows]

    def campaign_totals(self, account_id: str, first: date, last: date) -> list[dict[str, Any]]:
        ad = schema.ad_performance
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    ad.c.campaign_id,
                    func.max(ad.c.campaign_name).label("campaign_name"),
                    func.sum(ad.c.cost).label("cost"),
                    func.sum(ad.c.sales7d).label("sales7d"),
                    func.sum(ad.c.clicks).label("clicks"),
                )
                .where(ad.c.account_id == account_id, ad.c.date >= first, ad.c.date <= last)
                .group_by(ad.c.campaign_id)
                .order_by(ad.c.campaign_id)
            )
            return [dict(r._mapping) for r in rows]


def _account(row: RowMapping) -> AccountRecord:
    return AccountRecord(
        id=row["id"],
        name=row["name"],
        region=row["region"],
        marketplace_ids=tuple(row["marketplace_ids"]),
        seller_id=row["seller_id"],
        lwa_client_id=row["lwa_client_id"],
        lwa_client_secret=row["lwa_client_secret"],
        refresh_token=row["refresh_token"],
        ads_profile_id=row["ads_profile_id"],
        acos_target=float(row["acos_target"]),
        low_stock_days=int(row["low_stock_days"]),
        webhook_url=row["webhook_url"],
    )
