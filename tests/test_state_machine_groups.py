"""The state machine of tests/test_state_machine.py with five groups (so that one turn of
the round-robin takes several: includes/groups.lua, take_grouped) and a check that the
round-robin never loses or doubles a group: each group is in the round-robin at
most once, its 'q' mark agrees with where it is scheduled, and a group with jobs waiting
that may start one is scheduled (in the round-robin or asleep)."""

from __future__ import annotations

from typing import Any

import pytest
import test_state_machine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test
from test_state_machine import QueueMachine

MORE = ("ga", "gb", "gc", "gd", "ge")


class ScheduleMachine(QueueMachine):
    @rule(n=st.integers(1, 3), groups=st.lists(st.sampled_from(MORE), min_size=1, max_size=4))
    def add_many_groups(self, n: int, groups: list[str]) -> None:
        jobs = self.run(self.q.add_bulk([("j", i, {"group": g}) for g in groups
                                         for i in range(n)]))
        self.known.update(j.id for j in jobs)

    @invariant()
    def groups_are_scheduled_once(self) -> None:
        r, base = self.q.redis, self.q.keys.base

        async def read() -> list[Any]:
            # One round trip: the checks run after every step.
            pipe = r.pipeline(transaction=False)
            pipe.lrange(f"{base}:gready", 0, -1)
            pipe.zrange(f"{base}:gsleep", 0, -1)
            pipe.zrange(f"{base}:gactive", 0, -1, withscores=True)
            pipe.hget(self.q.keys.meta, "gdc")
            for group in MORE:
                pipe.hmget(f"{base}:g:{group}", "c", "p", "q")
                pipe.zcard(f"{base}:gw:{group}")
            return await pipe.execute()

        rr, asleep_list, active, gdc, *per_group = self.run(read())
        asleep = set(asleep_list)
        ga = {g: int(s) for g, s in active}
        assert len(rr) == len(set(rr)), ("a group twice in the round-robin", rr)
        for i, group in enumerate(MORE):
            g = group.encode()
            (c, p, q), waiting = per_group[2 * i], per_group[2 * i + 1]
            in_rr, in_sleep = g in rr, g in asleep
            assert not (in_rr and in_sleep), (group, rr, asleep)
            assert (q == b"r") == in_rr, (group, q, rr)
            assert (q == b"s") == in_sleep, (group, q, asleep)
            conc = int(c) if c is not None else (int(gdc) if gdc is not None else None)
            full = conc is not None and ga.get(g, 0) >= conc
            if waiting and p is None and not full:
                assert in_rr or in_sleep, (group, "never scheduled", waiting, q)


def test_random_sequences_keep_groups_scheduled_once(module_redis_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_state_machine, "GROUPS", MORE)  # the base checks see them all
    run_state_machine_as_test(
        lambda: ScheduleMachine(module_redis_url),
        settings=settings(max_examples=60, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
