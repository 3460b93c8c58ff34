"""FBA Inventory v1: GET /fba/inventory/v1/summaries (getInventorySummaries)."""

from __future__ import annotations

import copy

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.fake_amazon import responses
from processors.fake_amazon.dataset import Json
from processors.fake_amazon.guard import guarded
from processors.fake_amazon.paging import page_of
from processors.fake_amazon.params import BadParam, bound_query, csv_list, required
from processors.fake_amazon.state import FakeAmazon

_FILTERS = [
    "granularityType",
    "granularityId",
    "marketplaceIds",
    "details",
    "sellerSkus",
    "startDateTime",
]


def routes(fake: FakeAmazon) -> list[Route]:
    async def summaries(request: Request, seller: int) -> Response:
        if required(request, "granularityType") != "Marketplace":
            raise BadParam("granularityType must be Marketplace")
        granularity_id = required(request, "granularityId")
        marketplaces = csv_list(request, "marketplaceIds")
        if not marketplaces:
            raise BadParam("Missing required parameter: marketplaceIds")
        if granularity_id not in marketplaces:
            raise BadParam("granularityId must be one of the marketplaceIds")
        details = request.query_params.get("details", "false").lower() == "true"
        skus = set(csv_list(request, "sellerSkus"))
        matching = [s for s in fake.data[seller].inventory if not skus or s["sellerSku"] in skus]
        chunk, next_token = page_of(
            fake,
            matching,
            token=request.query_params.get("nextToken"),
            query=bound_query(request, _FILTERS),
            size=fake.inventory_page_size,
            ttl=fake.inventory_token_ttl,
        )
        shaped = []
        for summary in chunk:
            item = copy.deepcopy(summary)
            if not details:
                item.pop("inventoryDetails", None)
            shaped.append(item)
        body: Json = {
            "payload": {
                "granularity": {"granularityType": "Marketplace", "granularityId": granularity_id},
                "inventorySummaries": shaped,
            }
        }
        if next_token:
            # Unlike most SP-API operations the token sits at the top level here.
            body["pagination"] = {"nextToken": next_token}
        return responses.sp_json(body)

    return [
        Route(
            "/fba/inventory/v1/summaries",
            guarded(fake, "getInventorySummaries", "sp", summaries),
            methods=["GET"],
        )
    ]
