"""Tables for the synced seller data. Every table has a natural key so writes can upsert.

Changes go through a migration in ``processors/storage/migrations/versions`` as well.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    true,
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
    # The Amazon Ads grant's refresh token, when it is not the SP-API one (may come from env too).
    Column("ads_refresh_token", Text),
    # Pins one Ads profile; NULL: the profiles listProfiles shows for the seller.
    Column("ads_profile_id", String(32)),
    Column("acos_target", Float, nullable=False),
    Column("low_stock_days", Integer, nullable=False),
    Column("webhook_url", Text),
    Column("created_at", UtcDateTime, nullable=False),
    # A disabled account keeps its data but gets no schedules, and its jobs fail at once.
    Column("enabled", Boolean, nullable=False, server_default=true()),
    # Alert settings: ACOS over this many days, units sold over this many days (low stock),
    # and the spend with no attributed sales that raises an alert.
    Column("acos_window_days", Integer, nullable=False, server_default="7"),
    Column("sales_window_days", Integer, nullable=False, server_default="14"),
    Column("no_sales_min_spend", Money, nullable=False, server_default="1000"),
)

ads_profiles = Table(
    "amazon_ads_profiles",
    metadata,
    # One per marketplace the account advertises in, as listProfiles shows them.
    Column("account_id", String(64), primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    Column("marketplace_id", String(32), nullable=False),
    Column("country_code", String(4)),
    Column("currency", String(3), nullable=False),
    # Ads reports' dates are days in this zone.
    Column("timezone", String(64), nullable=False),
    Column("discovered_at", UtcDateTime, nullable=False),
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
    # Signed as Amazon reports them: sales positive, charges negative (credits positive).
    Column("sales", Money, nullable=False),
    # Amazon's fees on orders (commission, fulfilment...), not the two kinds below.
    Column("fees", Money, nullable=False),
    # Amount given back to buyers (positive), non-zero only for refunds.
    Column("refund", Money, nullable=False),
    # Account-level charges (ServiceFee: subscription, storage...).
    Column("service_fees", Money, nullable=False, server_default="0"),
    # Amazon billing the seller for ads (ProductAdsPayment): the Ads reports' cost again, so
    # never added to fees or deducted a second time.
    Column("ad_billing", Money, nullable=False, server_default="0"),
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
    "amazon_ad_campaign_days",
    metadata,
    # One campaign's day, for every ad product (SPONSORED_PRODUCTS, _BRANDS, _DISPLAY).
    Column("account_id", String(64), primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    Column("ad_product", String(32), primary_key=True),
    Column("campaign_id", BigInteger, primary_key=True),
    # The profile's day (its time zone), as the Ads reports date it.
    Column("date", Date, primary_key=True),
    Column("campaign_name", Text),
    Column("campaign_status", String(32)),
    Column("impressions", Integer, nullable=False),
    Column("clicks", Integer, nullable=False),
    Column("cost", Money, nullable=False),
    # The sales ACOS divides by: 7-day click attribution for SP, 14-day click-or-view for SB/SD.
    Column("attributed_sales", Money, nullable=False),
    Column("attributed_purchases", Integer, nullable=False),
    Column("attribution_days", Integer, nullable=False),
    # Sponsored Products also reports the other window.
    Column("sales14d", Money),
)

ad_products = Table(
    "amazon_ad_products",
    metadata,
    # Sponsored Products per advertised SKU (spAdvertisedProduct): one ad's day.
    Column("account_id", String(64), primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    Column("ad_id", BigInteger, primary_key=True),
    Column("date", Date, primary_key=True),
    Column("campaign_id", BigInteger, nullable=False),
    Column("ad_group_id", BigInteger, nullable=False),
    Column("sku", String(100)),
    Column("asin", String(20)),
    Column("impressions", Integer, nullable=False),
    Column("clicks", Integer, nullable=False),
    Column("cost", Money, nullable=False),
    Column("purchases7d", Integer, nullable=False),
    Column("sales7d", Money, nullable=False),
)

reports = Table(
    "amazon_marketplace_reports",
    metadata,
    # One account's day in one marketplace, in its currency and time zone.
    Column("account_id", String(64), primary_key=True),
    Column("marketplace_id", String(32), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("orders", Integer, nullable=False),
    Column("units", Integer, nullable=False),
    Column("revenue", Money, nullable=False),
    Column("fees", Money, nullable=False),
    Column("service_fees", Money, nullable=False),
    Column("refunds", Money, nullable=False),
    Column("ad_spend", Money, nullable=False),
    Column("ad_sales", Money, nullable=False),
    Column("acos", Float),
    Column("tacos", Float),
    Column("net_proceeds", Money, nullable=False),
    # Whether every data set was synced through the end of the day; "missing" names the others.
    Column("complete", Boolean, nullable=False),
    Column("missing", JSON, nullable=False),
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
    # "orders", "transactions", "ads:<reportTypeId>:<profile id>", ...
    Column("stream", String(100), primary_key=True),
    # Data up to here is synced; the next run starts from it.
    Column("watermark", UtcDateTime),
    # A half-finished run's resume point (page token, report ids), or the run that finished it.
    Column("cursor", JSON),
    Column("updated_at", UtcDateTime, nullable=False),
)
