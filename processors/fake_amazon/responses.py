"""Amazon's error bodies and headers, byte for byte where it matters."""

from __future__ import annotations

import math
import uuid
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, Response

QUOTA_EXCEEDED = "You exceeded your quota for the requested resource."
HTML_503 = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
    "<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "</body>\r\n</html>\r\n"
)


def request_id() -> str:
    return str(uuid.uuid4())


def sp_json(body: Any, status: int = 200, rate_limit: float | None = None) -> Response:
    headers = {"x-amzn-RequestId": request_id()}
    if rate_limit is not None:
        headers["x-amzn-RateLimit-Limit"] = f"{rate_limit:g}"
    return JSONResponse(body, status_code=status, headers=headers)


def sp_error(status: int, code: str, message: str, details: str = "") -> Response:
    body = {"errors": [{"code": code, "message": message, "details": details}]}
    return JSONResponse(body, status_code=status, headers={"x-amzn-RequestId": request_id()})


def sp_unauthorized(details: str = "The access token you provided has expired.") -> Response:
    return sp_error(403, "Unauthorized", "Access to requested resource is denied.", details)


def sp_throttled() -> Response:
    # The SP-API sends no Retry-After; clients must back off on their own.
    return sp_error(429, "QuotaExceeded", QUOTA_EXCEEDED)


def sp_invalid(message: str) -> Response:
    return sp_error(400, "InvalidInput", message)


def ads_error(status: int, code: str, details: str, retry_after: float | None = None) -> Response:
    headers = {"x-amzn-RequestId": request_id()}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse({"code": code, "details": details}, status_code=status, headers=headers)


def html_error(status: int) -> Response:
    return HTMLResponse(HTML_503.replace("503", str(status)), status_code=status)


def lwa_error(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
