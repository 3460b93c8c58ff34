"""Break run on the application's Amazon side: what real Selling Partner API integrations see.

Each test drives the fake Amazon into one failure (a pagination loop, a page with the same
records twice, a body trickled past the timeout, Amazon's 500 JSON, a checkpointed page token
that expired, odd flat files, odd Retry-After values) and checks that the sync ends with a
clear error or the right data, within a deadline: never a hang, never a silent partial result.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from processors.amazon import (
    AmazonAccount,
    AmazonClient,
    AmazonDecodeError,
    AmazonEndpoints,
    AmazonRateLimited,
    AmazonServerError,
    AmazonTimeoutError,
    ClientSettings,
    RedisQuota,
)
from processors.amazon.errors import AmazonPaginationLoop
from processors.amazon.http import retry_after
from processors.amazon.report_documents import parse_tsv
from processors.fake_amazon import FakeAmazon, FakeAmazonServer
from processors.storage import Storage, schema
from processors.sync_logic import SyncContext, no_progress, sync_account

from .helpers import make_ctx, settings_for

# Generous for a sync of the fake's ~600 orders, far below "for ever".
DEADLINE = 20.0
FAST = 1000.0


@pytest.fixture
async def fast_client(
    fake_server: FakeAmazonServer, redis_client: aioredis.Redis
) -> AsyncIterator[AmazonClient]:
    """Quotas scaled x1000 on both sides: a test about pagination is not slowed by throttling."""
    fake_server.fake.quota_scale = FAST
    async with AmazonClient(settings_for(fake_server.url, quota_scale=FAST),
                            quota=RedisQuota(redis_client)) as amazon:
        yield amazon


@pytest.fixture
def fast_ctx(
    fast_client: AmazonClient, sqlite_storage: Storage, fake: FakeAmazon, tmp_path: Path
) -> SyncContext:
    ctx = make_ctx(fast_client, sqlite_storage, fake, tmp_path)
    # Several pages of every stream (the fake has 8 listings and 8 inventory summaries).
    return replace(ctx, settings=replace(ctx.settings, listings_page_size=2))


# (sync kind, operation, stream, table, the fake's page size knob and a size that makes pages)
STREAMS = [
    ("orders", "searchOrders", "orders", schema.orders),
    ("fees", "listTransactions", "transactions", schema.financial_transactions),
    ("inventory", "getInventorySummaries", "inventory", schema.inventory_snapshots),
    ("listings", "searchListingsItems", "listings", schema.listings),
]


def _expected(fake: FakeAmazon, stream: str) -> int:
    data = fake.data[0]
    return len({"orders": data.orders, "transactions": data.transactions, "inventory": data.inventory,
                "listings": data.listings}[stream])


def _small_pages(fake: FakeAmazon) -> None:
    fake.inventory_page_size = 2
    fake.transactions_page_size = 40


@pytest.mark.parametrize(("kind", "operation", "stream", "table"), STREAMS, ids=[s[0] for s in STREAMS])
async def test_a_pagination_loop_is_a_clear_error_not_an_endless_sync(
    fast_ctx: SyncContext, fake: FakeAmazon, kind: str, operation: str, stream: str, table: object
) -> None:
    """Amazon answers page two with the token that asked for it. Before: the sync asked for
    that page for ever (listings, inventory: a hang; orders: a 429 after the burst, then the
    job resumed into the same loop after each delay). Now: AmazonPaginationLoop naming the
    operation, the stream's checkpoint is dropped, and the next run stores everything."""
    _small_pages(fake)
    fake.inject(operation, "repeat_token", times=10_000)
    with pytest.raises(AmazonPaginationLoop) as caught:
        await asyncio.wait_for(sync_account(fast_ctx, "acct-0", [kind], no_progress, run_id="r1"), DEADLINE)
    assert operation in str(caught.value) and "nextToken" in str(caught.value)
    assert fake.calls(operation) <= 3
    state = fast_ctx.storage.sync_state("acct-0", stream)
    assert not (state.cursor or {}).get("token")
    fake.faults.clear()
    await asyncio.wait_for(sync_account(fast_ctx, "acct-0", [kind], no_progress, run_id="r2"), DEADLINE)
    assert fast_ctx.storage.count(table, "acct-0") == _expected(fake, stream)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "operation", "stream", "table"), STREAMS[:2], ids=["orders", "fees"])
async def test_the_same_records_twice_in_a_page_are_stored_once(
    fast_client: AmazonClient, storage: Storage, fake: FakeAmazon, tmp_path: Path,
    kind: str, operation: str, stream: str, table: object,
) -> None:
    """A page that holds one order (or transaction) twice: Amazon's index shifted under the
    pagination. Before, on PostgreSQL: 'ON CONFLICT DO UPDATE command cannot affect row a
    second time', so the sync failed on every retry (SQLite took it). Now the duplicates of a
    batch are merged, the last one winning, on both databases."""
    ctx = make_ctx(fast_client, storage, fake, tmp_path)
    _small_pages(fake)
    fake.inject(operation, "duplicate_page", times=2)
    await asyncio.wait_for(sync_account(ctx, "acct-0", [kind], no_progress), DEADLINE)
    assert storage.count(table, "acct-0") == _expected(fake, stream)  # type: ignore[arg-type]
    if kind == "orders":
        items = sum(len(o["orderItems"]) for o in fake.data[0].orders)
        assert storage.count(schema.order_items, "acct-0") == items


async def test_a_body_trickled_past_the_timeout_times_out(
    fake_server: FakeAmazonServer, redis_client: aioredis.Redis, account: AmazonAccount, fake: FakeAmazon
) -> None:
    """Amazon sends a few bytes every 0.2 s: each read is well inside httpx's read timeout,
    which is per read, so the request took as long as the body lasted (minutes for a big
    page: the job held its slot all along). Now every exchange has an overall deadline."""
    settings = ClientSettings(endpoints=AmazonEndpoints.single_host(fake_server.url),
                              timeout=httpx.Timeout(1.0, connect=1.0), request_deadline=1.5)
    async with AmazonClient(settings, quota=RedisQuota(redis_client)) as client:
        fake.inject("getInventorySummaries", "trickle", delay=0.2)
        started = asyncio.get_running_loop().time()
        with pytest.raises(AmazonTimeoutError) as caught:
            await asyncio.wait_for(client.sp.get_inventory_summaries(account), DEADLINE)
        assert "getInventorySummaries" in str(caught.value)
        assert asyncio.get_running_loop().time() - started < 5.0


def test_every_client_deadline_is_finite() -> None:
    settings = settings_for("http://127.0.0.1:1")
    assert 0 < settings.request_deadline < 600 and 0 < settings.download_deadline < 3600


async def test_a_500_with_amazons_error_json_keeps_amazons_reason(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    """Before: 'searchOrders: Amazon answered HTTP 500', Amazon's code and message dropped, so
    a failed job's reason could not tell an outage from a bad request."""
    fake.inject("getInventorySummaries", "json_5xx", status=500)
    with pytest.raises(AmazonServerError) as caught:
        await client.sp.get_inventory_summaries(account)
    assert caught.value.status == 500
    assert "InternalFailure" in str(caught.value) and "internal error" in str(caught.value)


@pytest.mark.parametrize(("kind", "operation", "stream", "table"),
                         [STREAMS[0], STREAMS[1], STREAMS[3]], ids=["orders", "fees", "listings"])
async def test_a_checkpointed_token_that_expired_restarts_its_window(
    fast_ctx: SyncContext, fake: FakeAmazon, kind: str, operation: str, stream: str, table: object
) -> None:
    """A sync stopped mid-pagination (a 429, a kill -9, a day of Amazon outage) and resumed
    after its page token expired. Before: Amazon's 400 'nextToken has expired' was an
    AmazonClientError, failing the job at once, and the stale token stayed checkpointed, so
    every later sync of that stream failed the same way, for good. Now the window (or the
    listings pass) starts over, which the upserts make safe."""
    _small_pages(fake)
    fake.inject(operation, "throttle", skip=1)
    with pytest.raises(AmazonRateLimited):
        await sync_account(fast_ctx, "acct-0", [kind], no_progress, run_id="r1")
    assert (fast_ctx.storage.sync_state("acct-0", stream).cursor or {}).get("token")
    fake.clock.advance(fake.orders_token_ttl + 60)
    await asyncio.wait_for(sync_account(fast_ctx, "acct-0", [kind], no_progress, run_id="r1"), DEADLINE)
    assert fast_ctx.storage.count(table, "acct-0") == _expected(fake, stream)  # type: ignore[arg-type]
    assert not (fast_ctx.storage.sync_state("acct-0", stream).cursor or {}).get("token")


# -- flat-file report documents -------------------------------------------------------


def test_a_tsv_with_a_utf8_bom_keys_its_first_column_by_name() -> None:
    """Before: the first header was '\\ufeffitem-name', so row['item-name'] raised KeyError."""
    doc = "\ufeffitem-name\tseller-sku\tprice\r\nMug\tSKU-1\t9.99\r\n".encode()
    assert parse_tsv(doc) == [{"item-name": "Mug", "seller-sku": "SKU-1", "price": "9.99"}]


def test_a_cp1252_tsv_with_crlf_and_a_quote_in_a_field() -> None:
    doc = 'item-name\tseller-sku\r\n12" Pan \u2013 steel\tSKU-2\r\n'.encode("cp1252")
    assert parse_tsv(doc) == [{"item-name": '12" Pan \u2013 steel', "seller-sku": "SKU-2"}]


def test_a_short_row_is_padded_and_a_long_row_is_an_error() -> None:
    """Amazon drops trailing empty columns; a row longer than the header would shift every
    value into the wrong column. Before: a short row had None values and a long one a None
    key (both against the declared dict[str, str]), silently."""
    short = b"a\tb\tc\r\n1\t2\r\n"
    assert parse_tsv(short) == [{"a": "1", "b": "2", "c": ""}]
    with pytest.raises(AmazonDecodeError) as caught:
        parse_tsv(b"a\tb\r\n1\t2\t3\r\n")
    assert "row 2" in str(caught.value)


def test_an_empty_document_has_no_rows_and_a_gzip_one_decodes() -> None:
    assert parse_tsv(b"") == []
    assert parse_tsv(gzip.decompress(gzip.compress(b"a\tb\n1\t2\n"))) == [{"a": "1", "b": "2"}]


# -- Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("7", 7.0), ("0", 0.0), ("-3", 0.0), ("nan", None), ("inf", None), ("1e400", None),
    ("86400", 180.0), ("soon", None),
])
def test_retry_after_is_finite_and_bounded(value: str, expected: float | None) -> None:
    """Before: 'inf' and '1e400' gave an infinite delay, and a day-long value parked an
    account's syncs for a day; the delay is now at most the longest throttle delay (180 s),
    after which the job asks again."""
    response = httpx.Response(429, headers={"retry-after": value})
    assert retry_after(response) == expected


def test_retry_after_as_an_http_date() -> None:
    from email.utils import format_datetime

    from processors.fake_amazon.clock import FakeClock

    when = FakeClock().now() + timedelta(seconds=30)
    got = retry_after(httpx.Response(429, headers={"retry-after": format_datetime(when, usegmt=True)}))
    assert got is not None and 25 <= got <= 31


# -- a sync stopped dead mid-pagination --------------------------------------------------


async def test_a_sync_stopped_dead_mid_pagination_resumes_without_loss_or_duplicates(
    fast_ctx: SyncContext, fake: FakeAmazon
) -> None:
    """The fourth page of searchOrders hangs and the sync is cancelled there (what a kill -9
    leaves: nothing after the last await ran). A new run resumes at that page, and stores
    every order and item once."""
    fake.inject("searchOrders", "slow", delay=60, skip=3)
    task = asyncio.create_task(sync_account(fast_ctx, "acct-0", ["orders"], no_progress, run_id="r1"))
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while fake.calls("searchOrders") < 4:
        assert not task.done(), task
        assert asyncio.get_running_loop().time() < deadline, "the fourth page was never asked for"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake.faults.clear()
    await asyncio.wait_for(sync_account(fast_ctx, "acct-0", ["orders"], no_progress, run_id="r2"), DEADLINE)
    orders = fake.data[0].orders
    assert fast_ctx.storage.count(schema.orders, "acct-0") == len(orders)
    assert fast_ctx.storage.count(schema.order_items, "acct-0") == sum(len(o["orderItems"]) for o in orders)
    pages = -(-len(orders) // 100)
    assert fake.calls("searchOrders") == 3 + (pages - 3) + 1  # pages 4.. asked twice: once cut off


# -- odd records -------------------------------------------------------------------------


def _last_shipped_us_order(fake: FakeAmazon) -> dict[str, Any]:
    shipped = [o for o in fake.data[0].orders if o["fulfillment"]["fulfillmentStatus"] == "SHIPPED"
               and o["salesChannel"]["marketplaceId"] == US]
    return shipped[-1]


US = "ATVPDKIKX0DER"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_negative_quantity_is_a_clear_error_not_negative_units(
    fast_ctx: SyncContext, fake: FakeAmazon
) -> None:
    """Before: quantityOrdered -2 was stored, and the day's units and revenue went down by
    it, silently."""
    orders = copy.deepcopy(fake.data[0].orders)
    target = next(o for o in orders if o["orderId"] == _last_shipped_us_order(fake)["orderId"])
    target["orderItems"][0]["quantityOrdered"] = -2
    fake.set_records(0, orders=orders)
    with pytest.raises(AmazonDecodeError) as caught:
        await asyncio.wait_for(sync_account(fast_ctx, "acct-0", ["orders"], no_progress), DEADLINE)
    assert "quantityOrdered" in str(caught.value)


async def test_odd_unicode_and_extra_fields_are_stored_as_sent(
    fast_ctx: SyncContext, fake: FakeAmazon
) -> None:
    orders = copy.deepcopy(fake.data[0].orders)
    target = next(o for o in orders if o["orderId"] == _last_shipped_us_order(fake)["orderId"])
    title = "Tasse \u2615 \U0001f600 \u05e2\u05d1\u05e8\u05d9\u05ea e\u0301 \u200b<b>&amp;</b>"
    target["orderItems"][0]["product"]["title"] = title
    target["orderItems"][0]["product"]["unknownNewField"] = {"x": [1, None]}
    target["buyerInfo"] = None
    fake.set_records(0, orders=orders)
    await asyncio.wait_for(sync_account(fast_ctx, "acct-0", ["orders"], no_progress), DEADLINE)
    item_id = target["orderItems"][0]["orderItemId"]
    stored = [r for r in fast_ctx.storage.rows(schema.order_items, "acct-0") if r["order_item_id"] == item_id]
    assert [r["title"] for r in stored] == [title]


async def test_an_item_in_another_currency_is_counted_consistently_or_flagged(
    fast_ctx: SyncContext, fake: FakeAmazon
) -> None:
    """An order item priced in another currency than its marketplace's was left out of
    revenue but counted in units and orders: the day's figures disagreed. It counts in
    none of them now (an order counts if any of its items does)."""
    from zoneinfo import ZoneInfo

    from processors.sync_logic import build_daily_report

    order = _last_shipped_us_order(fake)
    day = parse_time(order["createdTime"]).astimezone(ZoneInfo("America/Los_Angeles")).date()
    await sync_account(fast_ctx, "acct-0", ["orders"], no_progress)
    [before] = await build_daily_report(fast_ctx, "acct-0", day, US)
    orders = copy.deepcopy(fake.data[0].orders)
    target = next(o for o in orders if o["orderId"] == order["orderId"])
    item = target["orderItems"][0]
    item["product"]["price"]["unitPrice"]["currencyCode"] = "CAD"
    fake.set_records(0, orders=orders)
    with fast_ctx.storage.engine.begin() as conn:
        conn.execute(schema.sync_watermarks.delete())
    await sync_account(fast_ctx, "acct-0", ["orders"], no_progress)
    [after] = await build_daily_report(fast_ctx, "acct-0", day, US)
    left_out = Decimal(item["product"]["price"]["unitPrice"]["amount"]) * item["quantityOrdered"]
    assert after.revenue == before.revenue - left_out
    assert after.units == before.units - item["quantityOrdered"]
    expected_orders = before.orders - (1 if len(target["orderItems"]) == 1 else 0)
    assert after.orders == expected_orders


def test_a_report_document_is_gunzipped_within_a_bound() -> None:
    """A report document was gunzipped whole (gzip.decompress): a small download that
    inflates a thousandfold (a gzip bomb, or a report far past a day's) took the worker's
    memory before anything could refuse it. It is inflated up to
    ClientSettings.document_max_bytes, then refused with a clear error; every gzip member
    is read, and a bad or cut stream is a decode error too."""
    import gzip

    from processors.amazon.errors import AmazonDecodeError
    from processors.amazon.report_documents import gunzip_bounded

    bomb = gzip.compress(b"\0" * 20_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(AmazonDecodeError, match="over 1,000,000 bytes uncompressed"):
        gunzip_bounded(bomb, "downloadAdsReport", 1_000_000)
    two = gzip.compress(b"a\tb\n") + gzip.compress(b"1\t2\n")
    assert gunzip_bounded(two, "op", 1000) == b"a\tb\n1\t2\n"
    assert gunzip_bounded(gzip.compress(b"x" * 1000), "op", 1000) == b"x" * 1000
    with pytest.raises(AmazonDecodeError, match="bad gzip"):
        gunzip_bounded(b"not gzip at all", "op", 1000)
    with pytest.raises(AmazonDecodeError, match="ends early"):
        gunzip_bounded(gzip.compress(b"y" * 5000)[:-10], "op", 10_000)
