"""Listings Items 2021-08-01: GET /listings/2021-08-01/items/{sellerId} (searchListingsItems)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.fake_amazon import responses
from processors.fake_amazon.dataset import Json
from processors.fake_amazon.guard import guarded
from processors.fake_amazon.paging import page_of
from processors.fake_amazon.params import BadParam, bound_query, csv_list, int_param
from processors.fake_amazon.state import FakeAmazon

_FILTERS = ["marketplaceIds", "includedData", "pageSize", "identifiers", "identifiersType"]
_DATASETS = {
    "summaries",
    "offers",
    "fulfillmentAvailability",
    "attributes",
    "issues",
    "relationships",
}


def routes(fake: FakeAmazon) -> list[Route]:
    async def search(request: Request, seller: int) -> Response:
        if request.path_params["seller_id"] != fake.data[seller].seller.seller_id:
            return responses.sp_unauthorized("The seller id does not match the access token.")
        if not csv_list(request, "marketplaceIds"):
            raise BadParam("Missing required parameter: marketplaceIds")
        size = int_param(request, "pageSize", 10, 1, 20)
        included = set(csv_list(request, "includedData")) or {"summaries"}
        unknown = included - _DATASETS
        if unknown:
            raise BadParam("Invalid includedData: " + ",".join(sorted(unknown)))
        items = fake.data[seller].listings
        chunk, next_token = page_of(
            fake,
            items,
            token=request.query_params.get("pageToken"),
            query=bound_query(request, _FILTERS),
            size=size,
            ttl=fake.orders_token_ttl,
        )
        shaped = [{"sku": i["sku"], **{k: v for k, v in i.items() if k in included}} for i in chunk]
        body: Json = {"numberOfResults": len(items), "items": shaped}
        if next_token:
            body["pagination"] = {"nextToken": next_token}
        return responses.sp_json(body)

    return [
        Route(
            "/listings/2021-08-01/items/{seller_id}",
            guarded(fake, "searchListingsItems", "sp", search),
            methods=["GET"],
        )
    ]
