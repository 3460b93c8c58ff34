"""The web dashboard, its JSON API and Prometheus metrics (``minique dashboard``).

    from minique.dashboard import create_app
    app = create_app("redis://127.0.0.1:6379/0")          # an ASGI app; mount it anywhere

Needs the ``dashboard`` extra (starlette, uvicorn, jinja2, prometheus-client). Importing
this package (or ``dashboard_command``) does not: the app's modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cli import dashboard_command
from .security import Auth, ConfigError, check_bind

if TYPE_CHECKING:
    from .app import create_app
    from .service import ApiError, Dashboard


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("ApiError", "Dashboard"):
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ApiError", "Auth", "ConfigError", "Dashboard", "check_bind", "create_app",
           "dashboard_command"]
