"""Login with Amazon: POST /auth/o2/token (refresh_token grant)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from processors.fake_amazon import responses
from processors.fake_amazon.state import FakeAmazon


def routes(fake: FakeAmazon) -> list[Route]:
    async def token(request: Request) -> Response:
        # The body is application/x-www-form-urlencoded; parse_qsl avoids a multipart dependency.
        fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        fake.record("POST", request.url.path, "lwaToken", None)
        fault = fake.faults.take("lwaToken", None)
        if fault is not None and fault.action == "html_5xx":
            return responses.html_error(fault.status)
        if fields.get("grant_type") != "refresh_token":
            return responses.lwa_error(400, "unsupported_grant_type", "Only refresh_token is supported")
        missing = [k for k in ("client_id", "client_secret", "refresh_token") if not fields.get(k)]
        if missing:
            return responses.lwa_error(400, "invalid_request", "Missing parameter: " + missing[0])
        if not any(d.seller.client_id == fields["client_id"] for d in fake.data):
            return responses.lwa_error(401, "invalid_client", "Client authentication failed")
        found = fake.seller_for_refresh_token(
            fields["client_id"], fields["client_secret"], fields["refresh_token"]
        )
        if found is None or found[0] in fake.revoked:
            return responses.lwa_error(
                400, "invalid_grant", "The request has an invalid grant parameter : refresh_token"
            )
        return JSONResponse(
            {
                "access_token": fake.issue_token(*found),
                "refresh_token": fields["refresh_token"],
                "token_type": "bearer",
                "expires_in": fake.token_ttl,
            },
            headers={"cache-control": "no-store", "pragma": "no-cache"},
        )

    return [Route("/auth/o2/token", token, methods=["POST"])]
