"""Differential tests: the same workload on a worker that holds jobs ahead (the default
prefetch) and on one that takes one job per free slot (``prefetch=False``). What an
observer sees (start order, counts, what a control does and returns) must be the same:
"Holding is unobservable: a held job behaves exactly like a waiting one"
(docs/guide/workers.md, Prefetch).

Many scenarios let a job itself act on its queue (add, drain, cancel): what a job does
happens before its worker starts the next job, so a worker at concurrency 1 that takes one
job at a time gives one exact answer, and a holding worker must give the same one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import wait_until

from minique import Queue, Worker

_prefixes = itertools.count()
MODES = [pytest.param(True, id="prefetch"), pytest.param(False, id="one-at-a-time")]


def _prefix() -> str:
    return f"diff{next(_prefixes)}"


def bug(reason: str) -> Any:
    """Fails in prefetch mode (a difference found); passes one at a time."""
    return pytest.param(True, id="prefetch",
                        marks=pytest.mark.xfail(strict=True, reason=reason))


class Scene:
    """A queue, a worker in one mode, and what its processor saw: start order, runs."""

    def __init__(self, redis_url: str, prefetch: bool, concurrency: int = 1,
                 handler: Callable[[Scene, Any], Awaitable[Any]] | None = None,
                 sync: bool = False, **worker_kw: Any) -> None:
        self.prefix = _prefix()
        self.url = redis_url
        self.q = Queue("d", url=redis_url, prefix=self.prefix,
                       default_job_options={"remove_on_complete": False})
        self.prefetch = prefetch
        self.concurrency = concurrency
        self.handler = handler
        self.sync = sync
        self.events: list[str] = []  # job ids as they start, and marks the handler adds
        self.runs: dict[str, int] = {}
        self.held_starts: set[str] = set()  # jobs started from the held set (a check)
        self.worker_kw = worker_kw
        self.worker: Worker | None = None
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def _note_start(self, job: Any) -> bool:
        if job.name == "warm":
            return False
        self.events.append(job.id)
        self.runs[job.id] = self.runs.get(job.id, 0) + 1
        assert self.worker is not None
        running = self.worker._running.get(job.id)
        if running is not None and running.held:
            self.held_starts.add(job.id)
        return True

    async def work(self, job: Any) -> Any:
        if self._note_start(job) and self.handler is not None:
            return await self.handler(self, job)
        return None

    def sync_work(self, job: Any) -> Any:
        if self._note_start(job) and self.handler is not None:
            assert self.loop is not None
            return asyncio.run_coroutine_threadsafe(self.handler(self, job), self.loop).result()
        return None

    async def start(self, warm: int = 40) -> None:
        self.loop = asyncio.get_running_loop()
        self.worker = Worker("d", self.sync_work if self.sync else self.work, url=self.url,
                             prefix=self.prefix, concurrency=self.concurrency,
                             prefetch=self.prefetch, **self.worker_kw)
        self.task = asyncio.create_task(self.worker.run(handle_signals=False))
        if warm:
            # Short jobs measured: a prefetching worker holds jobs ahead from now on.
            await self.q.add_bulk([("warm", None) for _ in range(warm)])
            await wait_until(lambda: _completed(self.q, warm), timeout=20,
                             message="warm-up done")

    async def stop(self) -> None:
        if self.worker is not None and self.task is not None:
            await self.worker.close(timeout=2)
            await self.task
        await self.q.obliterate(force=True)
        await self.q.close()


async def _completed(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def _state(q: Queue, job_id: str, state: str) -> bool:
    return await q.get_state(job_id) == state


def _round(r: int, before: int, after: int) -> list[Any]:
    """``before`` jobs, then the job ``k<r>`` that acts, then ``after`` jobs."""
    return ([("x", None, {"job_id": f"a{r}-{i}"}) for i in range(before)]
            + [("x", None, {"job_id": f"k{r}"})]
            + [("x", None, {"job_id": f"b{r}-{i}"}) for i in range(after)])


# ----- drain() ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefetch", MODES)
async def test_a_job_that_drains_its_queue_gets_the_count_of_the_jobs_behind_it(
        redis_url: str, prefetch: bool) -> None:
    """Job k runs after 20 jobs and before 10, and calls drain(). One at a time, the 20
    have completed and k is active: drain() removes the 10 behind k and returns 10. A
    holding worker started the 20 and k from its held set, and Redis learns of that with
    its next call: drain() used to count them as removed although they all completed; it
    now counts a held job by what became of it once the holds are over. (The
    worker's calls get 20 ms of latency, as to a Redis across a network, so that the call
    is still on its way when k drains; without it, it is so about half the time.)"""
    drained: list[int] = []

    async def handler(scene: Scene, job: Any) -> Any:
        if job.id.startswith("k"):
            drained.append(await scene.q.drain())
        return None

    s = Scene(redis_url, prefetch, handler=handler)
    await s.start()
    assert s.worker is not None
    send = s.worker._send_call

    async def far_away(args: list[Any]) -> Any:
        await asyncio.sleep(0.02)
        return await send(args)

    s.worker._send_call = far_away  # type: ignore[method-assign]
    try:
        for r in range(3):
            await s.q.add_bulk(_round(r, 20, 10))
            await wait_until(lambda r=r: len(drained) > r, timeout=10, message="k drained")
            await wait_until(lambda r=r: _state(s.q, f"k{r}", "completed"), timeout=10,
                             message="k completed")
        stats = await s.q.get_stats()
        assert not [e for e in s.events if e.startswith("b")], "a drained job ran"
        assert stats["completed"] == 40 + 3 * 21 and stats["waiting"] == 0
        assert drained == [10] * 3, f"drain() returned {drained} (10 jobs were waiting)"
    finally:
        await s.stop()


# ----- priorities -----------------------------------------------------------------------


@pytest.mark.parametrize("prefetch", MODES)
async def test_a_job_added_with_a_priority_starts_next(redis_url: str, prefetch: bool) -> None:
    """Job k adds an urgent job (priority 1) and returns. One at a time (concurrency 1),
    the worker's next fetch takes the urgent job: it starts right after k. A holding
    worker used to start the 30 jobs it held first, every time (its runner went through
    short held jobs before the control message had a turn): now the Queue tells the
    workers of its process at once (minique/local_controls.py)."""

    async def handler(scene: Scene, job: Any) -> Any:
        if job.id.startswith("k"):
            await scene.q.add("x", None, job_id=f"urgent{job.id}", priority=1)
        return None

    late = await _urgent_rounds(redis_url, prefetch, handler)
    assert late == [0, 0, 0], f"jobs started between k and the urgent job it added: {late}"


async def _urgent_rounds(redis_url: str, prefetch: bool,
                         handler: Callable[[Scene, Any], Awaitable[Any]]) -> list[int]:
    """Three rounds of 20 jobs, k, 30 jobs, where k makes "urgent<k>": how many jobs
    started between k and the urgent job, per round."""
    s = Scene(redis_url, prefetch, handler=handler)
    await s.start()
    try:
        late: list[int] = []
        for r in range(3):
            await s.q.add_bulk(_round(r, 20, 30))
            await wait_until(lambda r=r: f"urgentk{r}" in s.events and f"b{r}-29" in s.events,
                             timeout=10, message="the round's jobs started")
            late.append(s.events.index(f"urgentk{r}") - s.events.index(f"k{r}") - 1)
        return late
    finally:
        await s.stop()


@pytest.mark.parametrize("prefetch", MODES)
async def test_a_delayed_job_with_a_priority_starts_next_once_due(
        redis_url: str, prefetch: bool) -> None:
    """Job k adds an urgent job (priority 1) delayed by 5 ms, then works 15 ms: the urgent
    job is due before k ends. One at a time, the worker's next fetch promotes it and takes
    it: it starts right after k. A holding worker used to start the 30 jobs it held first,
    every round: a job falling due changed no control. Now it does (lua/includes/base.lua,
    give_way_to_ahead)."""

    async def handler(scene: Scene, job: Any) -> Any:
        if job.id.startswith("k"):
            await scene.q.add("x", None, job_id=f"urgent{job.id}", priority=1, delay=0.005)
            await asyncio.sleep(0.015)
        return None

    late = await _urgent_rounds(redis_url, prefetch, handler)
    assert late == [0, 0, 0], f"jobs started between k and the job due meanwhile: {late}"


# ----- controls a job sets: nothing more starts while it runs -------------------------


@pytest.mark.parametrize("prefetch", MODES)
@pytest.mark.parametrize("control", ["pause", "rate_limit", "global_concurrency_1",
                                     "group_concurrency_1"])
async def test_a_control_a_job_sets_stops_the_jobs_behind_it(
        redis_url: str, prefetch: bool, control: str) -> None:
    """Job k (concurrency 5, all jobs in one group) pauses the queue, rate limits it, or
    sets a global or group concurrency of 1, then works 0.3 s: no other job may start
    from the moment the call returns until k ends (k itself is the one job allowed to
    run), whatever the worker holds."""

    async def handler(scene: Scene, job: Any) -> Any:
        if not job.id.startswith("k"):
            return None
        q = scene.q
        if control == "pause":
            await q.pause()
        elif control == "rate_limit":
            await q.rate_limit(0.5)
        elif control == "global_concurrency_1":
            await q.set_global_concurrency(1)
        else:
            await q.set_group_options("g", concurrency=1)
        scene.events.append("set")
        await asyncio.sleep(0.3)
        scene.events.append("k ends")
        return None

    s = Scene(redis_url, prefetch, concurrency=5, handler=handler)
    await s.start()
    try:
        await s.q.add_bulk([(name, data, {**opts, "group": "g"})
                            for name, data, opts in _round(0, 100, 100)])
        await wait_until(lambda: "k ends" in s.events, timeout=10, message="k done")
        between = s.events[s.events.index("set") + 1:s.events.index("k ends")]
        assert between == [], f"{len(between)} jobs started while k ran: {between[:3]}"
    finally:
        await s.stop()


# ----- rate limits ------------------------------------------------------------------------


@pytest.mark.parametrize("prefetch", MODES)
async def test_a_group_rate_limited_by_a_job_starts_nothing_for_the_delay(
        redis_url: str, prefetch: bool) -> None:
    """Job k raises GroupRateLimited(1.0): "the group starts nothing for delay seconds".
    One at a time, the worker's next fetch finds the group asleep and the 30 jobs behind k
    wait; a holding worker started them all at once (its own RateLimited stopped held jobs
    before the next one started, but a group's did not, before minique/worker.py
    _put_back handed them back as for a queue's)."""
    from minique import GroupRateLimited

    async def handler(scene: Scene, job: Any) -> Any:
        if job.id.startswith("k") and "limited" not in scene.events:
            scene.events.append("limited")
            raise GroupRateLimited(1.0)
        return None

    s = Scene(redis_url, prefetch, handler=handler)
    await s.start()
    try:
        await s.q.add_bulk([(name, data, {**opts, "group": "g"})
                            for name, data, opts in _round(0, 20, 30)])
        await wait_until(lambda: s.runs.get("k0") == 2 and "b0-29" in s.events, timeout=10,
                         message="k ran again and the 30 ran")
        after = s.events[s.events.index("limited") + 1:]
        # One at a time: k itself comes back first, once the group wakes, then the 30.
        assert after[0] == "k0", (f"{after.index('k0')} jobs of the group started during its "
                                  f"throttle, before k came back: {after[:3]}...")
    finally:
        await s.stop()


@pytest.mark.parametrize("prefetch", MODES)
@pytest.mark.parametrize("how", ["promote_job", "retry_job"])
async def test_a_job_put_first_in_line_starts_next(redis_url: str, prefetch: bool,
                                                   how: str) -> None:
    """Job k promotes a delayed job of priority 1, or retries a failed one: one at a time,
    the worker's next fetch takes it, right after k."""

    async def handler(scene: Scene, job: Any) -> Any:
        if job.id == "urgent" and scene.runs["urgent"] == 1 and how == "retry_job":
            from minique import UnrecoverableError

            raise UnrecoverableError("fails once")
        if job.id.startswith("k"):
            if how == "promote_job":
                await scene.q.promote_job("urgent")
            else:
                await scene.q.retry_job("urgent")
        return None

    s = Scene(redis_url, prefetch, handler=handler)
    await s.start()
    try:
        if how == "promote_job":
            await s.q.add("x", None, job_id="urgent", priority=1, delay=60)
        else:
            await s.q.add("x", None, job_id="urgent", priority=1)
            await wait_until(lambda: _state(s.q, "urgent", "failed"), timeout=10,
                             message="urgent failed")
        await s.q.add_bulk(_round(0, 20, 30))
        await wait_until(lambda: s.runs.get("urgent", 0) == (1 if how == "promote_job" else 2)
                         and "b0-29" in s.events, timeout=10, message="the jobs ran")
        after_k = s.events[s.events.index("k0") + 1:]
        assert after_k[0] == "urgent", (f"{after_k.index('urgent')} jobs started between k "
                                        f"and the job it put first")
    finally:
        await s.stop()


# ----- cancel() --------------------------------------------------------------------------


@pytest.mark.parametrize("prefetch", MODES)
async def test_cancel_of_a_waiting_job_leaves_it_to_run(redis_url: str, prefetch: bool) -> None:
    """cancel() "asks the worker running job_id to cancel it; False if it is not active".
    Job k cancels the job two places behind it, which is waiting (get_state says so, in
    both modes): one at a time, cancel() returns False and that job runs and completes."""
    seen: list[tuple[str, bool]] = []

    async def handler(scene: Scene, job: Any) -> Any:
        if job.id.startswith("k"):
            target = f"b{job.id[1:]}-0"
            state = await scene.q.get_state(target)
            seen.append((state, await scene.q.cancel(target)))
            await asyncio.sleep(0.05)  # the cancel reaches whoever holds the job
        return None

    s = Scene(redis_url, prefetch, handler=handler)
    await s.start()
    try:
        await s.q.add_bulk(_round(0, 20, 5))
        await wait_until(lambda: _state(s.q, "b0-4", "completed"), timeout=10,
                         message="the last job done")
        await wait_until(lambda: _finished(s.q, "b0-0"), timeout=10, message="b0-0 finished")
        job = await s.q.get_job("b0-0")
        assert job is not None
        assert seen == [("waiting", False)]
        assert (job.state, job.failed_reason) == ("completed", None)
        assert s.runs.get("b0-0") == 1
    finally:
        await s.stop()


async def _finished(q: Queue, job_id: str) -> bool:
    return await q.get_state(job_id) in ("completed", "failed")


@pytest.mark.parametrize("prefetch", MODES)
async def test_what_a_job_sees_of_a_waiting_job_behind_it(redis_url: str, prefetch: bool) -> None:
    """Job k looks at the job two places behind it (waiting, in either mode) through the
    job API: state, the job, the waiting list, and the errors of calls that refuse a
    waiting job. A held job must look exactly like a waiting one (retry_job() said "job
    ... is held", a state no API knows, before lua/requeue.lua named it as users see it;
    get_job() gave it its holder's fencing token before minique/job.py left it out)."""
    seen: list[Any] = []

    async def handler(scene: Scene, job: Any) -> Any:
        if not job.id.startswith("k"):
            return None
        target = f"b{job.id[1:]}-1"
        q = scene.q
        other = await q.get_job(target)
        assert other is not None
        errors = []
        for call in (lambda: q.retry_job(target), lambda: q.promote_job(target)):
            try:
                await call()
                errors.append("no error")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        seen.append((await q.get_state(target), other.state, other.attempts_started,
                     other.processed_on, other.token,
                     target in await q.get_job_ids("waiting", 0, 999), errors))
        return None

    s = Scene(redis_url, prefetch, handler=handler)
    await s.start()
    try:
        await s.q.add_bulk(_round(0, 20, 5))
        await wait_until(lambda: _state(s.q, "b0-4", "completed"), timeout=10,
                         message="the last job done")
        assert seen == [("waiting", "waiting", 0, None, None, True, [
            "InvalidJobState: job b0-1 is waiting, only finished jobs can be retried",
            "InvalidJobState: job b0-1 is not delayed"])]
    finally:
        await s.stop()


@pytest.mark.parametrize("prefetch", MODES)
async def test_the_flow_links_of_a_waiting_child(redis_url: str, prefetch: bool) -> None:
    """Job k reads the flow links of a parent (what the dashboard's job page shows) whose
    five children wait in k's queue behind k: each is "waiting", held or not (they read
    "held", a state no API knows, before minique/flows.py named them as users see them)."""
    from minique import FlowProducer
    from minique.flows import flow_links

    seen: list[list[str]] = []

    async def handler(scene: Scene, job: Any) -> Any:
        if job.id == "k0":
            parents = Queue("parents", connection=scene.q.redis, prefix=scene.prefix)
            links = await flow_links(parents, "parent")
            seen.append([c["state"] for c in links["children"]])
        return None

    s = Scene(redis_url, prefetch, handler=handler)
    await s.start()
    flow = FlowProducer(url=redis_url, prefix=s.prefix)
    try:
        await s.q.pause()
        await flow.add({"name": "p", "queue": "parents", "opts": {"job_id": "parent"},
                        "children": [{"name": "x", "queue": "d", "opts": {"job_id": f"c{i}"}}
                                     for i in range(5)]})
        # Before the children, by priority: 20 jobs, then k.
        await s.q.add_bulk([(name, data, {**opts, "priority": 1})
                            for name, data, opts in _round(0, 20, 0)])
        await s.q.resume()
        await wait_until(lambda: "c4" in s.events, timeout=10, message="the children ran")
        assert seen == [["waiting"] * 5]
    finally:
        await flow.close()
        await s.stop()


@pytest.mark.parametrize("prefetch", MODES)
async def test_the_jobs_a_worker_says_it_runs(redis_url: str, prefetch: bool) -> None:
    """Job k has its worker (concurrency 1) write its heartbeat and reads get_workers():
    the worker runs k alone; held jobs are waiting, "never counted as active" (the
    heartbeat listed the 30 held jobs as running too, before minique/worker.py left out
    held jobs not started)."""
    seen: list[list[str]] = []

    async def handler(scene: Scene, job: Any) -> Any:
        if job.id == "k0":
            assert scene.worker is not None
            await scene.worker.heartbeat()
            seen.extend(info.running for info in await scene.q.get_workers())
        return None

    s = Scene(redis_url, prefetch, handler=handler)
    await s.start()
    try:
        await s.q.add_bulk(_round(0, 20, 30))
        await wait_until(lambda: "b0-29" in s.events, timeout=10, message="all ran")
        assert seen == [["k0"]]
    finally:
        await s.stop()


# ----- handing back: the very place they were taken from --------------------------------


@pytest.mark.parametrize("prefetch", MODES)
async def test_jobs_two_workers_hand_back_keep_their_order(redis_url: str, prefetch: bool) -> None:
    """Two workers at concurrency 1 go through 3000 jobs j00000... in order, each holding
    the next ones (prefetch). Both are shut down, the one that holds the later jobs first:
    "jobs go back to the very place they were taken from", so the waiting list (and the
    order a worker started afterwards runs them in) is the jobs not run, in order, as it
    is one at a time."""
    prefix = _prefix()
    q = Queue("d", url=redis_url, prefix=prefix)
    started: list[str] = []
    gates = [asyncio.Event(), asyncio.Event()]
    for g in gates:
        g.set()
    decided = asyncio.Event()
    workers: list[Worker] = []

    def make_work(i: int) -> Callable[[Any], Awaitable[None]]:
        async def work(job: Any) -> None:
            if job.name == "warm":
                return
            started.append(job.id)
            # Once 300 ran, each worker's runner stops at its first job that starts while
            # the worker holds others (one at a time: at once), so both hold jobs when
            # they are shut down. (Jobs of a few µs leave both buffers full at one
            # instant too rarely to wait for that.)
            if (not decided.is_set() and len(started) > 300 and gates[i].is_set()
                    and (not prefetch or any(r.held for r in workers[i]._buffered))):
                gates[i].clear()
                if not any(g.is_set() for g in gates):
                    decided.set()
            await gates[i].wait()
        return work

    workers.extend(Worker("d", make_work(i), url=redis_url, prefix=prefix, concurrency=1,
                          prefetch=prefetch) for i in range(2))
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
    try:
        await q.add_bulk([("warm", None) for _ in range(80)])
        await wait_until(lambda: _completed(q, 80), timeout=20, message="warm-up done")
        await q.add_bulk([("x", None, {"job_id": f"j{i:05d}"}) for i in range(3000)])
        await asyncio.wait_for(decided.wait(), 20)

        def last_held(w: Worker) -> str:
            return max((r.job.id for r in w._buffered), default="")

        workers.sort(key=last_held, reverse=True)
        first = asyncio.create_task(workers[0].close(timeout=5))
        await asyncio.sleep(0.2)  # its jobs are back; the other still holds its own
        for g in gates:
            g.set()
        await first
        await workers[1].close(timeout=5)
        await asyncio.gather(*tasks)
        not_run = sorted(f"j{i:05d}" for i in range(3000) if f"j{i:05d}" not in set(started))
        waiting = await q.get_job_ids("waiting", 0, 5000)
        ahead = [a for a, b in zip(waiting, not_run, strict=False) if a != b][:3]
        assert waiting == not_run, f"waiting list out of order: {ahead}... come first"
    finally:
        for g in gates:
            g.set()
        for w in workers:
            await w.close(timeout=1)
        await asyncio.gather(*tasks, return_exceptions=True)
        await q.obliterate(force=True)
        await q.close()


# ----- a worker killed with jobs held ----------------------------------------------------


@pytest.mark.parametrize("prefetch", MODES)
async def test_jobs_waiting_behind_a_poison_job_never_fail_for_it(
        redis_url: str, procs: list[Any], prefetch: bool) -> None:
    """Job P kills its worker at its start (a segfault, the OOM killer), before any await.
    With max_stalled_count 0, P fails at its first counted stall. The 30 jobs behind it
    never start in a dying worker: they must all complete, as they do one at a time.
    docs/design/leases.md: "a job beside a poison job is not failed by it". A holding
    worker held them; the next (warm) worker takes P back with them held, dies on P, and
    the sweep used to count a stall for every job it held: they failed, never having run.
    A dead holder's hold now never counts (lua/stalled.lua)."""
    from helpers import start_worker

    prefix = _prefix()
    q = Queue("diff", url=redis_url, prefix=prefix,
              default_job_options={"remove_on_complete": False, "remove_on_fail": False})
    args = ["--prefix", prefix, "--concurrency", "1", "--lock-duration", "2.5",
            "--stalled-interval", "0.5", "--max-stalled-count", "0"]
    if not prefetch:
        args.append("--no-prefetch")

    def worker() -> None:
        # (The 2.5 s lease leaves a fresh worker the time to start and warm up before the
        # dead one's jobs come back.)
        procs.append(start_worker(redis_url, "diff", *args, target="tests.diff_procs:registry"))

    innocents = [f"b{i}" for i in range(30)]
    try:
        worker()
        await q.add_bulk([("tick", None) for _ in range(40)])
        await wait_until(lambda: _completed(q, 40), timeout=20, message="warm-up done")
        await q.add_bulk([("tick", None, {"job_id": f"a{i}"}) for i in range(5)]
                         + [("tick", {"poison": True}, {"job_id": "P"})]
                         + [("tick", None, {"job_id": job_id}) for job_id in innocents])

        async def settled() -> bool:
            if procs[-1].poll() is not None:
                # The last worker died on P: a fresh one, warmed by jobs that come before
                # what the dead one held (a priority), so it holds jobs ahead too.
                worker()
                await q.add_bulk([("tick", None, {"priority": 1}) for _ in range(40)])
            states = [await q.get_state(i) for i in ["P", *innocents]]
            return all(s in ("completed", "failed") for s in states)

        await wait_until(settled, timeout=40, interval=0.1, message="P and the 30 settled")
        p = await q.get_job("P")
        assert p is not None and p.state == "failed"
        failed = {}
        for job_id in innocents:
            job = await q.get_job(job_id)
            assert job is not None
            if job.state != "completed":
                failed[job_id] = (job.failed_reason, job.stalled_count, job.attempts_started)
        ran = {x.decode() for x in await q.redis.lrange(f"{q.keys.base}:runs", 0, -1)}
        assert not failed, (f"{len(failed)} of the jobs behind P failed, {len(set(failed) - ran)} "
                            f"of them never ran: {dict(list(failed.items())[:2])}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        await q.obliterate(force=True)
        await q.close()


# ----- an idle worker gets the work a stuck one holds ------------------------------------


@pytest.mark.parametrize("prefetch", [
    bug("jobs held by a frozen worker stay out of reach of an idle worker for the whole "
        "lease (lock_duration, 30 s by default), not the 50 ms hold; get_stats() counts "
        "them as waiting meanwhile"),
    pytest.param(False, id="one-at-a-time")])
async def test_an_idle_worker_gets_the_jobs_a_frozen_worker_holds(
        redis_url: str, procs: list[Any], prefetch: bool) -> None:
    """Worker A (concurrency 1) goes through short jobs and freezes (SIGSTOP: a long GC
    pause, a throttled container, a processor that blocks the event loop). One at a time,
    A keeps its one active job and an idle worker B runs every waiting job at once. "A
    hold that runs out ... sends the held jobs back, and an idle worker elsewhere takes
    them": the hold is 50 ms, so B should get A's held jobs well within A's 20 s lease."""
    import os
    import signal

    from helpers import start_worker

    from tests import diff_procs

    prefix = _prefix()
    q = Queue("diff", url=redis_url, prefix=prefix)
    args = ["--prefix", prefix, "--concurrency", "1", "--lock-duration", "20"]
    if not prefetch:
        args.append("--no-prefetch")
    a = start_worker(redis_url, "diff", *args, target="tests.diff_procs:registry")
    procs.append(a)
    b = Worker("diff", diff_procs.registry, url=redis_url, prefix=prefix, concurrency=1,
               prefetch=prefetch, lock_duration=20)
    task: asyncio.Task[None] | None = None
    try:
        await q.add_bulk([("tick", None) for _ in range(40)])
        await wait_until(lambda: _completed(q, 40), timeout=20, message="warm-up done")
        await q.add_bulk([("tick", None) for _ in range(1000)])
        await wait_until(lambda: _completed(q, 140), timeout=20, message="A going")
        for _ in range(50):
            os.kill(a.pid, signal.SIGSTOP)
            held = await q.redis.zcard(q.keys.held)
            if held or not prefetch:
                break  # (frozen between two takes, it held nothing: again)
            os.kill(a.pid, signal.SIGCONT)
            await asyncio.sleep(0.005)
        task = asyncio.create_task(b.run(handle_signals=False))

        async def nothing_waiting() -> bool:
            return (await q.get_stats())["waiting"] == 0

        # (Prefetching, the held jobs wait out A's 20 s lease: 3 s show that as well as 8.)
        await wait_until(nothing_waiting, timeout=3 if prefetch else 8, interval=0.05,
                         message=f"B running every waiting job (A froze holding {held})")
    finally:
        os.kill(a.pid, signal.SIGKILL)
        a.wait(5)
        await b.close(timeout=1)
        if task is not None:
            await task
        await q.obliterate(force=True)
        await q.close()


# ----- a whole workload: every job once, the same events, the same counts -----------------

ODD_IDS = ["1-0", "0-1", "held", "x:y:z", "\u00fcmlaut", "a b", "9" * 30 + "x", "logs", "-1",
           "0x", "*", "$", "{brace}", "waiting", "nan", "1e5", "j:1", "removed"]


@pytest.mark.parametrize("prefetch", MODES)
@pytest.mark.parametrize(("concurrency", "sync", "seconds"), [
    (1, False, 0.0), (50, True, 0.0), (50, False, 0.02)])
async def test_a_mixed_workload_runs_each_job_as_one_at_a_time_does(
        redis_url: str, prefetch: bool, concurrency: int, sync: bool, seconds: float) -> None:
    """600 jobs with odd ids, priorities, delays and a failure then a retry for one in
    five, sync and async processors mixed, pause/resume storms meanwhile, get_stats()
    sampled all along: every job runs exactly as often as its attempts say, each job's
    events are the same sequence, the total never moves and active never passes the
    concurrency."""
    import collections
    import random
    import time as time_mod

    from minique import QueueEvents, Registry

    prefix = _prefix()
    q = Queue("d", url=redis_url, prefix=prefix,
              default_job_options={"remove_on_complete": False, "remove_on_fail": False})
    runs: collections.Counter[str] = collections.Counter()
    registry = Registry()

    @registry.processor("d", name="a")
    async def run_async(job: Any) -> None:
        if job.data is None:
            return
        runs[job.id] += 1
        if seconds:
            await asyncio.sleep(seconds)
        if job.data["fail"] and job.attempts_made == 0:
            raise RuntimeError("again")

    @registry.processor("d", name="s")
    def run_sync(job: Any) -> None:
        runs[job.id] += 1  # (Counter updates from threads: one key per job at a time)
        if seconds:
            time_mod.sleep(seconds)
        if job.data["fail"] and job.attempts_made == 0:
            raise RuntimeError("again")

    worker = Worker("d", registry, url=redis_url, prefix=prefix, concurrency=concurrency,
                    prefetch=prefetch)
    task = asyncio.create_task(worker.run(handle_signals=False))
    stop = asyncio.Event()
    samples: list[dict[str, int]] = []

    async def sample() -> None:
        while not stop.is_set():
            samples.append(await q.get_stats())
            await asyncio.sleep(0.001)

    ids = ODD_IDS + [f"j{i}" for i in range(600 - len(ODD_IDS))]
    try:
        await q.add_bulk([("a", None) for _ in range(60)])
        await wait_until(lambda: _completed(q, 60), timeout=20, message="warm-up done")
        last = await q.redis.xrevrange(q.keys.events, "+", "-", count=1)
        since = last[0][0].decode()
        rnd = random.Random(1)
        items: list[Any] = []
        for i, job_id in enumerate(ids):
            opts: dict[str, Any] = {"job_id": job_id, "attempts": 2}
            if i % 7 == 0:
                opts["priority"] = rnd.randint(1, 5)
            if i % 11 == 0:
                opts["delay"] = rnd.random() * 0.3
            items.append(("s" if sync and i % 2 else "a", {"fail": i % 5 == 0}, opts))
        await q.add_bulk(items)
        # (Sampled once the bulk is in: its calls of 250 land one by one, and a sample
        # between two of them saw 310 of 660 on CI.)
        sampler = asyncio.create_task(sample())
        for _ in range(5):
            await asyncio.sleep(0.03)
            await q.pause()
            await asyncio.sleep(0.01)
            await q.resume()

        async def all_done() -> bool:
            stats = await q.get_stats()
            return stats["completed"] + stats["failed"] >= 660

        await wait_until(all_done, timeout=60, message="every job done")
        stop.set()
        await sampler
        expected = {job_id: 2 if i % 5 == 0 else 1 for i, job_id in enumerate(ids)}
        assert dict(runs) == expected
        assert {s["total"] for s in samples} == {660}
        assert max(s["active"] for s in samples) <= concurrency
        shapes: collections.Counter[tuple[str, ...]] = collections.Counter()
        events = QueueEvents("d", url=redis_url, prefix=prefix, last_id=since)
        per_job: dict[str, list[str]] = collections.defaultdict(list)
        while (event := await events.next(timeout=0.3)) is not None:
            if event.job_id is not None:
                per_job[event.job_id].append(event.name)
        await events.close()
        shapes.update(tuple(v) for k, v in per_job.items() if k in expected)
        delayed = {job_id for i, job_id in enumerate(ids) if i % 11 == 0}
        for job_id, names in per_job.items():
            if job_id not in expected:
                continue
            names = [n for n in names if n != "delayed"] if job_id in delayed else names
            # Taken for a free slot, then handed back unstarted by a pause (either mode).
            names = _without_hand_backs(names)
            once = ["added", "waiting", "active"]
            want = ([*once, "retrying", "waiting", "active", "completed"]
                    if expected[job_id] == 2 else [*once, "completed"])
            assert names == want, (job_id, names)
    finally:
        stop.set()
        await worker.close(timeout=2)
        await task
        await q.obliterate(force=True)
        await q.close()


def _without_hand_backs(names: list[str]) -> list[str]:
    """A job's events without the "active", "waiting" pairs of a job taken for a free slot
    and handed back unstarted."""
    out: list[str] = []
    for name in names:
        if name == "waiting" and out and out[-1] == "active":
            out.pop()
        else:
            out.append(name)
    return out
