"""Client Structs → storage rows."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from processors.amazon.models.ads import (
    AdsReportSpec,
    AdvertisedProductDay,
    BrandOrDisplayCampaignDay,
    CampaignDay,
)
from processors.amazon.models.finances import Transaction
from processors.amazon.models.inventory import InventorySummary
from processors.amazon.models.listings import ListingItem
from processors.amazon.models.orders import Order

Row = dict[str, Any]
ZERO = Decimal("0.00")


def order_rows(account_id: str, order: Order) -> tuple[Row, list[Row]]:
    grand_total = order.proceeds.grand_total if order.proceeds else None
    items = []
    for item in order.order_items:
        unit = item.product.price.unit_price if item.product.price else None
        proceeds = item.proceeds.proceeds_total if item.proceeds else None
        items.append(
            {
                "account_id": account_id,
                "order_item_id": item.order_item_id,
                "order_id": order.order_id,
                "sku": item.product.seller_sku,
                "asin": item.product.asin,
                "title": item.product.title,
                "quantity": item.quantity_ordered,
                "unit_price": unit.amount if unit else None,
                "item_total": unit.amount * item.quantity_ordered if unit else None,
                "proceeds": proceeds.amount if proceeds else None,
                "currency": unit.currency_code if unit else None,
            }
        )
    order_row = {
        "account_id": account_id,
        "order_id": order.order_id,
        "marketplace_id": order.sales_channel.marketplace_id,
        "created_time": order.created_time,
        "last_updated_time": order.last_updated_time,
        "status": order.fulfillment.fulfillment_status if order.fulfillment else "UNKNOWN",
        "fulfilled_by": order.fulfillment.fulfilled_by if order.fulfillment else None,
        "currency": grand_total.currency_code if grand_total else None,
        "order_total": grand_total.amount if grand_total else None,
        "units": sum(i.quantity_ordered for i in order.order_items),
    }
    return order_row, items


# Account-level charges (subscription, storage, ...): reported apart from the fees on orders.
SERVICE_FEE = "ServiceFee"
# Amazon billing the seller for ads: the Ads reports' cost, never a fee and never deducted twice.
AD_BILLING = "ProductAdsPayment"


def transaction_row(account_id: str, tx: Transaction) -> Row:
    """A transaction with its charges split three ways, each signed as Amazon reports it:
    ``fees`` (on orders), ``service_fees`` (``ServiceFee`` transactions) and ``ad_billing``
    (``Expenses -> Advertising``, or a whole ``ProductAdsPayment``)."""
    sales = tx.breakdown_total("Sales")
    expenses = tx.breakdown_total("Expenses")
    advertising = tx.nested_total("Expenses", "Advertising")
    if tx.transaction_type == AD_BILLING and not advertising:
        advertising = expenses
    other = expenses - advertising
    service_fees = other if tx.transaction_type == SERVICE_FEE else ZERO
    return {
        "account_id": account_id,
        "transaction_id": tx.transaction_id or _synthetic_id(tx),
        "transaction_type": tx.transaction_type,
        "status": tx.transaction_status,
        "posted_date": tx.posted_date,
        "order_id": tx.related("ORDER_ID"),
        "marketplace_id": tx.marketplace_id,
        "description": tx.description,
        "currency": tx.total_amount.currency_code,
        "total": tx.total_amount.currency_amount,
        "sales": sales,
        "fees": other - service_fees,
        "refund": -sales if tx.transaction_type == "Refund" else ZERO,
        "service_fees": service_fees,
        "ad_billing": advertising,
    }


def _synthetic_id(tx: Transaction) -> str:
    """transactionId is optional in the model; a content hash keeps the upsert key stable."""
    basis = "|".join(
        [tx.transaction_type, tx.posted_date.isoformat(), str(tx.total_amount.currency_amount)]
        + [f"{r.related_identifier_name}={r.related_identifier_value}" for r in tx.related_identifiers]
    )
    return "sha1:" + hashlib.sha1(basis.encode()).hexdigest()


def inventory_row(account_id: str, day: date, captured: datetime, summary: InventorySummary) -> Row | None:
    if not summary.seller_sku:
        return None
    details = summary.inventory_details
    return {
        "account_id": account_id,
        "snapshot_date": day,
        "sku": summary.seller_sku,
        "asin": summary.asin,
        "fn_sku": summary.fn_sku,
        "product_name": summary.product_name,
        "fulfillable": details.fulfillable_quantity if details else 0,
        "inbound": details.inbound_quantity if details else 0,
        "reserved": (
            details.reserved_quantity.total_reserved_quantity if details and details.reserved_quantity else 0
        ),
        "total": summary.total_quantity or 0,
        "captured_at": captured,
    }


def listing_rows(account_id: str, item: ListingItem) -> list[Row]:
    rows = []
    offers = {o.marketplace_id: o for o in item.offers}
    quantity = next((f.quantity for f in item.fulfillment_availability), None)
    for summary in item.summaries:
        offer = offers.get(summary.marketplace_id)
        rows.append(
            {
                "account_id": account_id,
                "sku": item.sku,
                "marketplace_id": summary.marketplace_id,
                "asin": summary.asin,
                "item_name": summary.item_name,
                "status": ",".join(summary.status),
                "price": offer.price.amount if offer else None,
                "currency": offer.price.currency_code if offer else None,
                "fulfillment_quantity": quantity,
                "last_updated": summary.last_updated_date,
            }
        )
    return rows


def ad_rows(account_id: str, profile_id: str, spec: AdsReportSpec, rows: list[Any]) -> list[Row]:
    """Rows of one Ads report, for ``ad_performance`` or (advertised products) ``ad_products``."""
    if spec.row is AdvertisedProductDay:
        return [product_row(account_id, profile_id, r) for r in rows]
    return [campaign_row(account_id, profile_id, spec.ad_product, r) for r in rows]


def campaign_row(account_id: str, profile_id: str, ad_product: str,
                 day: CampaignDay | BrandOrDisplayCampaignDay) -> Row:
    row = {
        "account_id": account_id,
        "profile_id": profile_id,
        "ad_product": ad_product,
        "campaign_id": day.campaign_id,
        "date": day.date,
        "campaign_name": day.campaign_name,
        "campaign_status": day.campaign_status,
        "impressions": day.impressions,
        "clicks": day.clicks,
        "cost": day.cost,
    }
    if isinstance(day, CampaignDay):
        # Sellers' Sponsored Products attribution in Seller Central: 7 days after a click.
        return {**row, "attributed_sales": day.sales7d, "attributed_purchases": day.purchases7d,
                "attribution_days": 7, "sales14d": day.sales14d}
    return {**row, "attributed_sales": day.sales, "attributed_purchases": day.purchases,
            "attribution_days": 14, "sales14d": day.sales}


def product_row(account_id: str, profile_id: str, day: AdvertisedProductDay) -> Row:
    return {
        "account_id": account_id,
        "profile_id": profile_id,
        "ad_id": day.ad_id,
        "date": day.date,
        "campaign_id": day.campaign_id,
        "ad_group_id": day.ad_group_id,
        "sku": day.advertised_sku,
        "asin": day.advertised_asin,
        "impressions": day.impressions,
        "clicks": day.clicks,
        "cost": day.cost,
        "purchases7d": day.purchases7d,
        "sales7d": day.sales7d,
    }
