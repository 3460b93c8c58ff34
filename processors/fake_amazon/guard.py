"""Wraps each route with what Amazon's gateway does first: auth, faults, usage plans."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from processors.fake_amazon import responses
from processors.fake_amazon.faults import Fault
from processors.fake_amazon.params import BadParam
from processors.fake_amazon.state import FakeAmazon

Auth = Literal["none", "sp", "ads_profiles", "ads"]
Handler = Callable[[Request, int], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class DroppedConnection(Response):
    """Promises a body, sends a fragment, then fails so the server closes the socket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"payload": {', "more_body": True})
        raise ConnectionAbortedError("fake_amazon: dropped connection on purpose")


class TrickledResponse(Response):
    """A 200 whose JSON body arrives one small chunk every ``delay`` seconds."""

    def __init__(self, body: bytes, delay: float, chunk: int = 16) -> None:
        super().__init__(body, media_type="application/json")
        self._delay, self._chunk = delay, chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for start in range(0, len(self.body), self._chunk):
            await send({"type": "http.response.body", "body": self.body[start:start + self._chunk],
                        "more_body": True})
            await asyncio.sleep(self._delay)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# The query parameter that carries each paged operation's token.
_TOKEN_PARAMS = ("paginationToken", "nextToken", "pageToken")


def _rewrite_page(body: bytes, fault: Fault, request: Request) -> bytes:
    """``repeat_token``: every ``nextToken`` becomes the request's own token (page one keeps
    its own, so the loop starts on page two); ``duplicate_page``: the page's list of records
    (orders, transactions, inventory summaries, listings) holds each record twice."""
    data = json.loads(body)
    sent = next((request.query_params[p] for p in _TOKEN_PARAMS if p in request.query_params), None)

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        if fault.action == "repeat_token" and sent and out.get("nextToken"):
            out["nextToken"] = sent
        if fault.action == "duplicate_page":
            for key in _RECORD_LISTS:
                if isinstance(out.get(key), list):
                    out[key] = out[key] + out[key]
        return out

    return json.dumps(walk(data)).encode()


_RECORD_LISTS = ("orders", "transactions", "inventorySummaries", "items")


def guarded(fake: FakeAmazon, operation: str, auth: Auth, handler: Handler) -> Endpoint:
    is_ads = auth in ("ads", "ads_profiles")

    async def endpoint(request: Request) -> Response:
        seller = _authenticate(fake, auth, request)
        entry = fake.record(request.method, request.url.path, operation,
                            seller if isinstance(seller, int) else None)
        response = await answer(request, seller)
        entry.status = response.status_code
        return response

    async def answer(request: Request, seller: int | Response) -> Response:
        if isinstance(seller, Response):
            return seller
        fault = fake.faults.take(operation, seller)
        if fault is not None:
            early = await _apply_fault(fake, fault, seller, is_ads)
            if early is not None:
                return early
        if fault is not None and fault.action in ("repeat_token", "duplicate_page", "trickle"):
            response = await answer_plainly(request, seller)
            if response.status_code >= 300:
                return response
            body = bytes(response.body)
            if fault.action == "trickle":
                return TrickledResponse(body, fault.delay)
            rewritten = Response(_rewrite_page(body, fault, request), status_code=response.status_code,
                                 media_type="application/json")
            for name in ("x-amzn-RequestId", "x-amzn-RateLimit-Limit"):
                if name in response.headers:
                    rewritten.headers[name] = response.headers[name]
            return rewritten
        return await answer_plainly(request, seller)

    async def answer_plainly(request: Request, seller: int) -> Response:
        wait = fake.plans.take(seller, operation)
        if wait > 0:
            if is_ads:
                return responses.ads_error(429, "429", "Too Many Requests", retry_after=wait)
            return responses.sp_throttled()
        try:
            response = await handler(request, seller)
        except BadParam as exc:
            if is_ads:
                return responses.ads_error(400, "400", str(exc))
            return responses.sp_invalid(str(exc))
        plan = fake.plans.plan(operation)
        if plan is not None and not is_ads and response.status_code < 300:
            response.headers["x-amzn-RateLimit-Limit"] = f"{plan[0] * fake.quota_scale:g}"
        return response

    return endpoint


def _authenticate(fake: FakeAmazon, auth: Auth, request: Request) -> int | Response:
    if auth == "none":
        return -1
    if auth == "sp":
        seller = fake.seller_for_token(request.headers.get("x-amz-access-token"))
        if seller is None:
            return responses.sp_unauthorized()
        return seller
    header = request.headers.get("authorization", "")
    # Only a token from the Amazon Ads grant (advertising scope) is accepted here.
    seller = fake.seller_for_token(
        header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None, grant="ads"
    )
    if seller is None:
        return responses.ads_error(401, "UNAUTHORIZED", "Not authorized to access this advertiser")
    if request.headers.get("amazon-advertising-api-clientid") != fake.data[seller].seller.client_id:
        return responses.ads_error(400, "400", "Amazon-Advertising-API-ClientId header is missing or invalid")
    if auth == "ads":
        scope = request.headers.get("amazon-advertising-api-scope")
        if scope is None:
            return responses.ads_error(400, "400", "Amazon-Advertising-API-Scope header is missing")
        if fake.seller_for_profile(scope) != seller:
            return responses.ads_error(403, "403", "Not authorized to access scope " + scope)
    return seller


async def _apply_fault(fake: FakeAmazon, fault: Fault, seller: int, is_ads: bool) -> Response | None:
    if fault.action == "throttle":
        if is_ads:
            return responses.ads_error(429, "429", "Too Many Requests", retry_after=fault.retry_after)
        return responses.sp_throttled()
    if fault.action == "html_5xx":
        return responses.html_error(fault.status)
    if fault.action == "json_5xx":
        if is_ads:
            return responses.ads_error(fault.status, "INTERNAL_ERROR", "Internal error, please retry.")
        return responses.sp_error(fault.status, "InternalFailure",
                                  "We encountered an internal error. Please try again.")
    if fault.action == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.action == "drop":
        return DroppedConnection()
    if fault.action == "garbage":
        return Response(b'{"payload": [truncated', status_code=200, media_type="application/json")
    if fault.action == "expire_token":
        fake.expire_tokens(seller if seller >= 0 else None)
        if is_ads:
            return responses.ads_error(401, "UNAUTHORIZED", "Not authorized to access this advertiser")
        return responses.sp_unauthorized()
    return None
