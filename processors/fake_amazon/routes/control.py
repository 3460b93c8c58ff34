"""``/__fake/*``: drive the fake over HTTP when it runs in another process (demo, workers).

In-process tests use the ``FakeAmazon`` object directly instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, get_args

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from processors.fake_amazon.faults import Fault, FaultAction
from processors.fake_amazon.state import FakeAmazon

_FAULT_FIELDS = {"operation", "action", "times", "skip", "seller", "status", "delay", "retry_after"}


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    body = json.loads(raw) if raw else {}
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def routes(fake: FakeAmazon) -> list[Route]:
    async def sellers(request: Request) -> Response:
        return JSONResponse([asdict(s) for s in fake.sellers])

    async def add_fault(request: Request) -> Response:
        try:
            body = await _json(request)
            unknown = set(body) - _FAULT_FIELDS
            if unknown or body.get("action") not in get_args(FaultAction):
                raise ValueError(f"bad fault {body!r}; actions: {get_args(FaultAction)}")
            fault = fake.faults.add(Fault(**body))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(fault), status_code=201)

    async def revoke(request: Request) -> Response:
        fake.revoke(int((await _json(request))["seller"]))
        return Response(status_code=204)

    async def expire_tokens(request: Request) -> Response:
        seller = (await _json(request)).get("seller")
        fake.expire_tokens(None if seller is None else int(seller))
        return Response(status_code=204)

    async def advance_clock(request: Request) -> Response:
        fake.clock.advance(float((await _json(request))["seconds"]))
        return Response(status_code=204)

    async def reset(request: Request) -> Response:
        fake.reset()
        return Response(status_code=204)

    return [
        Route("/__fake/sellers", sellers, methods=["GET"]),
        Route("/__fake/faults", add_fault, methods=["POST"]),
        Route("/__fake/revoke", revoke, methods=["POST"]),
        Route("/__fake/expire-tokens", expire_tokens, methods=["POST"]),
        Route("/__fake/clock/advance", advance_clock, methods=["POST"]),
        Route("/__fake/reset", reset, methods=["POST"]),
    ]
