"""The demo's ``--dashboard``: minique's dashboard on the demo's queues, served in a
background thread until the demo stops."""

from __future__ import annotations

from minique.dashboard.app import create_app
from processors.background_server import BackgroundServer
from processors.fake_amazon.server import bind_socket


class DashboardServer:
    """``with DashboardServer(url, prefix, port=8080) as d: d.url``; on loopback only. A port
    that is taken gives way to a free one."""

    def __init__(self, redis_url: str, prefix: str, *, port: int = 8080) -> None:
        try:
            sock = bind_socket("127.0.0.1", port)
        except OSError:
            sock = bind_socket("127.0.0.1", 0)
        self._server = BackgroundServer(create_app(redis_url, prefix=prefix), sock,
                                         name="demo-dashboard")
        self.url = self._server.base_url + "/"

    def __enter__(self) -> DashboardServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
