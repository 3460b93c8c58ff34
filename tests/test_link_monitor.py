"""The link monitor (minique/link_monitor.py): how soon a healed link is noticed. The
worker-level test with a proxy that swallows traffic is opt-in (tests/chaos/test_resend.py);
this one drives the monitor alone with a probe that loses its reply while the link is down."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import wait_until

from minique import link_monitor
from minique.link_monitor import LinkMonitor


async def test_a_link_that_heals_during_a_probe_is_noticed_when_that_probe_times_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe sent just before the link heals loses its reply and times out; the next probe
    must go at once, not a further second later (a healed link took PROBE_TIMEOUT + 1 s to
    be noticed: 3 s, at the edge of the documented "about 2 s")."""
    monkeypatch.setattr(link_monitor, "PROBE_TIMEOUT", 1.5)  # longer than the 1 s spacing, as the 2 s default
    healed = False
    probing = asyncio.Event()

    async def probe() -> None:
        probing.set()
        if not healed:
            await asyncio.sleep(30)  # the reply is swallowed: the probe times out

    aborted = asyncio.Event()
    monitor = LinkMonitor("test", probe, warn_after=0.05)
    monitor.begin("finish call", aborted.set)
    stop = asyncio.Event()
    runner = asyncio.create_task(monitor.run(stop))
    try:
        # Down: probes fail; wait until one is in flight, then heal the link under it.
        await wait_until(lambda: monitor._down_since is not None, timeout=5, message="down")
        probing.clear()
        await wait_until(probing.is_set, timeout=5, message="a probe in flight")
        healed = True
        healed_at = time.monotonic()
        await wait_until(aborted.is_set, timeout=5, message="the stuck call aborted")
        noticed = time.monotonic() - healed_at
        # The probe in flight times out (1.5 s), and the next one answers at once (it took
        # a further second: 2.5 s).
        assert noticed < 2.0, f"noticed {noticed:.2f}s after the link healed"
    finally:
        stop.set()
        await runner
