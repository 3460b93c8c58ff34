"""Orders API 2026-01-01: GET /orders/2026-01-01/orders (searchOrders)."""

from __future__ import annotations

import copy
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.fake_amazon import responses
from processors.fake_amazon.dataset import Json, iso
from processors.fake_amazon.guard import guarded
from processors.fake_amazon.paging import page_of
from processors.fake_amazon.params import (
    BadParam,
    bound_query,
    csv_list,
    int_param,
    parse_iso,
    timestamp,
)
from processors.fake_amazon.state import FakeAmazon

_FILTERS = [
    "createdAfter",
    "createdBefore",
    "lastUpdatedAfter",
    "lastUpdatedBefore",
    "marketplaceIds",
    "fulfillmentStatuses",
    "includedData",
    "maxResultsPerPage",
]


def routes(fake: FakeAmazon) -> list[Route]:
    async def search_orders(request: Request, seller: int) -> Response:
        created_after = timestamp(request, "createdAfter")
        updated_after = timestamp(request, "lastUpdatedAfter")
        if (created_after is None) == (updated_after is None):
            raise BadParam("Exactly one of createdAfter and lastUpdatedAfter must be provided.")
        created_before = timestamp(request, "createdBefore")
        updated_before = timestamp(request, "lastUpdatedBefore")
        if (created_after and updated_before) or (updated_after and created_before):
            raise BadParam(
                "createdAfter/createdBefore cannot be combined with lastUpdatedAfter/lastUpdatedBefore."
            )
        latest = fake.clock.now() - timedelta(minutes=2)
        for bound in (created_before, updated_before):
            if bound is not None and bound > latest:
                raise BadParam("The before date must be at least two minutes before the time of the request.")
        size = int_param(request, "maxResultsPerPage", 100, 1, 100)
        marketplaces = set(csv_list(request, "marketplaceIds"))
        statuses = set(csv_list(request, "fulfillmentStatuses"))
        included = set(csv_list(request, "includedData"))
        field, low, high = (
            ("createdTime", created_after, created_before or latest)
            if created_after
            else ("lastUpdatedTime", updated_after, updated_before or latest)
        )
        assert low is not None
        matching = [
            o
            for o in fake.data[seller].orders
            if low <= parse_iso(o[field]) <= high
            and (not marketplaces or o["salesChannel"]["marketplaceId"] in marketplaces)
            and (not statuses or o["fulfillment"]["fulfillmentStatus"] in statuses)
        ]
        matching.sort(key=lambda o: (o[field], o["orderId"]))
        chunk, next_token = page_of(
            fake,
            matching,
            token=request.query_params.get("paginationToken"),
            query=bound_query(request, _FILTERS),
            size=size,
            ttl=fake.orders_token_ttl,
        )
        body: Json = {"orders": [_shape(o, included) for o in chunk]}
        if next_token:
            body["pagination"] = {"nextToken": next_token}
        body["createdBefore" if created_after else "lastUpdatedBefore"] = iso(high)
        return responses.sp_json(body)

    return [
        Route(
            "/orders/2026-01-01/orders",
            guarded(fake, "searchOrders", "sp", search_orders),
            methods=["GET"],
        )
    ]


def _shape(order: Json, included: set[str]) -> Json:
    """Drop the datasets that were not asked for, as Amazon does."""
    shaped = copy.deepcopy(order)
    for key, dataset in (("proceeds", "PROCEEDS"), ("fulfillment", "FULFILLMENT")):
        if dataset not in included:
            shaped.pop(key, None)
            for item in shaped["orderItems"]:
                item.pop(key, None)
    return shaped
