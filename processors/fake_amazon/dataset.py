"""Deterministic seller data, written as plain dicts in Amazon's documented wire shapes.

Everything here is derived from one integer seed so that tests can recompute any
total independently of the client and the storage layer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

Json = dict[str, Any]

MARKETPLACE_ID = "ATVPDKIKX0DER"
MARKETPLACE_NAME = "Amazon.com"
CURRENCY = "USD"
CENT = Decimal("0.01")

_PRODUCTS = [
    "Bamboo Cutting Board",
    "Stainless Steel Water Bottle",
    "Silicone Baking Mat",
    "LED Desk Lamp",
    "Yoga Mat Strap",
    "Cast Iron Skillet",
    "Ceramic Pour-Over Dripper",
    "Wireless Charging Pad",
    "Travel Packing Cubes",
    "Insulated Lunch Bag",
]


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _amount(value: Decimal) -> Json:
    """Money in Orders 2026 / Listings: amount is a decimal *string*."""
    return {"amount": str(money(value)), "currencyCode": CURRENCY}


def _currency(value: Decimal) -> Json:
    """Money in Finances 2024-06-19: currencyAmount is a JSON *number*."""
    return {"currencyCode": CURRENCY, "currencyAmount": float(money(value))}


@dataclass(frozen=True)
class FakeSeller:
    """The credentials and identifiers one fake seller answers to."""

    index: int
    seller_id: str
    name: str
    client_id: str
    client_secret: str
    refresh_token: str
    marketplace_id: str
    profile_id: int


@dataclass
class SellerData:
    seller: FakeSeller
    skus: list[Json] = field(default_factory=list)
    orders: list[Json] = field(default_factory=list)
    transactions: list[Json] = field(default_factory=list)
    inventory: list[Json] = field(default_factory=list)
    listings: list[Json] = field(default_factory=list)
    campaigns: list[Json] = field(default_factory=list)
    ad_rows: list[Json] = field(default_factory=list)
    participations: list[Json] = field(default_factory=list)


def build_dataset(
    seed: int, *, sellers: int = 2, days: int = 90, generated_at: datetime | None = None
) -> list[SellerData]:
    """Sellers with ``days`` full days of history ending yesterday (UTC) of ``generated_at``."""
    now = generated_at or datetime.now(UTC)
    return [_build_seller(seed, index, days, now) for index in range(sellers)]


def _build_seller(seed: int, index: int, days: int, now: datetime) -> SellerData:
    rng = random.Random(seed * 1000 + index)
    seller = FakeSeller(
        index=index,
        seller_id=f"A{seed % 100:02d}FAKESELLER{index:03d}",
        name=f"Fake Seller {index + 1}",
        client_id=f"amzn1.application-oa2-client.fake{seed}x{index}",
        client_secret=f"fake-client-secret-{seed}-{index}",
        refresh_token=f"Atzr|fake-refresh-{seed}-{index}-{rng.getrandbits(64):016x}",
        marketplace_id=MARKETPLACE_ID,
        profile_id=3_000_000_000_000 + seed * 100 + index,
    )
    data = SellerData(seller=seller)
    data.skus = _skus(rng, index)
    first_day = now.date() - timedelta(days=days)
    _orders_and_transactions(rng, data, first_day, days, now)
    _service_fees(data, first_day, days)
    data.inventory = [_inventory_summary(rng, sku, now) for sku in data.skus]
    data.listings = [_listing(sku, now) for sku in data.skus]
    data.campaigns = _campaigns(rng, index)
    data.ad_rows = _ad_rows(rng, data, first_day, days)
    data.participations = [_participation(seller)]
    return data


def _skus(rng: random.Random, index: int) -> list[Json]:
    names = rng.sample(_PRODUCTS, 8)
    skus = []
    for n, name in enumerate(names):
        skus.append(
            {
                "sku": f"S{index}-SKU-{n + 1:02d}",
                "asin": f"B0{index}{rng.randrange(10**6, 10**7)}",
                "fnSku": f"X00{index}{rng.randrange(10**5, 10**6)}",
                "title": name,
                "price": money(Decimal(rng.randrange(999, 4999)) / 100),
                "popularity": rng.uniform(0.5, 3.0),
                # Two SKUs per seller are deliberately close to selling out.
                "low_stock": n < 2,
            }
        )
    return skus


def _order_id(rng: random.Random) -> str:
    return f"11{rng.randrange(1, 10)}-{rng.randrange(10**6, 10**7)}-{rng.randrange(10**6, 10**7)}"


def _orders_and_transactions(
    rng: random.Random, data: SellerData, first_day: date, days: int, now: datetime
) -> None:
    weights = [sku["popularity"] for sku in data.skus]
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        day_start = datetime.combine(day, time(0), UTC)
        for _ in range(rng.randint(4, 10)):
            created = day_start + timedelta(seconds=rng.randrange(0, 86_000))
            picked = {id(s): s for s in rng.choices(data.skus, weights=weights, k=rng.randint(1, 2))}
            lines = [(sku, rng.choice([1, 1, 1, 2, 3])) for sku in picked.values()]
            cancelled = rng.random() < 0.04
            order = _order(rng, data.seller, created, lines, cancelled, now)
            data.orders.append(order)
            if cancelled:
                continue
            # Same UTC day as the order, and never within minutes of "now" (Amazon's lag).
            posted = min(
                created + timedelta(minutes=rng.randint(5, 90)),
                day_start + timedelta(seconds=86_399),
                now - timedelta(minutes=10),
            )
            data.transactions.append(_shipment_transaction(data.seller, order, posted))
            if rng.random() < 0.06:
                refund_posted = created + timedelta(days=rng.randint(1, 10), minutes=rng.randint(0, 600))
                if refund_posted < now - timedelta(hours=1):
                    data.transactions.append(_refund_transaction(data.seller, order, refund_posted))


def _order(
    rng: random.Random,
    seller: FakeSeller,
    created: datetime,
    lines: list[tuple[Json, int]],
    cancelled: bool,
    now: datetime,
) -> Json:
    order_id = _order_id(rng)
    updated = min(created + timedelta(minutes=rng.randint(1, 600)), now - timedelta(minutes=5))
    items = []
    total = Decimal(0)
    for n, (sku, qty) in enumerate(lines):
        line_total = sku["price"] * qty
        total += line_total
        item: Json = {
            "orderItemId": f"{order_id.replace('-', '')[:12]}{n:02d}",
            "quantityOrdered": qty,
            "product": {
                "asin": sku["asin"],
                "title": sku["title"],
                "sellerSku": sku["sku"],
                "condition": {"conditionType": "NEW", "conditionSubtype": "NEW"},
                "price": {"unitPrice": _amount(sku["price"])},
            },
            "fulfillment": {
                "quantityFulfilled": 0 if cancelled else qty,
                "quantityUnfulfilled": qty if cancelled else 0,
            },
        }
        if not cancelled:
            item["proceeds"] = {
                "proceedsTotal": _amount(line_total),
                "breakdowns": [{"type": "ITEM", "subtotal": _amount(line_total)}],
            }
        items.append(item)
    order: Json = {
        "orderId": order_id,
        "createdTime": iso(created),
        "lastUpdatedTime": iso(updated),
        "programs": [],
        "salesChannel": {
            "channelName": "AMAZON",
            "marketplaceId": seller.marketplace_id,
            "marketplaceName": MARKETPLACE_NAME,
        },
        "fulfillment": {
            "fulfillmentStatus": "CANCELLED" if cancelled else "SHIPPED",
            "fulfilledBy": "AMAZON",
            "fulfillmentServiceLevel": "STANDARD",
        },
        "orderItems": items,
    }
    if not cancelled:
        order["proceeds"] = {"grandTotal": _amount(total)}
    return order


def _fees_for(price: Decimal, qty: int) -> tuple[Decimal, Decimal]:
    commission = money(price * qty * Decimal("0.15"))
    fba = money((Decimal("3.22") + price * Decimal("0.02")) * qty)
    return commission, fba


def _breakdown(kind: str, amount: Decimal, children: list[Json] | None = None) -> Json:
    node: Json = {"breakdownType": kind, "breakdownAmount": _currency(amount)}
    if children:
        node["breakdowns"] = children
    return node


def _shipment_transaction(seller: FakeSeller, order: Json, posted: datetime) -> Json:
    items = []
    sales_total = Decimal(0)
    commission_total = Decimal(0)
    fba_total = Decimal(0)
    for line in order["orderItems"]:
        qty = line["quantityOrdered"]
        price = Decimal(line["product"]["price"]["unitPrice"]["amount"])
        commission, fba = _fees_for(price, qty)
        sales = price * qty
        sales_total += sales
        commission_total += commission
        fba_total += fba
        items.append(
            {
                "description": line["product"]["title"],
                "totalAmount": _currency(sales - commission - fba),
                "relatedIdentifiers": [
                    {
                        "itemRelatedIdentifierName": "ORDER_ADJUSTMENT_ITEM_ID",
                        "itemRelatedIdentifierValue": line["orderItemId"],
                    }
                ],
                "breakdowns": _shipment_breakdowns(sales, commission, fba),
                "contexts": [
                    {
                        "contextType": "ProductContext",
                        "asin": line["product"]["asin"],
                        "sku": line["product"]["sellerSku"],
                        "quantityShipped": qty,
                    }
                ],
            }
        )
    return {
        "sellingPartnerMetadata": {
            "sellingPartnerId": seller.seller_id,
            "accountType": "Standard Orders",
            "marketplaceId": seller.marketplace_id,
        },
        "transactionId": f"TXN-S-{order['orderId']}",
        "transactionType": "Shipment",
        "transactionStatus": "RELEASED",
        "description": "Order Payment",
        "postedDate": iso(posted),
        "totalAmount": _currency(sales_total - commission_total - fba_total),
        "marketplaceDetails": {
            "marketplaceId": seller.marketplace_id,
            "marketplaceName": MARKETPLACE_NAME,
        },
        "relatedIdentifiers": [
            {"relatedIdentifierName": "ORDER_ID", "relatedIdentifierValue": order["orderId"]}
        ],
        "breakdowns": _shipment_breakdowns(sales_total, commission_total, fba_total),
        "items": items,
    }


def _shipment_breakdowns(sales: Decimal, commission: Decimal, fba: Decimal) -> list[Json]:
    return [
        _breakdown("Sales", sales, [_breakdown("ProductCharges", sales)]),
        _breakdown(
            "Expenses",
            -(commission + fba),
            [
                _breakdown(
                    "AmazonFees",
                    -(commission + fba),
                    [
                        _breakdown("Commission", -commission),
                        _breakdown("FBAPerUnitFulfillmentFee", -fba),
                    ],
                )
            ],
        ),
    ]


def _refund_transaction(seller: FakeSeller, order: Json, posted: datetime) -> Json:
    line = order["orderItems"][0]
    qty = line["quantityOrdered"]
    price = Decimal(line["product"]["price"]["unitPrice"]["amount"])
    commission, _ = _fees_for(price, qty)
    refunded = price * qty
    # Amazon returns the commission but keeps a refund administration fee (20 %, max $5).
    admin_fee = min(money(commission * Decimal("0.2")), Decimal("5.00"))
    fees_back = commission - admin_fee
    breakdowns = [
        _breakdown("Sales", -refunded, [_breakdown("ProductCharges", -refunded)]),
        _breakdown(
            "Expenses",
            fees_back,
            [
                _breakdown(
                    "AmazonFees",
                    fees_back,
                    [
                        _breakdown("Commission", commission),
                        _breakdown("RefundCommission", -admin_fee),
                    ],
                )
            ],
        ),
    ]
    return {
        "sellingPartnerMetadata": {
            "sellingPartnerId": seller.seller_id,
            "accountType": "Standard Orders",
            "marketplaceId": seller.marketplace_id,
        },
        "transactionId": f"TXN-R-{order['orderId']}",
        "transactionType": "Refund",
        "transactionStatus": "RELEASED",
        "description": "Refund",
        "postedDate": iso(posted),
        "totalAmount": _currency(fees_back - refunded),
        "marketplaceDetails": {
            "marketplaceId": seller.marketplace_id,
            "marketplaceName": MARKETPLACE_NAME,
        },
        "relatedIdentifiers": [
            {"relatedIdentifierName": "ORDER_ID", "relatedIdentifierValue": order["orderId"]}
        ],
        "breakdowns": breakdowns,
        "items": [
            {
                "description": line["product"]["title"],
                "totalAmount": _currency(fees_back - refunded),
                "breakdowns": breakdowns,
                "contexts": [
                    {
                        "contextType": "ProductContext",
                        "asin": line["product"]["asin"],
                        "sku": line["product"]["sellerSku"],
                        "quantityShipped": qty,
                    }
                ],
            }
        ],
    }


def _service_fees(data: SellerData, first_day: date, days: int) -> None:
    """The monthly Professional selling plan subscription."""
    for offset in range(0, days, 30):
        posted = datetime.combine(first_day + timedelta(days=offset), time(6), UTC)
        fee = Decimal("39.99")
        data.transactions.append(
            {
                "transactionId": f"TXN-F-{data.seller.index}-{offset}",
                "transactionType": "ServiceFee",
                "transactionStatus": "RELEASED",
                "description": "Subscription Fee",
                "postedDate": iso(posted),
                "totalAmount": _currency(-fee),
                "marketplaceDetails": {
                    "marketplaceId": data.seller.marketplace_id,
                    "marketplaceName": MARKETPLACE_NAME,
                },
                "relatedIdentifiers": [],
                "breakdowns": [
                    _breakdown(
                        "Expenses",
                        -fee,
                        [_breakdown("AmazonFees", -fee, [_breakdown("Subscription", -fee)])],
                    )
                ],
                "items": [],
            }
        )
    data.transactions.sort(key=lambda t: (t["postedDate"], t["transactionId"]))


def _inventory_summary(rng: random.Random, sku: Json, now: datetime) -> Json:
    # Rough units/day implied by the order generator (7 orders/day spread by popularity).
    if sku["low_stock"]:
        fulfillable, inbound_shipped = rng.randint(0, 3), 0
    else:
        fulfillable, inbound_shipped = rng.randint(150, 400), rng.randint(0, 60)
    reserved = rng.randint(0, 4)
    return {
        "asin": sku["asin"],
        "fnSku": sku["fnSku"],
        "sellerSku": sku["sku"],
        "condition": "NewItem",
        "productName": sku["title"],
        "lastUpdatedTime": iso(now - timedelta(hours=1)),
        "totalQuantity": fulfillable + inbound_shipped + reserved,
        "stores": [],
        "inventoryDetails": {
            "fulfillableQuantity": fulfillable,
            "inboundWorkingQuantity": 0,
            "inboundShippedQuantity": inbound_shipped,
            "inboundReceivingQuantity": 0,
            "reservedQuantity": {
                "totalReservedQuantity": reserved,
                "pendingCustomerOrderQuantity": reserved,
                "pendingTransshipmentQuantity": 0,
                "fcProcessingQuantity": 0,
            },
            "researchingQuantity": {
                "totalResearchingQuantity": 0,
                "researchingQuantityBreakdown": [],
            },
            "unfulfillableQuantity": {
                "totalUnfulfillableQuantity": 0,
                "customerDamagedQuantity": 0,
                "warehouseDamagedQuantity": 0,
                "distributorDamagedQuantity": 0,
                "carrierDamagedQuantity": 0,
                "defectiveQuantity": 0,
                "expiredQuantity": 0,
            },
        },
    }


def _listing(sku: Json, now: datetime) -> Json:
    return {
        "sku": sku["sku"],
        "summaries": [
            {
                "marketplaceId": MARKETPLACE_ID,
                "asin": sku["asin"],
                "productType": "HOME",
                "conditionType": "new_new",
                "status": ["BUYABLE", "DISCOVERABLE"],
                "fnSku": sku["fnSku"],
                "itemName": sku["title"],
                "createdDate": iso(now - timedelta(days=400)),
                "lastUpdatedDate": iso(now - timedelta(days=3)),
            }
        ],
        "offers": [
            {
                "marketplaceId": MARKETPLACE_ID,
                "offerType": "B2C",
                "price": _amount(sku["price"]),
            }
        ],
        "fulfillmentAvailability": [{"fulfillmentChannelCode": "AMAZON_NA", "quantity": 0}],
    }


def _campaigns(rng: random.Random, index: int) -> list[Json]:
    # Target ACOS in tests is 30 %: two healthy campaigns, one expensive, one that never converts.
    profiles = [
        ("Brand - Exact", 0.14),
        ("Auto - Discovery", 0.22),
        ("Broad - Competitors", 0.65),
        ("Launch - New", 0.0),
    ]
    return [
        {
            "campaignId": 150_000_000_000_000 + index * 1000 + n * 7 + rng.randrange(0, 5),
            "campaignName": name,
            "campaignStatus": "ENABLED",
            "acos": acos,
            "cpc": Decimal(rng.randrange(45, 140)) / 100,
        }
        for n, (name, acos) in enumerate(profiles)
    ]


def _ad_rows(rng: random.Random, data: SellerData, first_day: date, days: int) -> list[Json]:
    rows = []
    avg_price = sum((s["price"] for s in data.skus), Decimal(0)) / len(data.skus)
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for campaign in data.campaigns:
            impressions = rng.randint(300, 3000)
            clicks = rng.randint(2, max(3, impressions // 100))
            cost = money(campaign["cpc"] * clicks)
            if campaign["acos"] == 0.0:
                sales7d = Decimal(0)
            else:
                jitter = Decimal(str(round(rng.uniform(0.8, 1.2), 3)))
                sales7d = money(cost / Decimal(str(campaign["acos"])) * jitter)
            purchases7d = int(sales7d / avg_price)
            rows.append(
                {
                    "date": day.isoformat(),
                    "campaignId": campaign["campaignId"],
                    "campaignName": campaign["campaignName"],
                    "campaignStatus": campaign["campaignStatus"],
                    "impressions": impressions,
                    "clicks": clicks,
                    "cost": float(cost),
                    "purchases7d": purchases7d,
                    "sales7d": float(sales7d),
                    "purchases14d": purchases7d,
                    "sales14d": float(money(sales7d * Decimal("1.08"))),
                }
            )
    return rows


def _participation(seller: FakeSeller) -> Json:
    return {
        "marketplace": {
            "id": seller.marketplace_id,
            "name": MARKETPLACE_NAME,
            "countryCode": "US",
            "defaultCurrencyCode": CURRENCY,
            "defaultLanguageCode": "en_US",
            "domainName": "www.amazon.com",
        },
        "participation": {"isParticipating": True, "hasSuspendedListings": False},
        "storeName": seller.name,
    }
