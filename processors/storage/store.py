"""``Storage``: the synchronous data access used by the sync logic (via ``asyncio.to_thread``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, RowMapping, Table, and_, delete, func, or_, select, update
from sqlalchemy.schema import DropSchema

from processors.storage import schema
from processors.storage.engine import make_engine
from processors.storage.migrate import upgrade
from processors.storage.records import AccountRecord, AdsProfileRecord, DailyTotals, SyncState
from processors.storage.upsert import insert_if_absent, upsert

ZERO = Decimal("0.00")
# The orders units and revenue count: paid for and not cancelled (Amazon's fulfillment
# statuses). PENDING orders carry no price yet, UNFULFILLABLE ones will never ship.
SOLD_STATUSES = ("SHIPPED", "PARTIALLY_SHIPPED", "UNSHIPPED")


def day_start(day: date, zone: tzinfo = UTC) -> datetime:
    """The instant ``day`` begins in ``zone``, as an aware UTC datetime."""
    return datetime.combine(day, time(0), zone).astimezone(UTC)


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
            "ads_refresh_token": account.ads_refresh_token,
            "enabled": account.enabled,
            "acos_window_days": account.acos_window_days,
            "sales_window_days": account.sales_window_days,
            "no_sales_min_spend": account.no_sales_min_spend,
        }
        self.upsert(schema.accounts, [row])

    def update_account(self, account_id: str, **values: Any) -> None:
        """Sets columns of one account (e.g. ``enabled=False``); KeyError when there is none."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(schema.accounts).where(schema.accounts.c.id == account_id).values(**values)
            )
            if done.rowcount == 0:
                raise KeyError(f"no Amazon account {account_id!r}")

    def delete_account(self, account_id: str, *, purge: bool = False) -> None:
        """Removes the account (KeyError when there is none); ``purge`` also deletes every row
        synced or built for it."""
        with self.engine.begin() as conn:
            done = conn.execute(delete(schema.accounts).where(schema.accounts.c.id == account_id))
            if done.rowcount == 0:
                raise KeyError(f"no Amazon account {account_id!r}")
            tables = [t for t in schema.metadata.sorted_tables if "account_id" in t.c]
            if not purge:
                tables = [schema.ads_profiles, schema.sync_watermarks]
            for table in tables:
                conn.execute(delete(table).where(table.c.account_id == account_id))

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

    # -- Ads profiles --------------------------------------------------------

    def save_ads_profiles(self, account_id: str, profiles: Sequence[AdsProfileRecord]) -> None:
        """Replaces the account's profiles with ``profiles``."""
        t = schema.ads_profiles
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.account_id == account_id))
            if profiles:
                conn.execute(t.insert(), [{
                    "account_id": account_id, "profile_id": p.profile_id, "marketplace_id": p.marketplace_id,
                    "country_code": p.country_code, "currency": p.currency, "timezone": p.timezone,
                    "discovered_at": now} for p in profiles])

    def ads_profiles(self, account_id: str) -> list[AdsProfileRecord]:
        t = schema.ads_profiles
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.account_id == account_id).order_by(t.c.profile_id))
            return [AdsProfileRecord(r.account_id, r.profile_id, r.marketplace_id, r.country_code,
                                     r.currency, r.timezone) for r in rows]

    # -- sync watermarks -----------------------------------------------------

    def sync_states(self, account_id: str) -> dict[str, SyncState]:
        """Every stream's state for the account."""
        t = schema.sync_watermarks
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.stream, t.c.watermark, t.c.cursor).where(t.c.account_id == account_id)
            )
            return {r.stream: SyncState(r.watermark, r.cursor) for r in rows}

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

    def daily_totals(
        self,
        account_id: str,
        marketplace_id: str,
        currency: str,
        first: date,
        last: date,
        *,
        zone: tzinfo = UTC,
        profile_ids: Sequence[str] = (),
        unattributed: bool = False,
    ) -> list[DailyTotals]:
        """One marketplace's totals for its days ``first..last`` inclusive, empty days included.

        Days are ``zone``'s (the marketplace's). Only amounts in ``currency`` are added: two
        currencies are never summed. An order item priced in another currency (rare: Amazon
        prices a marketplace's items in its currency) counts in none of orders, units and
        revenue; an order counts if any of its items does. Ad figures come from the Ads
        profiles ``profile_ids``.
        ``unattributed``: also count transactions that name no marketplace (the account's
        home marketplace takes them).
        """
        lo, hi = day_start(first, zone), day_start(last + timedelta(days=1), zone)
        orders_by_day: dict[date, set[str]] = defaultdict(set)
        units: dict[date, int] = defaultdict(int)
        revenue: dict[date, Decimal] = defaultdict(lambda: ZERO)
        fees: dict[date, Decimal] = defaultdict(lambda: ZERO)
        service: dict[date, Decimal] = defaultdict(lambda: ZERO)
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
                select(o.c.order_id, o.c.created_time, i.c.quantity, i.c.item_total, i.c.currency)
                .select_from(o.join(i, and_(o.c.account_id == i.c.account_id, o.c.order_id == i.c.order_id)))
                .where(o.c.account_id == account_id, o.c.marketplace_id == marketplace_id)
                .where(o.c.created_time >= lo, o.c.created_time < hi, o.c.status.in_(SOLD_STATUSES))
            )
            for order_id, created, quantity, item_total, item_currency in sold:
                if item_currency != currency:
                    # Left out of orders, units and revenue alike (its revenue cannot be
                    # added; counting its units alone made the figures disagree).
                    continue
                d = created.astimezone(zone).date()
                orders_by_day[d].add(order_id)
                units[d] += quantity
                revenue[d] += item_total or ZERO
            where_marketplace = tx.c.marketplace_id == marketplace_id
            if unattributed:
                where_marketplace = or_(where_marketplace, tx.c.marketplace_id.is_(None))
            money = conn.execute(
                select(tx.c.posted_date, tx.c.fees, tx.c.service_fees, tx.c.refund).where(
                    tx.c.account_id == account_id, where_marketplace, tx.c.currency == currency,
                    tx.c.posted_date >= lo, tx.c.posted_date < hi,
                )
            )
            for posted, fee, service_fee, refund in money:
                d = posted.astimezone(zone).date()
                # Charges are stored signed (negative); reports show costs as positive.
                fees[d] -= fee
                service[d] -= service_fee
                refunds[d] += refund
            if profile_ids:
                ads = conn.execute(
                    select(ad.c.date, func.sum(ad.c.cost), func.sum(ad.c.attributed_sales))
                    .where(ad.c.account_id == account_id, ad.c.profile_id.in_(list(profile_ids)))
                    .where(ad.c.date >= first, ad.c.date <= last)
                    .group_by(ad.c.date)
                )
                for d, cost, sales in ads:
                    spend[d] += cost or ZERO
                    ad_sales[d] += sales or ZERO
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
                    service[d],
                    refunds[d],
                    spend[d],
                    ad_sales[d],
                )
            )
            d += timedelta(days=1)
        return result

    def units_by_sku(self, account_id: str, since: datetime, until: datetime) -> dict[str, int]:
        """Units sold per SKU (the orders ``SOLD_STATUSES`` count), every marketplace."""
        o, i = schema.orders, schema.order_items
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(i.c.sku, func.sum(i.c.quantity))
                .select_from(o.join(i, and_(o.c.account_id == i.c.account_id, o.c.order_id == i.c.order_id)))
                .where(
                    o.c.account_id == account_id,
                    o.c.created_time >= since,
                    o.c.created_time < until,
                    o.c.status.in_(SOLD_STATUSES),
                )
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

    def campaign_totals(
        self, account_id: str, profile_ids: Sequence[str], first: date, last: date
    ) -> list[dict[str, Any]]:
        """Per campaign of the profiles over ``first..last``: ``ad_product``, ``campaign_id``,
        ``campaign_name``, ``cost``, ``attributed_sales``, ``clicks``."""
        ad = schema.ad_performance
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    ad.c.ad_product,
                    ad.c.campaign_id,
                    func.max(ad.c.campaign_name).label("campaign_name"),
                    func.sum(ad.c.cost).label("cost"),
                    func.sum(ad.c.attributed_sales).label("attributed_sales"),
                    func.sum(ad.c.clicks).label("clicks"),
                )
                .where(ad.c.account_id == account_id, ad.c.profile_id.in_(list(profile_ids)))
                .where(ad.c.date >= first, ad.c.date <= last)
                .group_by(ad.c.ad_product, ad.c.campaign_id)
                .order_by(ad.c.ad_product, ad.c.campaign_id)
            )
            return [dict(r._mapping) for r in rows]

    def sku_ad_totals(self, account_id: str, profile_ids: Sequence[str], first: date,
                      last: date) -> list[dict[str, Any]]:
        """Sponsored Products per advertised SKU over ``first..last``: ``sku``, ``asin``,
        ``cost``, ``sales7d``, ``clicks``, by cost, highest first."""
        p = schema.ad_products
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    p.c.sku,
                    func.max(p.c.asin).label("asin"),
                    func.sum(p.c.cost).label("cost"),
                    func.sum(p.c.sales7d).label("sales7d"),
                    func.sum(p.c.clicks).label("clicks"),
                )
                .where(p.c.account_id == account_id, p.c.profile_id.in_(list(profile_ids)))
                .where(p.c.date >= first, p.c.date <= last)
                .group_by(p.c.sku)
                .order_by(func.sum(p.c.cost).desc(), p.c.sku)
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
        ads_refresh_token=row["ads_refresh_token"],
        enabled=bool(row["enabled"]),
        acos_window_days=int(row["acos_window_days"]),
        sales_window_days=int(row["sales_window_days"]),
        no_sales_min_spend=row["no_sales_min_spend"],
    )
