"""The schema as it was before migrations existed (tables made by ``metadata.create_all``).

Money columns are integer cents (``processors.storage.types.Money``); date-times are naive
UTC (``UtcDateTime``).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "amazon_accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region", sa.String(4), nullable=False),
        sa.Column("marketplace_ids", sa.JSON, nullable=False),
        sa.Column("seller_id", sa.String(64), nullable=False),
        sa.Column("lwa_client_id", sa.String(200), nullable=False),
        # Secrets may instead come from the environment (see processors.sync_logic.accounts).
        sa.Column("lwa_client_secret", sa.Text),
        sa.Column("refresh_token", sa.Text),
        sa.Column("ads_profile_id", sa.String(32)),
        sa.Column("acos_target", sa.Float, nullable=False),
        sa.Column("low_stock_days", sa.Integer, nullable=False),
        sa.Column("webhook_url", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "amazon_orders",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("marketplace_id", sa.String(32)),
        sa.Column("created_time", sa.DateTime, nullable=False),
        sa.Column("last_updated_time", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("fulfilled_by", sa.String(16)),
        sa.Column("currency", sa.String(3)),
        sa.Column("order_total", sa.BigInteger),
        sa.Column("units", sa.Integer, nullable=False),
    )
    op.create_table(
        "amazon_order_items",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("order_item_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(100)),
        sa.Column("asin", sa.String(20)),
        sa.Column("title", sa.Text),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.BigInteger),
        sa.Column("item_total", sa.BigInteger),
        sa.Column("proceeds", sa.BigInteger),
        sa.Column("currency", sa.String(3)),
    )
    op.create_table(
        "amazon_financial_transactions",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("transaction_id", sa.String(128), primary_key=True),
        sa.Column("transaction_type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32)),
        sa.Column("posted_date", sa.DateTime, nullable=False),
        sa.Column("order_id", sa.String(64)),
        sa.Column("marketplace_id", sa.String(32)),
        sa.Column("description", sa.Text),
        sa.Column("currency", sa.String(3)),
        sa.Column("total", sa.BigInteger, nullable=False),
        # Signed as Amazon reports them: sales positive, fees negative (credits positive).
        sa.Column("sales", sa.BigInteger, nullable=False),
        sa.Column("fees", sa.BigInteger, nullable=False),
        # Amount given back to buyers (positive), non-zero only for refunds.
        sa.Column("refund", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "amazon_inventory_snapshots",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("sku", sa.String(100), primary_key=True),
        sa.Column("asin", sa.String(20)),
        sa.Column("fn_sku", sa.String(20)),
        sa.Column("product_name", sa.Text),
        sa.Column("fulfillable", sa.Integer, nullable=False),
        sa.Column("inbound", sa.Integer, nullable=False),
        sa.Column("reserved", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("captured_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "amazon_listings",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("sku", sa.String(100), primary_key=True),
        sa.Column("marketplace_id", sa.String(32), primary_key=True),
        sa.Column("asin", sa.String(20)),
        sa.Column("item_name", sa.Text),
        sa.Column("status", sa.String(100)),
        sa.Column("price", sa.BigInteger),
        sa.Column("currency", sa.String(3)),
        sa.Column("fulfillment_quantity", sa.Integer),
        sa.Column("last_updated", sa.DateTime),
    )
    op.create_table(
        "amazon_ad_performance",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(32), primary_key=True),
        sa.Column("campaign_id", sa.BigInteger, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("campaign_name", sa.Text),
        sa.Column("campaign_status", sa.String(32)),
        sa.Column("impressions", sa.Integer, nullable=False),
        sa.Column("clicks", sa.Integer, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False),
        sa.Column("purchases7d", sa.Integer, nullable=False),
        sa.Column("sales7d", sa.BigInteger, nullable=False),
        sa.Column("purchases14d", sa.Integer, nullable=False),
        sa.Column("sales14d", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "amazon_daily_reports",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("currency", sa.String(3)),
        sa.Column("orders", sa.Integer, nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("revenue", sa.BigInteger, nullable=False),
        sa.Column("fees", sa.BigInteger, nullable=False),
        sa.Column("refunds", sa.BigInteger, nullable=False),
        sa.Column("ad_spend", sa.BigInteger, nullable=False),
        sa.Column("ad_sales7d", sa.BigInteger, nullable=False),
        sa.Column("acos", sa.Float),
        sa.Column("tacos", sa.Float),
        sa.Column("net_proceeds", sa.BigInteger, nullable=False),
        sa.Column("csv_path", sa.Text),
        sa.Column("html_path", sa.Text),
        sa.Column("generated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "amazon_alerts",
        # One row per condition and day is the deduplication rule.
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("subject", sa.String(100), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "amazon_sync_watermarks",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("stream", sa.String(32), primary_key=True),
        # Data up to here is synced; the next run starts from it.
        sa.Column("watermark", sa.DateTime),
        # A half-finished run's resume point (page token, report id), as JSON.
        sa.Column("cursor", sa.JSON),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_amazon_orders_created", "amazon_orders", ["account_id", "created_time"])
    op.create_index("ix_amazon_order_items_order", "amazon_order_items", ["account_id", "order_id"])
    op.create_index(
        "ix_amazon_transactions_posted", "amazon_financial_transactions", ["account_id", "posted_date"]
    )


def downgrade() -> None:
    op.drop_table("amazon_sync_watermarks")
    op.drop_table("amazon_alerts")
    op.drop_table("amazon_daily_reports")
    op.drop_table("amazon_ad_performance")
    op.drop_table("amazon_listings")
    op.drop_table("amazon_inventory_snapshots")
    op.drop_table("amazon_financial_transactions")
    op.drop_table("amazon_order_items")
    op.drop_table("amazon_orders")
    op.drop_table("amazon_accounts")
