"""Hostile tests of groups and batches (issue 13): each test is a failure found by attacking
the features the way users report bugs against BullMQ Pro, Celery and arq."""

from __future__ import annotations

import math

import pytest

from minique import Delayed, GroupRateLimited, Queue, RateLimited


@pytest.mark.parametrize("delay", [math.inf, 1e300, 10 * 365 * 86400.0 + 1])
@pytest.mark.parametrize("make", [GroupRateLimited, RateLimited, Delayed,
                                  lambda d: RateLimited(d, group=True)])
def test_a_delay_beyond_ten_years_is_refused_where_it_is_raised(make: object,
                                                                delay: float) -> None:
    # Found: GroupRateLimited(inf) was accepted, then killed the worker's runner task with
    # OverflowError (the job stayed active for good, the worker lost a slot); 1e300 wrapped
    # in Lua and the throttle was silently ignored (the job ran again at once).
    with pytest.raises(ValueError, match="delay"):
        make(delay)  # type: ignore[operator]


@pytest.mark.parametrize("delay", ["1", None, True])
def test_a_delay_that_is_not_a_number_is_a_type_error(delay: object) -> None:
    with pytest.raises(TypeError, match="delay"):
        GroupRateLimited(delay)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="delay"):
        Delayed(delay)  # type: ignore[arg-type]


async def test_a_group_whose_settings_are_cleared_or_that_is_resumed_is_forgotten(
        queue: Queue) -> None:
    # Found: setting then clearing a group's options, or pausing then resuming a group with
    # no jobs (the dashboard's buttons), left the group in the index for good:
    # get_group_counts() said groups=3 while get_groups() listed none.
    await queue.set_group_options("x", concurrency=1)
    await queue.set_group_options("x")
    await queue.pause_group("y")
    await queue.resume_group("y")
    await queue.set_group_options("z", limiter={"max": 1, "duration": 1.0})
    await queue.set_group_options("z", concurrency=None, limiter=None)
    assert await queue.get_groups() == []
    assert (await queue.get_group_counts()).groups == 0
    # A group that still has a reason to be known stays.
    await queue.add("n", 1, group="w")
    await queue.set_group_options("w", concurrency=2)
    await queue.set_group_options("w")
    await queue.pause_group("p")
    assert [g.id for g in await queue.get_groups()] == ["w", "p"]
    assert (await queue.get_group_counts()).groups == 2


async def test_a_group_id_that_is_not_utf8_text_is_a_clear_error(queue: Queue) -> None:
    # Found: a lone surrogate reached the Redis client and came back as a bare
    # UnicodeEncodeError that did not say which argument was wrong.
    for call in (lambda: queue.add("n", 1, group="\ud800"),
                 lambda: queue.add_bulk([("n", 1, {"group": "ok"}), ("n", 1, {"group": "\udfff"})]),
                 lambda: queue.set_group_options("\ud800", concurrency=1),
                 lambda: queue.pause_group("\ud800")):
        with pytest.raises(ValueError, match="group must be text that encodes as UTF-8"):
            await call()
    assert (await queue.get_stats())["waiting"] == 0
