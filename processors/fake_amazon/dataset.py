"""Deterministic seller data, written as plain dicts in Amazon's documented wire shapes.

Everything here is derived from one integer seed so that tests can recompute any
total independently of the client and the storage layer.

Seller 0 sells in the US; seller 1 in the US and in Canada (in CAD), so that reports must
keep marketplaces and currencies apart. Order statuses cover the documented set (pending
orders carry no price, as Amazon sends none before payment is authorised). Finances hold
shipments, refunds, monthly service fees (subscription, storage) and weekly ad billing
(``ProductAdsPayment``). Ads hold Sponsored Products (campaigns and advertised products),
Sponsored Brands and Sponsored Display, dated in the profile's time zone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

Json = dict[str, Any]

MARKETPLACE_ID = "ATVPDKIKX0DER"
MARKETPLACE_NAME = "Amazon.com"
CURRENCY = "USD"
CENT = Decimal("0.01")
# (marketplace id, name, country, currency, price factor, profile time zone)
MARKETPLACES: dict[str, tuple[str, str, str, Decimal, str]] = {
    "ATVPDKIKX0DER": ("Amazon.com", "US", "USD", Decimal(1), "America/Los_Angeles"),
    "A2EUQ1WTGCTBG2": ("Amazon.ca", "CA", "CAD", Decimal("1.35"), "America/Los_Angeles"),
}
# The zones whose midnights change what the data holds: UTC (the history's days) and each
# marketplace's (its last complete day of Ads data).
DAY_ZONES: tuple[str, ...] = ("UTC", *sorted({m[4] for m in MARKETPLACES.values()}))
# Amazon keeps this many days of each ad report (v3 "Data retention").
AD_RETENTION_DAYS = {"spCampaigns": 95, "spAdvertisedProduct": 95, "sbCampaigns": 60, "sdCampaigns": 65}
# Counted in units and revenue: the orders a buyer has paid for and that are not cancelled.
SOLD_STATUSES = ("SHIPPED", "PARTIALLY_SHIPPED", "UNSHIPPED")

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


def _amount(value: Decimal, currency: str = CURRENCY) -> Json:
    """Money in Orders 2026 / Listings: amount is a decimal *string*."""
    return {"amount": str(money(value)), "currencyCode": currency}


def _currency(value: Decimal, currency: str = CURRENCY) -> Json:
    """Money in Finances 2024-06-19: currencyAmount is a JSON *number*."""
    return {"currencyCode": currency, "currencyAmount": float(money(value))}


@dataclass(frozen=True)
class FakeSeller:
    """The credentials and identifiers one fake seller answers to.

    ``refresh_token`` is the SP-API grant; ``ads_refresh_token`` the separate Amazon Ads
    grant (advertising scope). ``profile_ids`` are the Ads profiles, one per marketplace in
    ``marketplace_ids``' order.
    """

    index: int
    seller_id: str
    name: str
    client_id: str
    client_secret: str
    refresh_token: str
    ads_refresh_token: str
    marketplace_ids: tuple[str, ...]
    profile_ids: tuple[int, ...]

    @property
    def marketplace_id(self) -> str:
        return self.marketplace_ids[0]

    @property
    def profile_id(self) -> int:
        return self.profile_ids[0]


@dataclass
class SellerData:
    seller: FakeSeller
    skus: list[Json] = field(default_factory=list)
    orders: list[Json] = field(default_factory=list)
    transactions: list[Json] = field(default_factory=list)
    inventory: list[Json] = field(default_factory=list)
    listings: list[Json] = field(default_factory=list)
    campaigns: list[Json] = field(default_factory=list)
    # Rows of every Ads report: "_profile" and "_report" (e.g. "sbCampaigns") say which one.
    ad_rows: list[Json] = field(default_factory=list)
    participations: list[Json] = field(default_factory=list)

    def ad_report_rows(self, report_type: str, profile_id: int | None = None) -> list[Json]:
        return [r for r in self.ad_rows if r["_report"] == report_type
                and (profile_id is None or r["_profile"] == profile_id)]


def build_dataset(
    seed: int, *, sellers: int = 2, days: int = 90, generated_at: datetime | None = None
) -> list[SellerData]:
    """Sellers with ``days`` full days of history ending yesterday (UTC) of ``generated_at``;
    Ads data ends yesterday in the profile's time zone."""
    now = generated_at or datetime.now(UTC)
    return [_build_seller(seed, index, days, now) for index in range(sellers)]


def _build_seller(seed: int, index: int, days: int, now: datetime) -> SellerData:
    rng = random.Random(seed * 1000 + index)
    marketplaces = ("ATVPDKIKX0DER", "A2EUQ1WTGCTBG2") if index % 2 else ("ATVPDKIKX0DER",)
    seller = FakeSeller(
        index=index,
        seller_id=f"A{seed % 100:02d}FAKESELLER{index:03d}",
        name=f"Fake Seller {index + 1}",
        client_id=f"amzn1.application-oa2-client.fake{seed}x{index}",
        client_secret=f"fake-client-secret-{seed}-{index}",
        refresh_token=f"Atzr|fake-refresh-{seed}-{index}-{rng.getrandbits(64):016x}",
        ads_refresh_token=f"Atzr|fake-ads-refresh-{seed}-{index}-{rng.getrandbits(64):016x}",
        marketplace_ids=marketplaces,
        profile_ids=tuple(3_000_000_000_000 + seed * 100 + index * 10 + n for n in range(len(marketplaces))),
    )
    data = SellerData(seller=seller)
    data.skus = _skus(rng, index)
    first_day = now.date() - timedelta(days=days)
    for n, marketplace_id in enumerate(marketplaces):
        # The home marketplace sells most; the others less.
        _orders_and_transactions(rng, data, marketplace_id, first_day, days, now, busy=n == 0)
        _service_fees(data, marketplace_id, first_day, days, subscription=n == 0)
    data.inventory = [_inventory_summary(rng, sku, now) for sku in data.skus]
    data.listings = [_listing(sku, now) for sku in data.skus]
    data.campaigns = _campaigns(rng, index)
    for marketplace_id, profile_id in zip(marketplaces, seller.profile_ids, strict=True):
        rows = _ad_rows(rng, data, marketplace_id, profile_id, first_day, now)
        data.ad_rows.extend(rows)
        _ad_billing(data, marketplace_id, profile_id, rows, now)
    data.transactions.sort(key=lambda t: (t["postedDate"], t["transactionId"]))
    data.participations = [_participation(seller, m) for m in marketplaces]
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


def _status(rng: random.Random, created: datetime, now: datetime) -> str:
    roll = rng.random()
    if roll < 0.04:
        return "CANCELLED"
    if roll < 0.06:
        return "UNFULFILLABLE"
    # Orders that are not shipped yet are recent ones.
    if now - created < timedelta(days=3):
        if roll < 0.19:
            return "PENDING"
        if roll < 0.27:
            return "UNSHIPPED"
        if roll < 0.32:
            return "PARTIALLY_SHIPPED"
    return "SHIPPED"


def _orders_and_transactions(
    rng: random.Random, data: SellerData, marketplace_id: str, first_day: date, days: int,
    now: datetime, *, busy: bool,
) -> None:
    weights = [sku["popularity"] for sku in data.skus]
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        day_start = datetime.combine(day, time(0), UTC)
        for _ in range(rng.randint(4, 10) if busy else rng.randint(1, 3)):
            created = day_start + timedelta(seconds=rng.randrange(0, 86_000))
            picked = {id(s): s for s in rng.choices(data.skus, weights=weights, k=rng.randint(1, 2))}
            lines = [(sku, rng.choice([1, 1, 1, 2, 3])) for sku in picked.values()]
            status = _status(rng, created, now)
            order = _order(rng, data.seller, marketplace_id, created, lines, status, now)
            data.orders.append(order)
            if status not in ("SHIPPED", "PARTIALLY_SHIPPED"):
                continue  # Amazon pays (and charges fees) when it ships.
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
    marketplace_id: str,
    created: datetime,
    lines: list[tuple[Json, int]],
    status: str,
    now: datetime,
) -> Json:
    name, _, currency, factor, _ = MARKETPLACES[marketplace_id]
    order_id = _order_id(rng)
    updated = min(created + timedelta(minutes=rng.randint(1, 600)), now - timedelta(minutes=5))
    # Amazon sends no price (and no proceeds) until the buyer's payment is authorised.
    priced = status != "PENDING"
    items = []
    total = Decimal(0)
    for n, (sku, qty) in enumerate(lines):
        price = money(sku["price"] * factor)
        line_total = price * qty
        total += line_total
        shipped = qty if status == "SHIPPED" else (qty if n == 0 and status == "PARTIALLY_SHIPPED" else 0)
        product: Json = {
            "asin": sku["asin"],
            "title": sku["title"],
            "sellerSku": sku["sku"],
            "condition": {"conditionType": "NEW", "conditionSubtype": "NEW"},
        }
        if priced:
            product["price"] = {"unitPrice": _amount(price, currency)}
        item: Json = {
            "orderItemId": f"{order_id.replace('-', '')[:12]}{n:02d}",
            "quantityOrdered": qty,
            "product": product,
            "fulfillment": {"quantityFulfilled": shipped, "quantityUnfulfilled": qty - shipped},
        }
        if priced and status != "CANCELLED":
            item["proceeds"] = {
                "proceedsTotal": _amount(line_total, currency),
                "breakdowns": [{"type": "ITEM", "subtotal": _amount(line_total, currency)}],
            }
        items.append(item)
    order: Json = {
        "orderId": order_id,
        "createdTime": iso(created),
        "lastUpdatedTime": iso(updated),
        "programs": [],
        "salesChannel": {
            "channelName": "AMAZON",
            "marketplaceId": marketplace_id,
            "marketplaceName": name,
        },
        "fulfillment": {
            "fulfillmentStatus": status,
            "fulfilledBy": "AMAZON",
            "fulfillmentServiceLevel": "STANDARD",
        },
        "orderItems": items,
    }
    if priced and status != "CANCELLED":
        order["proceeds"] = {"grandTotal": _amount(total, currency)}
    return order


def _fees_for(price: Decimal, qty: int) -> tuple[Decimal, Decimal]:
    commission = money(price * qty * Decimal("0.15"))
    fba = money((Decimal("3.22") + price * Decimal("0.02")) * qty)
    return commission, fba


def _breakdown(kind: str, amount: Decimal, currency: str, children: list[Json] | None = None) -> Json:
    node: Json = {"breakdownType": kind, "breakdownAmount": _currency(amount, currency)}
    if children:
        node["breakdowns"] = children
    return node


def _transaction(
    seller: FakeSeller, marketplace_id: str, *, transaction_id: str, kind: str, description: str,
    posted: datetime, total: Decimal, breakdowns: list[Json], order_id: str | None = None,
    items: list[Json] | None = None,
) -> Json:
    name, _, currency, _, _ = MARKETPLACES[marketplace_id]
    return {
        "sellingPartnerMetadata": {
            "sellingPartnerId": seller.seller_id,
            "accountType": "Standard Orders",
            "marketplaceId": marketplace_id,
        },
        "transactionId": transaction_id,
        "transactionType": kind,
        "transactionStatus": "RELEASED",
        "description": description,
        "postedDate": iso(posted),
        "totalAmount": _currency(total, currency),
        "marketplaceDetails": {"marketplaceId": marketplace_id, "marketplaceName": name},
        "relatedIdentifiers": (
            [{"relatedIdentifierName": "ORDER_ID", "relatedIdentifierValue": order_id}] if order_id else []
        ),
        "breakdowns": breakdowns,
        "items": items or [],
    }


def _product_context(line: Json) -> Json:
    return {
        "contextType": "ProductContext",
        "asin": line["product"]["asin"],
        "sku": line["product"]["sellerSku"],
        "quantityShipped": line["quantityOrdered"],
    }


def _unit_price(line: Json) -> tuple[Decimal, str]:
    unit = line["product"]["price"]["unitPrice"]
    return Decimal(unit["amount"]), unit["currencyCode"]


def _shipment_transaction(seller: FakeSeller, order: Json, posted: datetime) -> Json:
    items = []
    sales_total = Decimal(0)
    commission_total = Decimal(0)
    fba_total = Decimal(0)
    currency = CURRENCY
    for line in order["orderItems"]:
        qty = line["quantityOrdered"]
        price, currency = _unit_price(line)
        commission, fba = _fees_for(price, qty)
        sales = price * qty
        sales_total += sales
        commission_total += commission
        fba_total += fba
        items.append(
            {
                "description": line["product"]["title"],
                "totalAmount": _currency(sales - commission - fba, currency),
                "relatedIdentifiers": [
                    {
                        "itemRelatedIdentifierName": "ORDER_ADJUSTMENT_ITEM_ID",
                        "itemRelatedIdentifierValue": line["orderItemId"],
                    }
                ],
                "breakdowns": _shipment_breakdowns(sales, commission, fba, currency),
                "contexts": [_product_context(line)],
            }
        )
    return _transaction(
        seller, order["salesChannel"]["marketplaceId"], transaction_id=f"TXN-S-{order['orderId']}",
        kind="Shipment", description="Order Payment", posted=posted,
        total=sales_total - commission_total - fba_total, order_id=order["orderId"],
        breakdowns=_shipment_breakdowns(sales_total, commission_total, fba_total, currency), items=items,
    )


def _shipment_breakdowns(sales: Decimal, commission: Decimal, fba: Decimal, currency: str) -> list[Json]:
    return [
        _breakdown("Sales", sales, currency, [_breakdown("ProductCharges", sales, currency)]),
        _breakdown(
            "Expenses",
            -(commission + fba),
            currency,
            [
                _breakdown(
                    "AmazonFees",
                    -(commission + fba),
                    currency,
                    [
                        _breakdown("Commission", -commission, currency),
                        _breakdown("FBAPerUnitFulfillmentFee", -fba, currency),
                    ],
                )
            ],
        ),
    ]


def _refund_transaction(seller: FakeSeller, order: Json, posted: datetime) -> Json:
    line = order["orderItems"][0]
    qty = line["quantityOrdered"]
    price, currency = _unit_price(line)
    commission, _ = _fees_for(price, qty)
    refunded = price * qty
    # Amazon returns the commission but keeps a refund administration fee (20 %, max $5).
    admin_fee = min(money(commission * Decimal("0.2")), Decimal("5.00"))
    fees_back = commission - admin_fee
    breakdowns = [
        _breakdown("Sales", -refunded, currency, [_breakdown("ProductCharges", -refunded, currency)]),
        _breakdown(
            "Expenses",
            fees_back,
            currency,
            [
                _breakdown(
                    "AmazonFees",
                    fees_back,
                    currency,
                    [
                        _breakdown("Commission", commission, currency),
                        _breakdown("RefundCommission", -admin_fee, currency),
                    ],
                )
            ],
        ),
    ]
    item = {
        "description": line["product"]["title"],
        "totalAmount": _currency(fees_back - refunded, currency),
        "breakdowns": breakdowns,
        "contexts": [_product_context(line)],
    }
    return _transaction(
        seller, order["salesChannel"]["marketplaceId"], transaction_id=f"TXN-R-{order['orderId']}",
        kind="Refund", description="Refund", posted=posted, total=fees_back - refunded,
        order_id=order["orderId"], breakdowns=breakdowns, items=[item],
    )


def _service_fees(data: SellerData, marketplace_id: str, first_day: date, days: int, *,
                  subscription: bool) -> None:
    """Account-level charges (``ServiceFee``): the monthly Professional selling plan (once per
    region, on the home marketplace) and the monthly FBA storage fee of each marketplace."""
    currency = MARKETPLACES[marketplace_id][2]
    charges = [("FBAStorageFee", "FBA Inventory Storage Fee", 15, 9)]
    if subscription:
        charges.insert(0, ("Subscription", "Subscription Fee", 0, 6))
    for fee_type, description, day_offset, hour in charges:
        for offset in range(day_offset, days, 30):
            posted = datetime.combine(first_day + timedelta(days=offset), time(hour), UTC)
            if fee_type == "Subscription":
                fee = Decimal("39.99")
            else:  # a storage bill that varies with the stock held
                fee = money(Decimal(20 + (offset * 7 + data.seller.index * 13) % 60) + Decimal("0.37"))
            data.transactions.append(_transaction(
                data.seller, marketplace_id,
                transaction_id=f"TXN-F-{data.seller.index}-{marketplace_id}-{fee_type}-{offset}",
                kind="ServiceFee", description=description, posted=posted, total=-fee,
                breakdowns=[_breakdown("Expenses", -fee, currency,
                                       [_breakdown("AmazonFees", -fee, currency,
                                                   [_breakdown(fee_type, -fee, currency)])])],
            ))


def _ad_billing(data: SellerData, marketplace_id: str, profile_id: int, rows: list[Json],
                now: datetime) -> None:
    """Amazon bills the seller for ads weekly, through Finances (``ProductAdsPayment``,
    ``Expenses -> Advertising -> CostOfAdvertising``): the same money as the Ads reports'
    cost, which a report must not count twice."""
    currency = MARKETPLACES[marketplace_id][2]
    by_day: dict[str, Decimal] = {}
    for row in rows:
        by_day[row["date"]] = by_day.get(row["date"], Decimal(0)) + Decimal(str(row["cost"]))
    days = sorted(by_day)
    for end in range(6, len(days), 7):
        billed = money(sum((by_day[d] for d in days[end - 6 : end + 1]), Decimal(0)))
        posted = datetime.combine(date.fromisoformat(days[end]) + timedelta(days=1), time(14), UTC)
        if posted > now - timedelta(hours=1):
            continue
        data.transactions.append(_transaction(
            data.seller, marketplace_id, transaction_id=f"TXN-A-{profile_id}-{days[end]}",
            kind="ProductAdsPayment", description="Cost of Advertising", posted=posted, total=-billed,
            breakdowns=[_breakdown("Expenses", -billed, currency,
                                   [_breakdown("Advertising", -billed, currency,
                                               [_breakdown("CostOfAdvertising", -billed, currency)])])],
        ))


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


def ads_last_day(marketplace_id: str, now: datetime) -> date:
    """The last complete day of Ads data: yesterday in the profile's time zone."""
    return now.astimezone(ZoneInfo(MARKETPLACES[marketplace_id][4])).date() - timedelta(days=1)


def _ad_rows(rng: random.Random, data: SellerData, marketplace_id: str, profile_id: int,
             first_day: date, now: datetime) -> list[Json]:
    rows: list[Json] = []
    factor = MARKETPLACES[marketplace_id][3]
    avg_price = sum((s["price"] for s in data.skus), Decimal(0)) / len(data.skus) * factor
    last = ads_last_day(marketplace_id, now)
    offset = 0 if profile_id == data.seller.profile_id else 1_000
    brand = {"campaignId": 160_000_000_000_000 + profile_id % 1000 * 10, "acos": 0.28,
             "campaignName": "Brand - Headline", "campaignStatus": "ENABLED", "cpc": Decimal("1.10")}
    display = {"campaignId": 170_000_000_000_000 + profile_id % 1000 * 10, "acos": 0.45,
               "campaignName": "Display - Retarget", "campaignStatus": "ENABLED", "cpc": Decimal("0.60")}
    day = first_day
    while day <= last:
        for campaign in data.campaigns:
            rows += _sp_rows(rng, data, dict(campaign, campaignId=campaign["campaignId"] + offset),
                             day, profile_id, avg_price)
        for report, campaign, retention in (("sbCampaigns", brand, 55), ("sdCampaigns", display, 60)):
            if (last - day).days < retention:
                rows.append(_sb_sd_row(rng, campaign, day, profile_id, report, avg_price))
        day += timedelta(days=1)
    return rows


def _clicks_and_cost(rng: random.Random, cpc: Decimal) -> tuple[int, int, Decimal]:
    impressions = rng.randint(300, 3000)
    clicks = rng.randint(2, max(3, impressions // 100))
    return impressions, clicks, money(cpc * clicks)


def _attributed(rng: random.Random, cost: Decimal, acos: float) -> Decimal:
    if acos == 0.0:
        return Decimal(0)
    jitter = Decimal(str(round(rng.uniform(0.8, 1.2), 3)))
    return money(cost / Decimal(str(acos)) * jitter)


def _sp_rows(rng: random.Random, data: SellerData, campaign: Json, day: date, profile_id: int,
             avg_price: Decimal) -> list[Json]:
    """One spCampaigns row and its spAdvertisedProduct rows (whose sums are the campaign's)."""
    impressions, clicks, cost = _clicks_and_cost(rng, campaign["cpc"])
    sales7d = _attributed(rng, cost, campaign["acos"])
    purchases7d = int(sales7d / avg_price)
    row = {
        "_report": "spCampaigns",
        "_profile": profile_id,
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
    # Two advertised SKUs per campaign, splitting its numbers.
    first, second = data.skus[campaign["campaignId"] % 4], data.skus[4 + campaign["campaignId"] % 4]
    share = Decimal(rng.randrange(30, 71)) / 100
    cost_a, sales_a = money(cost * share), money(sales7d * share)
    clicks_a, impressions_a, purchases_a = clicks // 2, impressions // 2, purchases7d // 2
    products = []
    for n, (sku, part_cost, part_sales, part_clicks, part_impressions, part_purchases) in enumerate((
        (first, cost_a, sales_a, clicks_a, impressions_a, purchases_a),
        (second, cost - cost_a, sales7d - sales_a, clicks - clicks_a, impressions - impressions_a,
         purchases7d - purchases_a),
    )):
        products.append({
            "_report": "spAdvertisedProduct",
            "_profile": profile_id,
            "date": day.isoformat(),
            "campaignId": campaign["campaignId"],
            "adGroupId": campaign["campaignId"] + 1,
            "adId": campaign["campaignId"] * 10 + n,
            "advertisedSku": sku["sku"],
            "advertisedAsin": sku["asin"],
            "impressions": part_impressions,
            "clicks": part_clicks,
            "cost": float(part_cost),
            "spend": float(part_cost),
            "purchases7d": part_purchases,
            "sales7d": float(part_sales),
            "unitsSoldClicks7d": part_purchases,
        })
    return [row, *products]


def _sb_sd_row(rng: random.Random, campaign: Json, day: date, profile_id: int, report: str,
               avg_price: Decimal) -> Json:
    """Sponsored Brands / Display: ``sales`` and ``purchases`` are 14-day, clicks and views."""
    impressions, clicks, cost = _clicks_and_cost(rng, campaign["cpc"])
    sales = _attributed(rng, cost, campaign["acos"])
    purchases = int(sales / avg_price)
    return {
        "_report": report,
        "_profile": profile_id,
        "date": day.isoformat(),
        "campaignId": campaign["campaignId"],
        "campaignName": campaign["campaignName"],
        "campaignStatus": campaign["campaignStatus"],
        "impressions": impressions,
        "clicks": clicks,
        "cost": float(cost),
        "purchases": purchases,
        "sales": float(sales),
        "salesClicks": float(money(sales * Decimal("0.9"))),
        "unitsSold": purchases,
    }


def _participation(seller: FakeSeller, marketplace_id: str) -> Json:
    name, country, currency, _, _ = MARKETPLACES[marketplace_id]
    return {
        "marketplace": {
            "id": marketplace_id,
            "name": name,
            "countryCode": country,
            "defaultCurrencyCode": currency,
            "defaultLanguageCode": "en_US" if country == "US" else "en_CA",
            "domainName": "www." + name.lower(),
        },
        "participation": {"isParticipating": True, "hasSuspendedListings": False},
        "storeName": seller.name,
    }
