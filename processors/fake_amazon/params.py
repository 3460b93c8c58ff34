"""Query-string helpers shared by the routes."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request


class BadParam(Exception):
    """A required parameter is missing or malformed; the message is Amazon's wording."""


def csv_list(request: Request, name: str) -> list[str]:
    """Amazon accepts arrays as CSV or as repeated keys; clients use both."""
    values: list[str] = []
    for raw in request.query_params.getlist(name):
        values.extend(v for v in raw.split(",") if v)
    return values


def required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise BadParam(f"Missing required parameter: {name}")
    return value


def timestamp(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadParam(f"Invalid {name}: {raw!r} is not an ISO 8601 date-time") from exc


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadParam(f"Invalid {name}: {raw!r}") from exc
    if not low <= value <= high:
        raise BadParam(f"{name} must be between {low} and {high}")
    return value


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def own_base_url(request: Request) -> str:
    """The address this server listens on, for presigned "S3" URLs.

    Not the Host header: python-amazon-sp-api sends ``endpoint[8:]``, which mangles http URLs.
    """
    server = request.scope.get("server")
    if server:
        return f"http://{server[0]}:{server[1]}"
    return str(request.base_url).rstrip("/")


def bound_query(request: Request, names: list[str]) -> dict[str, str]:
    """The filters a page token is bound to (everything but the token itself)."""
    return {name: ",".join(csv_list(request, name)) for name in names if name in request.query_params}
