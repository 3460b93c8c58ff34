"""Fault rules that tests queue up at run time."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

FaultAction = Literal[
    "throttle", "html_5xx", "json_5xx", "slow", "trickle", "drop", "garbage", "expire_token",
    "repeat_token", "duplicate_page",
]


@dataclass
class Fault:
    """Applies ``action`` to the next ``times`` matching calls, after letting ``skip`` pass.

    ``json_5xx``: ``status`` with Amazon's error JSON (``InternalFailure``). ``trickle``: a 200
    whose body comes a few bytes every ``delay`` seconds (each gap shorter than a read timeout,
    the whole longer than any sane request). ``repeat_token``: the page's ``nextToken`` is the
    token the request sent (a pagination loop). ``duplicate_page``: the page's items are sent
    twice in it (the same ids twice, as Amazon does when its index shifts mid-pagination).

    ``operation`` is an operation name such as "searchOrders", "lwaToken", or "*" for any API call.
    """

    operation: str
    action: FaultAction
    times: int = 1
    skip: int = 0
    seller: int | None = None
    status: int = 503
    delay: float = 1.0
    retry_after: int = 1

    def matches(self, operation: str, seller: int | None) -> bool:
        # "*" means every API operation; LWA faults must be asked for by name ("lwaToken").
        if self.operation != operation and (self.operation != "*" or operation == "lwaToken"):
            return False
        return self.seller is None or self.seller == seller


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.fired: list[tuple[str, FaultAction]] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, operation: str, seller: int | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.matches(operation, seller):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                self.fired.append((operation, fault.action))
                return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
