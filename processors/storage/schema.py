"""Tables for the synced seller data. Every table has a natural key so writes can upsert."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from processors.storage.types import Money, UtcDateTime

metadata = MetaData()

accounts = Table(
    "amazon_accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region", String(4), nullable=False),
    Column("marketplace_ids", JSON, nullable=False),
    Column("seller_id", String(64), nullable=False),
    Column("lwa_client_id", String(200), nullable=False),
    # Secrets may instead come from the environment (see processors.sync_logic.accounts).
    Column("lwa_client_secret", Text),
    Column("refresh_token", Text),
    Column("ads_profile_id", String(32)),
    Column("acos_target", Float, nullable=False),
    Column("low_stock_days", Integer, nullable=False),
    Column("webhook_url", Text),
    Column("created_at", UtcDateTime, nullable=False),
)

orders = Table(
    "amazon_orders",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("order_id", String(64), primary_key=True),
    Column("marketplace_id", String(32)),
    Column("created_time", UtcDateTime, nullable=False),
    Column("last_updated_time", UtcDateTime, nullable=False),
    Column("status", String(32), nullable=False),
    Column("fulfilled_by", String(16)),
    Column("currency", String(3)),
    Column("order_total", Money),
    Column("units", Integer, nullable=False),
    Index("ix_amazon_orders_created", "account_id", "created_time"),
)

order_items = Table(
    "amazon_order_items",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("order_item_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("sku", String(100)),
    Column("asin", String(20)),
    Column("title", Text),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Money),
    Column("item_total", Money),
    Column("proceeds", Money),
    Column("currency", String(3)),
    Index("ix_amazon_order_items_order", "account_id", "order_id"),
)

financial_transactions = Table(
    "amazon_financial_transactions",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("transaction_id", String(128), primary_key=True),
    Column("transaction_type", String(64), nullable=False),
    Column("status", String(32)),
    Column("posted_date", UtcDateTime, nullable=False),
    Column("order_id", String(64)),
    Column("marketplace_id", String(32)),
    Column("description", Text),
    Column("currency", String(3)),
    Column("total", Money, nullable=False),
    # Signed as Amazon reports them: sales positive, fees negative (credits positive).
    Column("sales", Money, nullable=False),
    Column("fees", Money, nullable=False),
    # Amount given back to buyers (positive), non-zero only for refunds.
    Column("refund", Money, nullable=False),
    Index("ix_amazon_transactions_posted", "account_id", "posted_date"),
)

inventory_snapshots = Table(
    "amazon_inventory_snapshots",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("snapshot_date", Date, primary_key=True),
    Column("sku", String(100), primary_key=True),
    Column("asin", String(20)),
    Column("fn_sku", String(20)),
    Column("product_name", Text),
    Column("fulfillable", Integer, nullable=False),
    Column("inbound", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("captured_at", UtcDateTime, nullable=False),
)

listings = Table(
    "amazon_listings",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("sku", String(100), primary_key=True),
    Column("marketplace_id", String(32), primary_key=True),
    Column("asin", String(20)),
    Column("item_name", Text),
    Column("status", String(100)),
    Column("price", Money),
    Column("currency", String(3)),
    Column("fulfillment_quantity", Integer),
    Column("last_updated", UtcDateTime),
)

ad_performance = Table(
    "amazon_ad_performance",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    Column("campaign_id", BigInteger, primary_key=True),
    Column("date", Date, primary_key=True),
    Column("campaign_name", Text),
    Column("campaign_status", String(32)),
    Column("impressions", Integer, nullable=False),
    Column("clicks", Integer, nullable=False),
    Column("cost", Money, nullable=False),
    Column("purchases7d", Integer, nullable=False),
    Column("sales7d", Money, nullable=False),
    Column("purchases14d", Integer, nullable=False),
    Column("sales14d", Money, nullable=False),
)

reports = Table(
    "amazon_daily_reports",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("currency", String(3)),
    Column("orders", Integer, nullable=False),
    Column("units", Integer, nullable=False),
    Column("revenue", Money, nullable=False),
    Column("fees", Money, nullable=False),
    Column("refunds", Money, nullable=False),
    Column("ad_spend", Money, nullable=False),
    Column("ad_sales7d", Money, nullable=False),
    Column("acos", Float),
    Column("tacos", Float),
    Column("net_proceeds", Money, nullable=False),
    Column("csv_path", Text),
    Column("html_path", Text),
    Column("generated_at", UtcDateTime, nullable=False),
)

alerts = Table(
    "amazon_alerts",
    metadata,
    # One row per condition and day is the deduplication rule.
    Column("account_id", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("subject", String(100), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Column("created_at", UtcDateTime, nullable=False),
)

sync_watermarks = Table(
    "amazon_sync_watermarks",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("stream", String(32), primary_key=True),
    # Data up to here is synced; the next run starts from it.
    Column("watermark", UtcDateTime),
    # A half-finished run's resume point (page token, report id), as JSON.
    Column("cursor", JSON),
    Column("updated_at", UtcDateTime, nullable=False),
)
