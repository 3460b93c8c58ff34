"""Finances API 2024-06-19: GET /finances/2024-06-19/transactions (listTransactions)."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.fake_amazon import responses
from processors.fake_amazon.dataset import Json
from processors.fake_amazon.guard import guarded
from processors.fake_amazon.paging import page_of
from processors.fake_amazon.params import BadParam, bound_query, parse_iso, required, timestamp
from processors.fake_amazon.state import FakeAmazon

_FILTERS = ["postedAfter", "postedBefore", "marketplaceId", "transactionStatus"]


def routes(fake: FakeAmazon) -> list[Route]:
    async def list_transactions(request: Request, seller: int) -> Response:
        required(request, "postedAfter")
        posted_after = timestamp(request, "postedAfter")
        posted_before = timestamp(request, "postedBefore")
        latest = fake.clock.now() - timedelta(minutes=2)
        assert posted_after is not None
        if posted_after > latest:
            raise BadParam("postedAfter must be at least two minutes before the time of the request.")
        if posted_before is not None and posted_before > latest:
            raise BadParam("postedBefore must be at least two minutes before the time of the request.")
        high = posted_before or latest
        marketplace = request.query_params.get("marketplaceId")
        status = request.query_params.get("transactionStatus")
        matching = [
            t
            for t in fake.data[seller].transactions
            if posted_after <= parse_iso(t["postedDate"]) < high
            and (marketplace is None or t["marketplaceDetails"]["marketplaceId"] == marketplace)
            and (status is None or t["transactionStatus"] == status)
        ]
        chunk, next_token = page_of(
            fake,
            matching,
            token=request.query_params.get("nextToken"),
            query=bound_query(request, _FILTERS),
            size=fake.transactions_page_size,
            ttl=fake.orders_token_ttl,
        )
        payload: Json = {"transactions": chunk}
        if next_token:
            payload["nextToken"] = next_token
        return responses.sp_json({"payload": payload})

    return [
        Route(
            "/finances/2024-06-19/transactions",
            guarded(fake, "listTransactions", "sp", list_transactions),
            methods=["GET"],
        )
    ]
