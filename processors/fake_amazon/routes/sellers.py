"""Sellers v1: GET /sellers/v1/marketplaceParticipations."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.fake_amazon import responses
from processors.fake_amazon.guard import guarded
from processors.fake_amazon.state import FakeAmazon


def routes(fake: FakeAmazon) -> list[Route]:
    async def participations(request: Request, seller: int) -> Response:
        return responses.sp_json({"payload": fake.data[seller].participations})

    return [
        Route(
            "/sellers/v1/marketplaceParticipations",
            guarded(fake, "getMarketplaceParticipations", "sp", participations),
            methods=["GET"],
        )
    ]
