"""``create_app``: the dashboard as one ASGI application, standalone or mounted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..connection import check_client, connect
from ..keys import DEFAULT_PREFIX
from .api import api_routes
from .live import stream_endpoint
from .pages import page_routes
from .prom import metrics_endpoint
from .security import Auth, SecurityMiddleware
from .service import Dashboard

STATIC = Path(__file__).parent / "static"


def create_app(
    url: str | None = None,
    *,
    connection: Any = None,
    queues: Sequence[str] | None = None,
    prefix: str = DEFAULT_PREFIX,
    auth: Auth | None = None,
    hidden_data_queues: Iterable[str] = (),
    poll_interval: float = 3.0,
    trusted_origins: Sequence[str] = (),
) -> Starlette:
    """The dashboard, its JSON API (``/api``) and Prometheus ``/metrics`` as one ASGI app.

    ``queues`` lists the queues to show; by default they are discovered with a bounded SCAN
    of the queues' keys (refreshed every few seconds). ``auth`` requires a token or basic-auth
    credentials on every request (``Auth.from_env()`` reads them from the environment).
    ``hidden_data_queues``: queues whose job data and return values are never shown.
    ``poll_interval``: seconds between the pages' live updates.
    ``trusted_origins``: origins (``https://ops.example.org``) whose POSTs are accepted although
    they differ from the Host header, e.g. behind a proxy that rewrites Host.

    Mount it inside another app with ``Mount("/queues-admin", app=create_app(...))``: every
    link and cookie follows the mount path. It opens its Redis client lazily, so it works
    without the outer app running its lifespan; ``await app.state.dashboard.redis.aclose()``
    closes the client if you mount it and need to.
    """
    own = connection is None
    redis = check_client(connection, "create_app", url) if connection is not None else connect(url)
    dashboard = Dashboard(redis, prefix=prefix, queues=queues, hidden_data_queues=hidden_data_queues)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if own:
            await redis.aclose()

    routes = [
        *page_routes(),
        Route("/api/stream", stream_endpoint, methods=["GET"]),
        *api_routes(),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityMiddleware, auth=auth,
                                           trusted_origins=tuple(trusted_origins))],
                    lifespan=lifespan)
    app.state.dashboard = dashboard
    if not 0.2 <= poll_interval <= 300:
        raise ValueError(f"poll_interval must be between 0.2 and 300 seconds, got {poll_interval}")
    app.state.poll_interval = poll_interval
    return app
