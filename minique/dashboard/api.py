"""The JSON API under ``/api``: everything the pages show or do, plus its OpenAPI description.

Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with a 4xx status: 400 for a
bad parameter, 404 for an unknown queue, job or group, 409 for an action the job's state does
not allow, 422 for a job whose stored fields cannot be decoded, 503 when Redis is down.

Queue names and ids in paths (jobs, groups, schedulers, workers) are written as they are
when they hold only letters, digits and ``. _ : @ -``; any other is ``~`` + the unpadded
base64url of its UTF-8 bytes (``acme/2024/report`` is ``~YWNtZS8yMDI0L3JlcG9ydA``), so a
name or id with ``/`` is reachable too.
In a queue whose data is hidden, job data, return values, error messages, stack traces and
logs are never sent: an error shows only its exception type.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from .. import __version__
from ..errors import InvalidJobState, JobCorrupted, JobNotFound
from ..options import validate_group
from ..queue import STATES
from .ids import decode_id
from .service import CLEAN_STATES, GROUP_ORDERS, ApiError, Dashboard

log = logging.getLogger("minique.dashboard")
Handler = Callable[[Request], Awaitable[Response]]
MAX_BODY = 256 * 1024


def path_id(request: Request, name: str) -> str:
    """A queue, job, group, scheduler or worker id from the path, in either form of
    ``ids.py``."""
    try:
        return decode_id(request.path_params[name])
    except ValueError as exc:
        raise ApiError(400, "bad_id", str(exc)) from None


def dashboard(request: Request) -> Dashboard:
    d: Dashboard = request.app.state.dashboard
    return d


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def map_error(exc: Exception) -> tuple[int, str, str] | None:
    """The (status, code, message) of an error a client caused, or None for a real bug."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, InvalidJobState):
        return 409, "invalid_state", str(exc)
    if isinstance(exc, JobNotFound):
        return 404, "job_not_found", str(exc)
    if isinstance(exc, JobCorrupted):
        return 422, "job_corrupted", str(exc)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionError | TimeoutError):
        return 503, "redis_unavailable", f"Redis is unavailable: {exc}"
    if isinstance(exc, ValueError | TypeError):
        return 400, "bad_parameter", str(exc)
    if isinstance(exc, RedisError):
        return 502, "redis_error", f"Redis refused the command: {exc}"
    return None


def api_endpoint(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
    """Runs ``fn`` and returns its value as JSON; known errors become clear 4xx answers."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            result = await fn(request)
        except Exception as exc:
            mapped = map_error(exc)
            if mapped is None:
                raise
            return error_response(*mapped)
        return result if isinstance(result, Response) else JSONResponse(result)

    return wrapper


# ----- parameters --------------------------------------------------------------------------


def q_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer, got {raw!r}") from None


def q_bool(request: Request, name: str, default: bool = False) -> bool:
    return as_bool(name, request.query_params.get(name), default)


def as_bool(name: str, raw: Any, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, "bad_parameter", f"{name} must be true or false, got {raw!r}")


def as_int(name: str, raw: Any, default: int) -> int:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise ApiError(400, "bad_parameter", f"{name} must be an integer, got {raw!r}")
    try:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError
        return int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_parameter", f"{name} must be an integer, got {raw!r}") from None


def as_float(name: str, raw: Any, default: float) -> float:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise ApiError(400, "bad_parameter", f"{name} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_parameter", f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ApiError(400, "bad_parameter", f"{name} must be a finite number")
    return value


async def read_body(request: Request) -> dict[str, Any]:
    """A JSON object body, or a form (``ids`` may repeat); an empty body is ``{}``."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # Read as it streams in and refused past the limit: request.body() took a body of any
    # size into memory first.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "body_too_large", f"request bodies are at most {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    if ctype == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise ApiError(400, "bad_form", "the form body is not UTF-8") from None
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k == "ids":
                out.setdefault("ids", []).append(v)
            else:
                out[k] = v
        return out
    if ctype.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", "send JSON or a url-encoded form")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return body


# ----- endpoints ---------------------------------------------------------------------------


@api_endpoint
async def get_csrf(request: Request) -> Any:
    return {"token": request.scope.get("minique.csrf", ""), "header": "X-CSRF-Token",
            "cookie": "minique_csrf"}


@api_endpoint
async def get_overview(request: Request) -> Any:
    return await dashboard(request).overview(q_int(request, "minutes", 60))


@api_endpoint
async def list_queues(request: Request) -> Any:
    return {"queues": await dashboard(request).queues()}


@api_endpoint
async def get_queue(request: Request) -> Any:
    d = dashboard(request)
    minutes = q_int(request, "minutes", 60)
    name = path_id(request, "queue")
    info = await d.queue_info(name, minutes=max(1, minutes))
    info["throughput"] = await d.throughput([name], minutes)
    info["worker_list"] = await d.workers([name])
    return info


@api_endpoint
async def get_throughput(request: Request) -> Any:
    d = dashboard(request)
    name = path_id(request, "queue")
    await d.queue(name)
    return await d.throughput([name], q_int(request, "minutes", 60))


async def only_queue(request: Request) -> list[str] | None:
    """The ``?queue=`` filter as a list of one known queue; None (every queue) without it."""
    name = request.query_params.get("queue")
    if not name:
        return None
    await dashboard(request).queue(name)
    return [name]


@api_endpoint
async def list_workers(request: Request) -> Any:
    return {"workers": await dashboard(request).workers(await only_queue(request))}


@api_endpoint
async def list_jobs(request: Request) -> Any:
    return await dashboard(request).jobs(
        path_id(request, "queue"), request.query_params.get("state", "waiting"),
        page=q_int(request, "page", 1), page_size=q_int(request, "page_size", 25),
        search=request.query_params.get("q", ""))


@api_endpoint
async def get_job(request: Request) -> Any:
    return await dashboard(request).job(path_id(request, "queue"), path_id(request, "job_id"),
                                        full=q_bool(request, "full"))


@api_endpoint
async def get_job_logs(request: Request) -> Any:
    return await dashboard(request).job_logs(
        path_id(request, "queue"), path_id(request, "job_id"),
        q_int(request, "start", 0), q_int(request, "end", -1), full=q_bool(request, "full"))


@api_endpoint
async def job_action(request: Request) -> Any:
    await read_body(request)
    return await dashboard(request).job_action(
        path_id(request, "queue"), path_id(request, "job_id"), request.path_params["action"])


@api_endpoint
async def delete_job(request: Request) -> Any:
    return await dashboard(request).job_action(
        path_id(request, "queue"), path_id(request, "job_id"), "remove")


@api_endpoint
async def queue_action(request: Request) -> Any:
    d = dashboard(request)
    name = path_id(request, "queue")
    action = request.path_params["action"]
    body = await read_body(request)
    if action in ("pause", "resume"):
        return await d.pause(name, action == "pause")
    if action == "drain":
        return await d.drain(name, as_bool("delayed", body.get("delayed"), False))
    if action == "clean":
        return await d.clean(name, str(body.get("state", "completed")),
                             as_float("grace", body.get("grace"), 0.0),
                             as_int("limit", body.get("limit"), 1000))
    if action == "retry":
        return await d.retry_all(name, str(body.get("state", "failed")))
    if action == "promote":
        return await d.promote_all(name)
    raise ApiError(404, "unknown_action", f"no queue action {action!r}")


@api_endpoint
async def list_groups(request: Request) -> Any:
    return await dashboard(request).groups(
        path_id(request, "queue"), by=request.query_params.get("by", "waiting"),
        page=q_int(request, "page", 1), page_size=q_int(request, "page_size", 50))


@api_endpoint
async def get_group(request: Request) -> Any:
    return await dashboard(request).group(
        path_id(request, "queue"), group_param(request), page=q_int(request, "page", 1),
        page_size=q_int(request, "page_size", 25))


@api_endpoint
async def group_action(request: Request) -> Any:
    await read_body(request)
    return await dashboard(request).group_action(
        path_id(request, "queue"), group_param(request), request.path_params["action"])


def group_param(request: Request) -> str:
    group = path_id(request, "group")
    try:
        return validate_group(group)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "bad_group", str(exc)) from None


@api_endpoint
async def get_worker(request: Request) -> Any:
    return await dashboard(request).worker(path_id(request, "worker_id"))


@api_endpoint
async def list_schedulers(request: Request) -> Any:
    return await dashboard(request).schedulers(await only_queue(request))


@api_endpoint
async def queue_schedulers(request: Request) -> Any:
    d = dashboard(request)
    name = path_id(request, "queue")
    await d.queue(name)
    return await d.schedulers([name])


@api_endpoint
async def scheduler_action(request: Request) -> Any:
    await read_body(request)
    return await dashboard(request).scheduler_action(
        path_id(request, "queue"), path_id(request, "scheduler_id"), request.path_params["action"])


@api_endpoint
async def get_dead_letters(request: Request) -> Any:
    return await dashboard(request).dead_letters(
        path_id(request, "queue"),
        include_all=q_bool(request, "include_all", q_bool(request, "all")),
        per_group=q_int(request, "per_group", 50))


@api_endpoint
async def dead_letter_action(request: Request) -> Any:
    body = await read_body(request)
    ids = body.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise ApiError(400, "bad_parameter", "ids must be a list of job id strings")
    group = body.get("group")
    if group is not None and not isinstance(group, str):
        raise ApiError(400, "bad_parameter", "group must be a string")
    return await dashboard(request).dead_letter_action(
        path_id(request, "queue"), request.path_params["action"], ids=ids or None,
        group=group or None,
        # "include_all", as the listing's reply names it; "all" is its first spelling.
        include_all=as_bool("include_all", body.get("include_all"),
                            as_bool("all", body.get("all"), False)))


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_schema(request.scope.get("minique.base", "")))


def unmatched_endpoint(known: list[Route]) -> Handler:
    """The catch-all under /api/: 405 with ``Allow`` (RFC 9110 §15.5.6) when a known endpoint
    has the path but not the method, else 404."""

    async def unmatched(request: Request) -> Response:
        allowed = sorted({m for route in known if route.matches(request.scope)[0] is Match.PARTIAL
                          for m in route.methods or ()})
        if allowed:
            response = error_response(405, "method_not_allowed",
                                      f"{request.method} is not allowed on {request.url.path}; "
                                      f"allowed: {', '.join(allowed)}")
            response.headers["allow"] = ", ".join(allowed)
            return response
        return error_response(404, "not_found",
                              f"no API endpoint {request.method} {request.url.path}; the "
                              f"endpoints are listed at {request.scope.get('root_path', '')}"
                              "/api/openapi.json")

    return unmatched


# ----- the routes and their description ----------------------------------------------------


@dataclass
class Op:
    method: str
    path: str
    endpoint: Handler
    summary: str
    params: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, in, type, doc
    body: dict[str, Any] | None = None
    tag: str = "queues"


Q = ("queue", "path", "string", "queue name")
J = ("job_id", "path", "string", "job id")
G = ("group", "path", "string", "group id (written like job ids: see above)")
MINUTES = ("minutes", "query", "integer", "minutes of throughput, 1 to 120 (default 60)")
STATE_ENUM = list(STATES)

OPS: list[Op] = [
    Op("GET", "/api/csrf", get_csrf, "The CSRF token to send as X-CSRF-Token (also set as a cookie)",
       tag="meta"),
    Op("GET", "/api/overview", get_overview, "Every queue's counts, the summed throughput and the "
       "live workers", [MINUTES]),
    Op("GET", "/api/queues", list_queues, "Every queue: counts by state, paused, workers, totals"),
    Op("GET", "/api/queues/{queue}", get_queue, "One queue: counts, throughput, workers", [Q, MINUTES]),
    Op("GET", "/api/queues/{queue}/throughput", get_throughput,
       "Completed and failed jobs per minute", [Q, MINUTES]),
    Op("GET", "/api/workers", list_workers, "Live workers (host, pid, queues, running jobs, last seen)",
       [("queue", "query", "string", "only the workers of this queue")], tag="workers"),
    Op("GET", "/api/workers/{worker_id}", get_worker, "One live worker process (host:pid, or a "
       "worker's name): its queues, counters, and the jobs it runs now",
       [("worker_id", "path", "string", "host:pid or a worker name (see ids below)")], tag="workers"),
    Op("GET", "/api/schedulers", list_schedulers, "Every job scheduler: pattern or interval, time "
       "zone, next and last run, iterations, the pending firing",
       [("queue", "query", "string", "only the schedulers of this queue")], tag="schedulers"),
    Op("GET", "/api/queues/{queue}/schedulers", queue_schedulers, "The job schedulers of a queue",
       [Q], tag="schedulers"),
    Op("POST", "/api/queues/{queue}/schedulers/{scheduler_id}/{action}", scheduler_action,
       "A scheduler action: run (add one job now from its template; the schedule is unchanged) "
       "or remove (the scheduler and its pending firing)",
       [Q, ("scheduler_id", "path", "string", "scheduler id"),
        ("action", "path", "string", "run or remove")], tag="schedulers"),
    Op("GET", "/api/queues/{queue}/jobs", list_jobs, "A page of the jobs of one state", [
        Q, ("state", "query", "string", "waiting, active, completed, failed or delayed"),
        ("page", "query", "integer", "page number from 1"),
        ("page_size", "query", "integer", "1 to 200 (default 25)"),
        ("q", "query", "string", "an exact job id, or part of a job name")], tag="jobs"),
    Op("GET", "/api/queues/{queue}/jobs/{job_id}", get_job, "A job: data, options, state, "
       "progress, attempts, timestamps, logs, return value, error",
       [Q, J, ("full", "query", "boolean", "do not cut large fields")], tag="jobs"),
    Op("GET", "/api/queues/{queue}/jobs/{job_id}/logs", get_job_logs, "A job's log lines",
       [Q, J, ("start", "query", "integer", "first line (negative: from the end)"),
        ("end", "query", "integer", "last line, inclusive (default -1: the last); at most "
         "1,000 lines per request"),
        ("full", "query", "boolean", "do not cut long lines")],
       tag="jobs"),
    Op("POST", "/api/queues/{queue}/jobs/{job_id}/{action}", job_action,
       "A job action: retry (failed/completed), remove, promote (delayed), cancel (active)",
       [Q, J, ("action", "path", "string", "retry, remove, promote or cancel")], tag="jobs"),
    Op("DELETE", "/api/queues/{queue}/jobs/{job_id}", delete_job, "Removes a job", [Q, J], tag="jobs"),
    Op("POST", "/api/queues/{queue}/{action}", queue_action,
       "A queue action: pause, resume, drain {delayed}, clean {state, grace, limit}, "
       "retry {state}, promote",
       [Q, ("action", "path", "string", "pause, resume, drain, clean, retry or promote")],
       body={"type": "object", "properties": {
           "delayed": {"type": "boolean", "description": "drain: delayed jobs too"},
           "state": {"type": "string", "enum": [*CLEAN_STATES],
                     "description": "clean: which state; retry: failed or completed"},
           "grace": {"type": "number", "description": "clean: only jobs older than this (s)"},
           "limit": {"type": "integer", "description": "clean: at most this many"}}}),
    Op("GET", "/api/queues/{queue}/groups", list_groups,
       "A page of the queue's groups in one ordering, with the counts of each ordering and the "
       "group defaults", [
           Q, ("by", "query", "string", "waiting (most waiting first, every group), active (most "
               "running first), paused (latest paused first) or throttled (asleep until a time, "
               "latest to wake first)"),
           ("page", "query", "integer", "page number from 1"),
           ("page_size", "query", "integer", "1 to 200 (default 50)")], tag="groups"),
    Op("GET", "/api/queues/{queue}/groups/{group}", get_group,
       "One group: waiting and running counts, limits, paused, throttled or asleep until; a page "
       "of its waiting jobs in the order it starts them, and its running jobs",
       [Q, G, ("page", "query", "integer", "page of waiting jobs, from 1"),
        ("page_size", "query", "integer", "1 to 200 (default 25)")], tag="groups"),
    Op("POST", "/api/queues/{queue}/groups/{group}/{action}", group_action,
       "A group action: pause (it starts no job; running ones run on) or resume",
       [Q, G, ("action", "path", "string", "pause or resume")], tag="groups"),
    Op("GET", "/api/queues/{queue}/dead-letter", get_dead_letters,
       "Failed jobs that used up their attempts, grouped by error",
       [Q, ("include_all", "query", "boolean",
            "every failed job, also those failed early (also spelt 'all')"),
        ("per_group", "query", "integer", "jobs listed per group (default 50)")], tag="dead-letter"),
    Op("POST", "/api/queues/{queue}/dead-letter/{action}", dead_letter_action,
       "Re-queue or delete dead-letter jobs: a list of ids, or a whole group",
       [Q, ("action", "path", "string", "requeue or delete")],
       body={"type": "object", "properties": {
           "ids": {"type": "array", "items": {"type": "string"}},
           "group": {"type": "string", "description": "a group key from the dead-letter view"},
           "include_all": {"type": "boolean",
                           "description": "every failed job of the group (also spelt 'all')"}}},
       tag="dead-letter"),
]


def api_routes() -> list[Route]:
    routes = [Route("/api/openapi.json", openapi, methods=["GET"])]
    # Literal paths first, so /dead-letter/... is never taken for a job action.
    for op in sorted(OPS, key=lambda o: ("{action}" in o.path, -o.path.count("/"))):
        routes.append(Route(op.path, op.endpoint, methods=[op.method]))
    routes.append(Route("/api/{rest:path}", unmatched_endpoint(list(routes)),
                        methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]))
    return routes


def openapi_schema(base: str = "") -> dict[str, Any]:
    error = {"description": "error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, Any] = {}
    for op in OPS:
        item: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method.lower()}_{op.endpoint.__name__}",
            "parameters": [
                {"name": n, "in": where, "required": where == "path", "description": doc,
                 "schema": {"type": typ, **({"enum": STATE_ENUM} if n == "state" else {}),
                            **({"enum": list(GROUP_ORDERS)} if n == "by" else {})}}
                for n, where, typ, doc in op.params],
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                "type": "object"}}}}, "400": error, "404": error, "409": error, "503": error},
        }
        if op.method != "GET":
            item["responses"]["403"] = {"description": "CSRF check failed"}
            item["parameters"].append({"name": "X-CSRF-Token", "in": "header", "required": False,
                                       "schema": {"type": "string"},
                                       "description": "the minique_csrf cookie's value (not needed "
                                                      "with a Bearer token)"})
        if op.body is not None:
            item["requestBody"] = {"required": False, "content": {
                "application/json": {"schema": op.body},
                "application/x-www-form-urlencoded": {"schema": op.body}}}
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "minique dashboard API", "version": __version__,
                 "description": __doc__ or ""},
        "servers": [{"url": base or "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {
                "type": "object", "properties": {"code": {"type": "string"},
                                                 "message": {"type": "string"}}}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
        },
    }
