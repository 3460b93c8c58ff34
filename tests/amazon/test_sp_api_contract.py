"""python-amazon-sp-api, an independent client, accepts the fake's wire format."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

sp_api_auth = pytest.importorskip("sp_api.auth.access_token_client")
from sp_api.api import Finances, Inventories, ListingsItems, Orders, Reports, Sellers  # noqa: E402
from sp_api.base import SellingApiException  # noqa: E402

from processors.fake_amazon import FakeAmazon, FakeAmazonServer, FakeSeller  # noqa: E402


@pytest.fixture(autouse=True)
def clean_token_cache() -> Iterator[None]:
    # The library caches tokens in a module-global TTLCache keyed by refresh token.
    sp_api_auth.cache.clear()
    yield
    sp_api_auth.cache.clear()


def make(cls: Any, server: FakeAmazonServer, seller: FakeSeller, **kwargs: Any) -> Any:
    token_client = type(
        "FakeAccessTokenClient",
        (sp_api_auth.AccessTokenClient,),
        {"scheme": "http://", "host": server.url.removeprefix("http://")},
    )
    client = cls(
        credentials={
            "lwa_app_id": seller.client_id,
            "lwa_client_secret": seller.client_secret,
            "refresh_token": seller.refresh_token,
        },
        auth_token_client_class=token_client,
        **kwargs,
    )
    client.endpoint = server.url  # no endpoint override exists; it is a plain attribute
    return client


def test_orders_2026(fake_server: FakeAmazonServer, fake: FakeAmazon) -> None:
    seller = fake.sellers[0]
    orders = make(Orders, fake_server, seller, version="2026-01-01")
    since = (fake.clock.now() - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = orders.search_orders(
        createdAfter=since,
        marketplaceIds=[seller.marketplace_id],
        includedData=["PROCEEDS", "FULFILLMENT"],
    )
    assert response.payload["orders"]
    assert response.payload["orders"][0]["orderItems"][0]["product"]["sellerSku"]
    assert response.rate_limit == "0.0056"


def test_finances_2024(fake_server: FakeAmazonServer, fake: FakeAmazon) -> None:
    finances = make(Finances, fake_server, fake.sellers[0], version="2024-06-19")
    since = (fake.clock.now() - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = finances.list_transactions(postedAfter=since)
    assert len(response.payload["transactions"]) == 100
    assert response.next_token


def test_inventory_listings_sellers(fake_server: FakeAmazonServer, fake: FakeAmazon) -> None:
    seller = fake.sellers[0]
    inventory = make(Inventories, fake_server, seller).get_inventory_summary_marketplace(details=True)
    summaries = inventory.payload["inventorySummaries"]
    assert summaries[0]["inventoryDetails"]["fulfillableQuantity"] >= 0
    listings = make(ListingsItems, fake_server, seller).search_listings_items(
        sellerId=seller.seller_id, marketplaceIds=[seller.marketplace_id], pageSize=3
    )
    assert len(listings.payload["items"]) == 3
    assert listings.next_token
    participations = make(Sellers, fake_server, seller).get_marketplace_participation()
    assert participations.payload[0]["marketplace"]["id"] == seller.marketplace_id


def test_reports_flow_with_download(fake_server: FakeAmazonServer, fake: FakeAmazon) -> None:
    seller = fake.sellers[0]
    reports = make(Reports, fake_server, seller)
    created = reports.create_report(
        reportType="GET_MERCHANT_LISTINGS_ALL_DATA", marketplaceIds=[seller.marketplace_id]
    )
    report_id = created.payload["reportId"]
    for _ in range(5):
        report = reports.get_report(report_id).payload
        if report["processingStatus"] == "DONE":
            break
    document = reports.get_report_document(report["reportDocumentId"], download=True, decrypt=False)
    assert "seller-sku" in document.payload["document"]


def test_errors_are_recognised(fake_server: FakeAmazonServer, fake: FakeAmazon) -> None:
    inventory = make(Inventories, fake_server, fake.sellers[0])
    fake.inject("getInventorySummaries", "throttle")
    with pytest.raises(SellingApiException) as caught:
        inventory.get_inventory_summary_marketplace(details=True)
    assert caught.value.code == 429
