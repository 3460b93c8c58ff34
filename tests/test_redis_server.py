"""minique.server.RedisServer, as the tests, the demo and the benchmarks start it."""

from __future__ import annotations

import redis

from minique.server import RedisServer


def _pid(port: int) -> int:
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def test_a_picked_port_taken_meanwhile_moves_the_server_to_another() -> None:
    # Two test processes side by side (pytest -n 2) can pick the same free port: the second
    # server cannot bind it, and its owner must not take the first one's answers for its own.
    with RedisServer() as first:
        second = RedisServer()
        second.port = first.port
        try:
            second.start()
            assert second.port != first.port
            assert second.proc is not None and _pid(second.port) == second.proc.pid
            assert first.proc is not None and _pid(first.port) == first.proc.pid
        finally:
            second.close()


def test_a_given_port_that_is_taken_is_a_clear_error() -> None:
    with RedisServer() as first:
        second = RedisServer(port=first.port)
        try:
            second.start()
        except RuntimeError as exc:
            assert f"port {first.port}" in str(exc)
        else:
            raise AssertionError("a taken port was accepted")
        finally:
            second.close()


def test_a_picked_port_is_picked_again_with_the_owners_picker() -> None:
    # A cluster node needs port + 10000 free as well: when its first pick was taken meanwhile
    # (CI saw this with two test workers), the retry must use the same picker, not any port.
    with RedisServer() as first:
        picks = [first.port, 0]

        def pick() -> int:
            from minique.server import free_port

            picks[1] = free_port()
            return picks[1]

        second = RedisServer(pick_port=lambda: picks[0])
        second._pick_port = pick
        try:
            second.start()
            assert second.port == picks[1] != first.port
            assert second.proc is not None and _pid(second.port) == second.proc.pid
        finally:
            second.close()
