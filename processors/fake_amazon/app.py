"""The Starlette application that serves every fake Amazon host from one port."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from processors.fake_amazon.routes import (
    ads,
    control,
    finances,
    inventory,
    listings,
    lwa,
    orders,
    reports,
    sellers,
)
from processors.fake_amazon.state import FakeAmazon


def build_app(fake: FakeAmazon) -> Starlette:
    route_list: list[BaseRoute] = [Route("/__fake/health", _health, methods=["GET"])]
    for module in (lwa, orders, finances, inventory, listings, reports, sellers, ads, control):
        route_list.extend(module.routes(fake))
    app = Starlette(routes=route_list)
    app.state.fake = fake
    return app


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})
