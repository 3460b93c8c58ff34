"""Random sequences of add, fetch, hold, start, hand back, complete, fail, retry, promote,
remove, change of priority or delay, pause, drain and stall against a real Redis, with
jobs in groups and without; after every step each job is in exactly one structure, that
structure agrees with the job's recorded state, and the counts match (a held job counts
as waiting); each group's active counter equals its jobs in the active set (every way
out of active gives the slot back)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from driver import complete, fail, fetch, finish, retry
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from minique import FlowProducer, InvalidJobState, JobNotFound, Queue, holders, scripts
from minique import queue as queue_module
from minique.queue import ready_entry_job_id

_runs = itertools.count()
GROUPS = ("ga", "gb")


def _pick(data: Any, ids: Any) -> str | None:
    """One of ``ids`` (None if there is none), drawn the same way whatever their number.
    Which jobs a take gets depends on the clock here (leases of 1 ms, holds of 20 ms, group
    rate limits); a draw whose kind or bounds followed the model's state (a precondition, a
    ``sampled_from`` of the ids) made Hypothesis fail the run as "Inconsistent data
    generation" (FlakyStrategyDefinition) when two runs of one prefix differed."""
    index = data.draw(st.integers(0, 2**16))
    return sorted(ids)[index % len(ids)] if ids else None


class QueueMachine(RuleBasedStateMachine):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.q = Queue(f"sm{next(_runs)}", url=url)
        self.flow = FlowProducer(connection=self.q.redis)
        self.active: dict[str, str] = {}  # id -> token, as a worker would hold them
        self.held: dict[str, str] = {}  # id -> token: taken ahead, not started
        self.doomed: set[str] = set()  # held jobs that drain/remove marked for deletion
        # Held jobs that remove/drain deleted once their hold ran out (no holder answers
        # here): their holder's late answers find them gone.
        self.gone: set[str] = set()
        self.known: set[str] = set()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def job_fields(self, ids: list[str], *names: str) -> dict[str, list[bytes | None]]:
        """The named fields of each job's hash, read in one round trip."""
        async def read() -> list[list[bytes | None]]:
            pipe = self.q.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.q.keys.job(job_id), *names)
            return await pipe.execute() if ids else []
        return dict(zip(ids, self.run(read()), strict=True))

    @initialize()
    def clean(self) -> None:
        self.run(self.q.obliterate(force=True))
        # No worker answers here: remove() of a held job need not wait for one, nor
        # change_priority() or update_job_data().
        queue_module.HELD_REMOVE_WAIT = 0.0
        holders.HOLDER_WAIT = 0.0

    @rule(n=st.integers(1, 4), priority=st.sampled_from([0, 0, 1, 3]),
          delay=st.sampled_from([0.0, 0.0, 30.0]), group=st.sampled_from([None, None, *GROUPS]))
    def add(self, n: int, priority: int, delay: float, group: str | None) -> None:
        options: dict[str, Any] = {"priority": priority, "delay": delay}
        if group is not None:
            options["group"] = group
        jobs = self.run(self.q.add_bulk([("j", i, options) for i in range(n)]))
        self.known.update(j.id for j in jobs)

    @rule(dedup_id=st.sampled_from(["a", "b"]), delay=st.sampled_from([0.0, 30.0]))
    def add_dedup(self, dedup_id: str, delay: float) -> None:
        job = self.run(self.q.add("j", 0, dedup={"id": dedup_id}, delay=delay))
        if job.state != "unknown":
            self.known.add(job.id)

    @rule(policies=st.lists(st.sampled_from(["fail_parent", "ignore", "remove_dependency"]),
                            min_size=1, max_size=3), delay=st.sampled_from([0.0, 30.0]))
    def add_flow(self, policies: list[str], delay: float) -> None:
        # Children in the same queue: the machine's structures see every job of the flow.
        # Kept when failed, as the machine's failures are (one retention group: one set).
        node = self.run(self.flow.add({"name": "p", "queue": self.q.name,
                                       "opts": {"delay": delay, "remove_on_fail": False},
                                       "children": [{"name": "c", "queue": self.q.name,
                                                     "opts": {"on_failure": p}}
                                                    for p in policies]}))
        self.known.update([node.job.id, *(c.job.id for c in node.children)])

    def forget_deleted(self) -> None:
        """Jobs deleted along with others (a removed parent's pending children)."""
        self.known = {j for j in self.known
                      if self.run(self.q.redis.exists(self.q.keys.job(j))) or j in self.doomed}

    @rule(n=st.integers(1, 3), lease_ms=st.sampled_from([30000, 1]))
    def take(self, n: int, lease_ms: int) -> None:
        for job_id, token in self.run(fetch(self.q, n, lease_ms=lease_ms)):
            assert job_id not in self.active
            self.active[job_id] = token

    @rule(n=st.integers(0, 2), hold=st.integers(1, 4))
    def take_with_hold(self, n: int, hold: int) -> None:
        _, taken, header = self.run(finish(self.q, [], n, hold=hold, hold_ms=20))
        active_n = int(header[1]) if int(header[0]) == 0 else 0
        for i, (job_id, token) in enumerate(taken):
            assert job_id not in self.active and job_id not in self.held
            (self.active if i < active_n else self.held)[job_id] = token

    @rule(data=st.data(), action=st.sampled_from(["start", "hand-back", "complete"]))
    def held_one(self, data: Any, action: str) -> None:
        job_id = _pick(data, self.held)
        if job_id is None:
            return
        token = self.held.pop(job_id)
        kind = {"start": "s", "hand-back": "h", "complete": "c"}[action]
        value = b"\xc0" if kind == "c" else ""
        statuses, _, _ = self.run(finish(self.q, [(job_id, token, kind, value, "", 0, -1, -1,
                                                   "1")]))
        if job_id in self.gone:
            self.gone.discard(job_id)
            assert statuses == [2]  # deleted: a removed job never runs
            return
        if job_id in self.doomed:
            self.doomed.discard(job_id)
            if kind == "h":
                assert statuses == [2]  # removed while held and never started: deleted now
                self.known.discard(job_id)
                return
        assert statuses == [1]  # a started one runs on
        if kind == "s":
            self.active[job_id] = token

    @rule()
    def drain(self) -> None:
        self.run(self.q.drain())
        left = set()
        for job_id in self.known:
            if self.run(self.q.redis.exists(self.q.keys.job(job_id))):
                left.add(job_id)
        self.known = left
        self.doomed |= set(self.held) & self.known
        self.gone |= set(self.held) - self.known

    @rule(data=st.data(), outcome=st.sampled_from(["complete", "fail", "retry", "retry-later"]))
    def finish_one(self, data: Any, outcome: str) -> None:
        job_id = _pick(data, self.active)
        if job_id is None:
            return
        token = self.active.pop(job_id)
        result = {"complete": complete(job_id, token), "fail": fail(job_id, token),
                  "retry": retry(job_id, token), "retry-later": retry(job_id, token, 30000)}[outcome]
        statuses, _, _ = self.run(finish(self.q, [result]))
        # 0 only if the lease expired and a stalled sweep took the job back meanwhile.
        assert statuses in ([1], [0])

    @rule()
    def stall_sweep(self) -> None:
        self.run(asyncio.sleep(0.003))
        self.run(scripts.run(self.q.redis, "stalled", self.q.keys.vector,
                             [self.q.keys.job_prefix, 2, 100, -1, -1, "sweeper"]))
        # Jobs whose lease expired now belong to nobody; their tokens are dead.
        for job_id in list(self.active):
            st_ = self.run(self.q.get_state(job_id))
            if st_ != "active":
                del self.active[job_id]
        for job_id, token in list(self.held.items()):
            if self.run(self.q.redis.hget(self.q.keys.job(job_id), "tok")) != token.encode():
                del self.held[job_id]
                self.gone.discard(job_id)
                if job_id in self.doomed:
                    self.doomed.discard(job_id)
                    self.known.discard(job_id)

    @rule(state=st.sampled_from(["failed", "completed"]))
    def retry_all(self, state: str) -> None:
        self.run(self.q.retry_jobs(state))

    @rule()
    def promote_all(self) -> None:
        self.run(self.q.promote_jobs())

    @rule(data=st.data())
    def remove_one(self, data: Any) -> None:
        job_id = _pick(data, self.known)
        if job_id is None:
            return
        try:
            if self.run(self.q.remove_job(job_id)):
                # Gone once remove_job returned: handed back, or (no holder answers here)
                # deleted once its hold ran out.
                self.known.discard(job_id)
                if job_id in self.held:
                    self.gone.add(job_id)
                # A removed flow parent's held pending children are marked for deletion
                # (lua/includes/flows.lua), as remove() marks a held job.
                marked = self.job_fields(sorted(set(self.held) - {job_id}), "st")
                self.doomed |= {j for j, (st,) in marked.items() if st == b"removed"}
            elif job_id in self.doomed and not self.run(
                    self.q.redis.exists(self.q.keys.job(job_id))):
                # Marked by its parent's removal; this call completed the removal, its hold
                # having run out (lua/remove.lua): its holder's late answer finds it gone.
                self.doomed.discard(job_id)
                self.known.discard(job_id)
                self.gone.add(job_id)
            self.forget_deleted()
        except InvalidJobState:
            assert job_id in self.active or self.run(self.q.get_state(job_id)) == "active"

    @rule(data=st.data(), priority=st.sampled_from([0, 1, 3]))
    def change_priority(self, data: Any, priority: int) -> None:
        job_id = _pick(data, self.known)
        if job_id is None:
            return
        try:
            self.run(self.q.change_priority(job_id, priority))
        except JobNotFound:
            assert job_id in self.doomed or job_id in self.gone or not self.run(
                self.q.redis.exists(self.q.keys.job(job_id)))

    @rule(data=st.data(), delay=st.sampled_from([0.0, 0.01, 30.0]))
    def change_delay(self, data: Any, delay: float) -> None:
        job_id = _pick(data, self.known)
        if job_id is None:
            return
        try:
            self.run(self.q.change_delay(job_id, delay))
        except InvalidJobState:
            assert self.run(self.q.get_state(job_id)) != "delayed"
        except JobNotFound:
            assert job_id in self.doomed or job_id in self.gone or not self.run(
                self.q.redis.exists(self.q.keys.job(job_id)))

    @rule(group=st.sampled_from(GROUPS), concurrency=st.sampled_from([None, 1, 2]),
          limit=st.booleans())
    def group_options(self, group: str, concurrency: int | None, limit: bool) -> None:
        self.run(self.q.set_group_options(group, concurrency=concurrency,
                                          limiter={"max": 3, "duration": 0.05} if limit else None))

    @rule(group=st.sampled_from(GROUPS), paused=st.booleans())
    def pause_group(self, group: str, paused: bool) -> None:
        self.run(self.q.pause_group(group) if paused else self.q.resume_group(group))

    @rule(data=st.data())
    def throttle_group(self, data: Any) -> None:
        job_id = _pick(data, self.active)
        if job_id is None:
            return
        token = self.active.pop(job_id)
        statuses, _, _ = self.run(finish(self.q, [(job_id, token, "g", "429", "", 5, -1, -1)]))
        assert statuses in ([1], [0])

    @rule(paused=st.booleans())
    def pause(self, paused: bool) -> None:
        self.run(self.q.pause() if paused else self.q.resume())

    @invariant()
    def each_job_in_exactly_one_structure(self) -> None:
        k, r = self.q.keys, self.q.redis

        states = (("delayed", k.delayed), ("active", k.active), ("completed", k.completed),
                  ("failed", k.failed), ("held", k.held), ("removed", k.held_removed),
                  ("waiting-children", k.waiting_children))

        async def snapshot() -> dict[str, list[str]]:
            # One round trip: the checks run after every step.
            pipe = r.pipeline(transaction=False)
            pipe.xrange(k.ready)
            pipe.zrange(k.pri, 0, -1)
            for group in GROUPS:
                pipe.zrange(f"{k.base}:gw:{group}", 0, -1)
            for _, key in states:
                pipe.zrange(key, 0, -1)
            entries, *sets = await pipe.execute()
            out = {"waiting": [ready_entry_job_id(f).decode() for _, f in entries]}
            for ids in sets[:1 + len(GROUPS)]:
                out["waiting"] += [x.decode() for x in ids]
            for (name, _), ids in zip(states, sets[1 + len(GROUPS):], strict=True):
                out[name] = [x.decode() for x in ids]
            return out

        where = self.run(snapshot())
        seen: dict[str, str] = {}
        for state, ids in where.items():
            for job_id in ids:
                assert job_id not in seen, f"job {job_id} is in {seen[job_id]} and {state}"
                seen[job_id] = state
        assert set(seen) == self.known, f"lost {self.known - set(seen)}, stray {set(seen) - self.known}"
        fields = self.job_fields(list(seen), "st", "g", "tok")
        for job_id, state in seen.items():
            recorded = fields[job_id][0]
            assert recorded == state.encode(), f"job {job_id} in {state} but says {recorded}"
        stats = self.run(self.q.get_stats())
        assert stats["total"] == len(self.known) - len(where["removed"])
        for state, ids in where.items():
            if state == "waiting":
                assert stats[state] == len(ids) + len(where["held"])  # held counts as waiting
            elif state not in ("held", "removed"):
                assert stats[state] == len(ids)
        assert set(self.active) <= set(where["active"])
        # Each group's slot counter equals its jobs in the active set.
        for group in GROUPS:
            running = sum(1 for job_id in where["active"] if fields[job_id][1] == group.encode())
            counter = int(self.run(r.zscore(f"{k.base}:gactive", group)) or 0)
            assert counter == running, f"group {group}: counter {counter}, active {running}"
        assert set(self.held) - self.gone <= set(where["held"]) | set(where["removed"])
        # The held grouped jobs are counted per bucket of 100 tokens, and the buckets with
        # some are listed (a concurrency set meanwhile waits for them: includes/groups.lua).
        counts = {int(b): int(n) for b, n in self.run(r.hgetall(f"{k.base}:gheldn")).items()}
        buckets = {int(b) for b in self.run(r.zrange(f"{k.base}:gheld", 0, -1))}
        expected: dict[int, int] = {}
        for job_id in where["held"] + where["removed"]:
            _, g, tok = fields[job_id]
            if g is not None:
                assert tok is not None, job_id
                expected[int(tok) // 100] = expected.get(int(tok) // 100, 0) + 1
        assert counts == expected and buckets == set(expected), (counts, buckets, expected)
        # Each bucket lists (at least) the groups of the jobs held in it.
        for job_id in where["held"] + where["removed"]:
            _, g, tok = fields[job_id]
            if g is not None:
                assert tok is not None, job_id
                listed = self.run(r.smembers(f"{k.base}:gheldg:{int(tok) // 100}"))
                assert g in listed, (job_id, g, listed)
        # The group indexes (get_groups by waiting, active, paused) agree with the groups,
        # and the waiting listing reaches every waiting job, grouped ones too.
        base = k.base
        ga = dict(self.run(r.zrange(f"{base}:gactive", 0, -1, withscores=True)))
        gi = dict(self.run(r.zrange(f"{base}:groups", 0, -1, withscores=True)))
        gp = set(self.run(r.zrange(f"{base}:gpaused", 0, -1)))
        # Only groups with jobs running are listed as active (a count, never 0 or less),
        # and each of them is in the group index until its last release.
        assert all(score >= 1 for score in ga.values()), ga
        assert set(ga) <= set(gi), (ga, gi)
        async def per_group() -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for group in GROUPS:
                pipe.hmget(f"{base}:g:{group}", "c", "lm", "p", "rl", "q")
                pipe.zcard(f"{base}:gw:{group}")
            return await pipe.execute()

        read = self.run(per_group())
        for i, group in enumerate(GROUPS):
            kept, waiting = read[2 * i], read[2 * i + 1]
            p = kept[2]
            assert (group.encode() in gp) == (p is not None), (group, gp, p)
            assert int(gi.get(group.encode(), 0)) == waiting, (group, gi, waiting)
            assert not waiting or group.encode() in gi
            # An idle group without settings is forgotten, however its last job left
            # (one taken to hold may never release a slot); one still scheduled (in the
            # round-robin or asleep) goes at its turn.
            if group.encode() in gi and not waiting and group.encode() not in ga:
                assert any(v is not None for v in kept), (group, "idle, no settings, indexed")
        listed = self.run(self.q.get_job_ids("waiting", 0, 100_000))
        assert sorted(listed) == sorted(where["waiting"] + where["held"])

    @invariant()
    def each_parent_waits_for_exactly_its_pending_children(self) -> None:
        # A parent waits while it has pending children, and each of them is unfinished and
        # points back at it: no child tells its parent twice, none is forgotten.
        k, r = self.q.keys, self.q.redis
        for parent in self.run(r.zrange(k.waiting_children, 0, -1)):
            pkey = k.job(parent.decode())
            kids = self.run(r.hgetall(f"{k.base}:kids:{parent.decode()}"))
            pending = [c for c, v in kids.items() if v == b""]
            assert int(self.run(r.hget(pkey, "pend"))) == len(pending) > 0, (parent, kids)
            for child in pending:
                st_, par = self.run(r.hmget(child, "st", "par"))
                assert par == pkey.encode(), (child, par)
                assert st_ not in (None, b"completed", b"failed"), (child, st_)

    @invariant()
    def dedup_ids_never_leak(self) -> None:
        # A dedup id without a ttl is held only by a job that exists and has not finished
        # (or was removed while held: freed when its worker hands it back).
        k, r = self.q.keys, self.q.redis
        listed = self.run(r.zrange(k.base + ":dedups", 0, -1, withscores=True))
        keys = self.run(r.keys(k.base + ":dedup:*"))
        assert {k.base.encode() + b":dedup:" + did for did, _ in listed} == set(keys)
        for did, _ in listed:
            holder = self.run(r.get(k.base.encode() + b":dedup:" + did))
            st_ = self.run(r.hget(k.job(holder.decode()), "st"))
            assert st_ in (b"waiting", b"delayed", b"active", b"held", b"removed"), (did, st_)
            assert self.run(r.hget(k.job(holder.decode()), "dd")) == did

    def teardown(self) -> None:
        self.run(self.q.obliterate(force=True))
        self.run(self.q.close())
        self.loop.close()


def test_random_operation_sequences_keep_the_invariants(module_redis_url: str) -> None:
    # A server of its own: the dedup check lists keys by pattern (KEYS scans them all).
    run_state_machine_as_test(
        lambda: QueueMachine(module_redis_url),
        settings=settings(max_examples=60, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
