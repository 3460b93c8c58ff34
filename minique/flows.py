"""Flows: trees of jobs across queues, where a parent runs once its children are done.

```python
flow = FlowProducer(url="redis://...")
node = await flow.add({"name": "daily-report", "queue": "reports", "data": {...},
                       "children": [{"name": "sync-orders", "queue": "data-sync", "data": {...},
                                     "opts": {"on_failure": "ignore"}}]})
node.job            # the parent Job, state "waiting-children"
node.children       # [FlowNode, ...]
```

A node is ``{"name": str, "queue": str, "data": Any, "opts": {...}, "children": [...]}``;
``opts`` takes the job options of ``Queue.add`` (not ``dedup``) plus ``on_failure``, which
says what the child's failure (or removal) does to its parent:

- ``"fail_parent"`` (default): the parent fails, its reason naming the child;
- ``"ignore"``: the parent still runs; ``get_children_failures()`` shows the failure;
- ``"remove_dependency"``: the parent stops waiting for that child.

The whole tree is written by one script call (``lua/add_flow.lua``): all of it or nothing,
and a child tells its parent in the same script call that finishes it. On Redis Cluster
that needs every queue of the flow in one hash slot: give those queues a prefix that is a
hash tag, e.g. ``prefix="{flows}"`` (for the producer, the queues and their workers alike);
a flow whose queues fall in different slots is refused with ``FlowError`` before anything
is written. See docs/guide/flows.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import codec, local_controls, scripts
from .connection import check_client, connect
from .errors import AddNotSent, AddOutcomeUnknown, InvalidJobState, MiniqueError, SettleError
from .job import Job, public_state
from .keys import DEFAULT_PREFIX
from .options import encode_stored
from .unsettled import Fences, UnsettledCall

if TYPE_CHECKING:
    from .queue import Queue

POLICIES = {"fail_parent": "f", "ignore": "i", "remove_dependency": "r"}
NODE_KEYS = frozenset({"name", "queue", "data", "opts", "children"})
MAX_NODES = 10_000  # one script call writes the whole tree: bounded, and atomic
HELD_PARENT_WAIT = 1.0  # s an add waits for a holding worker's answer beyond its hold


class FlowError(MiniqueError, ValueError):
    """A flow that cannot be added as given (bad shape, a repeated job, slots on Cluster)."""


class FlowNode(msgspec.Struct):
    """A job of an added flow and its children's nodes, in the order given."""

    job: Any
    children: list[FlowNode] = msgspec.field(default_factory=list)


def policy_code(value: Any) -> str:
    if value not in POLICIES:
        raise ValueError(f"on_failure must be one of {', '.join(POLICIES)}, got {value!r}")
    return POLICIES[value]


class _Prepared(msgspec.Struct):
    queue: Any
    args: list[Any]  # Queue._prepare's: id, name, data, opts, priority, delay_ms, group, dedup
    resolved: Any
    data: Any
    parent: str  # '' | '#k' | parent job key
    policy: str
    # The token of an existing parent that is running (a Job its worker gave the
    # processor): add_flow.lua lets such a parent take children (WaitingChildren).
    parent_token: str = ""


def _in_tree(exc: ValueError | TypeError, tree: int) -> BaseException:
    """``exc`` with its message prefixed by the tree's index (add_bulk): the same type when
    it can be made from a message alone, else FlowError."""
    message = f"tree {tree}: {exc}"
    try:
        return type(exc)(message)
    except Exception:
        return FlowError(message)


def check_same_slot(client: Any, queues: Sequence[Queue]) -> None:
    """On Redis Cluster a flow's script touches every queue of the flow: one slot only."""
    if getattr(client, "connection_pool", None) is not None:
        return  # a single Redis: any queues
    slots = {key_slot(q.keys.base.encode()) for q in queues}
    if len(slots) > 1:
        raise FlowError(
            "on Redis Cluster every queue of a flow must live in one hash slot; queues "
            f"{', '.join(sorted({q.name for q in queues}))} are in different slots. Give the "
            "flow's queues (and their workers) a prefix that is a hash tag, e.g. "
            "prefix='{flows}', or keep the flow in one queue")


async def submit(client: Any, nodes: Sequence[_Prepared], producer: str, seq: int) -> int:
    """Writes the nodes in one ``add_flow`` call (which gives nodes without an id their
    queue's next automatic id, only once every check passed); returns now (ms). ``producer``
    and ``seq`` (its next number; calls one at a time) make a re-send change nothing."""
    check_same_slot(client, [n.queue for n in nodes])
    flat: list[Any] = [len(nodes), producer, seq]
    for node in nodes:
        a = node.args
        keep = node.resolved.stored.keep_failed
        flat.extend([node.queue.keys.base, a[0], a[1], a[2], a[3], a[4], a[5], node.parent,
                     node.policy, f"{keep.count}:{-1 if keep.age < 0 else int(keep.age * 1000)}",
                     a[6], node.parent_token])
    first = nodes[0].queue
    try:
        try:
            reply = await scripts.run(client, "add_flow", first.keys.vector,
                                      (first.keys.job_prefix, *flat))
        except ResponseError as exc:
            reply = await _fenced(client, first, nodes, producer, seq, exc)
        if int(reply[0]) == -1:
            reply = await _after_hand_back(client, first, flat, reply)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise _outcome_unknown(nodes, f"Redis did not answer ({type(exc).__name__}: {exc})",
                               producer, seq) from exc
    for node, job_id in zip(nodes, reply[1:], strict=True):
        node.args[0] = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
    # A job with a priority goes ahead of the jobs workers hold: the workers of this
    # process hear of it before the call returns, as for Queue.add (minique/local_controls.py).
    ahead: dict[str, float] = {}
    for node in nodes:
        if node.resolved.wire_priority:  # a priority or LIFO
            base = node.queue.keys.base
            ahead[base] = min(ahead.get(base, node.resolved.delay), node.resolved.delay)
    for base, delay in ahead.items():
        local_controls.notify(base, "priority", delay)
    return int(reply[0])


async def _fenced(client: Any, first: Queue, nodes: Sequence[_Prepared], producer: str,
                  seq: int, refusal: ResponseError) -> Any:
    """What became of an add_flow call that Redis refused (out of memory, read-only): an
    earlier send of it (a retry after a timeout) may have run, its reply lost, or may still
    arrive late (lua/fence_add.lua). Returns the reply of the send that ran; raises
    ``refusal`` when none did (and then none ever will), ``AddOutcomeUnknown`` when Redis
    refuses or does not answer the question too."""
    try:
        reply = await scripts.run(client, "fence_add", (first.keys.meta,),
                                  (first.keys.job_prefix, producer, seq, "flow"))
    except (RedisError, InvalidJobState) as exc:
        raise _outcome_unknown(nodes, f"Redis refused the call ({refusal}) and did not say "
                               f"whether an earlier send of it had run ({type(exc).__name__}: "
                               f"{exc})", producer, seq) from exc
    if reply is None:
        raise refusal
    return reply


def unsettled_call(nodes: Sequence[_Prepared], producer: str, seq: int) -> UnsettledCall:
    """The add_flow call of ``nodes`` as a call whose outcome is unknown (its producer's
    record is on the first node's queue: lua/add_flow.lua)."""
    first = nodes[0].queue
    return UnsettledCall(first.keys.meta, first.keys.job_prefix, producer, seq, "flow",
                         tuple(n.args[0] for n in nodes if n.args[0]))


def _outcome_unknown(nodes: Sequence[_Prepared], why: str, producer: str,
                     seq: int) -> AddOutcomeUnknown:
    """``AddOutcomeUnknown`` for an add_flow call: it names the ids the caller gave; Redis
    gives the others (add_flow.lua), so they are unknown here."""
    call = unsettled_call(nodes, producer, seq)
    ids = list(call.job_ids)
    auto = len(nodes) - len(ids)
    return AddOutcomeUnknown(
        f"{why}; whether the {len(nodes)} job(s) of the call were added is unknown: settle "
        "the error (FlowProducer.settle, Queue.settle for a child added with Queue.add): it "
        "says whether the call ran and makes sure a late copy of it adds nothing"
        + (f" ({auto} job(s) without a job_id get theirs in Redis: look for them among the "
           "parent's dependencies)" if auto else ""), ids, [call])


async def _after_hand_back(client: Any, first: Queue, flat: list[Any], reply: Any) -> Any:
    """An existing parent was held by a worker (taken ahead of its start: waiting, to
    everyone else), which add_flow has asked to hand it back: ``reply`` is {-1, ms, the
    parent's key, its state and token then}. Waits for that answer, about a round trip, and
    calls again: the parent takes its children if it came back, and refuses them
    (InvalidJobState) if its worker had started it, as it would had it been fetched one job
    at a time; handed back and taken to hold again by another worker (a new token), the
    next call asks that one. Raises InvalidJobState if no holder answers within the first
    hold plus HELD_PARENT_WAIT seconds (a frozen worker; the stalled check gives the parent
    back when its lease runs out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + int(reply[1]) / 1000.0 + HELD_PARENT_WAIT
    while True:
        # What the call saw, not a read of our own after it: that could be the answer
        # already (handed back and taken again), which would be waited on to the deadline.
        key, asked = reply[2], (reply[3], reply[4])
        st, tok = await client.hmget(key, "st", "tok")
        if st not in (b"held", b"removed") or (st, tok) != asked:
            reply = await scripts.run(client, "add_flow", first.keys.vector,
                                      (first.keys.job_prefix, *flat))
            if int(reply[0]) != -1:
                return reply
        elif loop.time() >= deadline:
            name = key.decode() if isinstance(key, bytes) else str(key)
            raise InvalidJobState(
                f"parent job {name} is held by a worker that has not handed it back; try "
                "again (its lease runs out and the stalled check gives it back)")
        await asyncio.sleep(0.005)


def _made(node: _Prepared, now_ms: int, waits: bool) -> Job:
    job: Job = node.queue._made(node.args[0], node.args[1], node.data, node.args[2],
                                node.resolved, now_ms)
    if waits:
        job.state = "waiting-children"
    return job


def prepare_child(queue: Queue, name: str, data: Any, options: dict[str, Any],
                  parent_key: str, policy: str, parent_ahead: bool = False) -> _Prepared:
    """``parent_ahead``: the parent is in ``queue`` and may have a priority. Once this
    job is done the parent may become waiting ahead of the jobs its worker holds, which
    that worker then hands back (worker.py, ``_push``), as one taking a job at a time
    would take the parent next."""
    if options.get("dedup") is not None:
        raise FlowError("dedup is not supported for a job with a parent")
    args, resolved = queue._prepare(name, data, options)
    if parent_ahead:
        stored = msgspec.structs.replace(resolved.stored, parent_ahead=True)
        resolved = msgspec.structs.replace(resolved, stored=stored)
        args = [*args[:3], encode_stored(stored), *args[4:]]
    return _Prepared(queue, args, resolved, data, parent_key, policy)


def parent_key(parent: Any, prefix: str) -> str:
    """A parent given as a Job or as {"id": ..., "queue": ...} (plus "token": its worker's
    token, for a running parent that adds children to itself from a process without its
    Job, e.g. a --cpu-processes JobSnapshot's) -> its job key."""
    from .keys import QueueKeys

    if isinstance(parent, Job):
        return parent.queue.keys.job(parent.id)
    if isinstance(parent, Mapping) and set(parent) in ({"id", "queue"}, {"id", "queue", "token"}
                                                       ) and isinstance(parent["id"], str) and parent["id"]:
        return QueueKeys(parent["queue"], prefix).job(parent["id"])
    raise TypeError(f"parent must be a Job or {{'id': str, 'queue': str}} (and 'token' for a "
                    f"running parent), got {parent!r}")


async def children_values(queue: Queue, job_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """({child job key: return value}, {child job key: failure reason}) of done children."""
    values, failures, _ = await children_outcomes(queue, job_id)
    return values, failures


async def children_outcomes(queue: Queue, job_id: str) -> tuple[
        dict[str, Any], dict[str, str], list[str]]:
    """({child job key: return value}, {child job key: failure reason}, [pending child job
    keys, sorted]) of a flow parent: one HGETALL of its children's record."""
    raw = await queue.redis.hgetall(f"{queue.keys.base}:kids:{job_id}")
    values: dict[str, Any] = {}
    failures: dict[str, str] = {}
    pending: list[str] = []
    for k, v in raw.items():
        key = k.decode()
        if v[:1] == b"c":
            values[key] = codec.decode(v[1:], key, "return value") if len(v) > 1 else None
        elif v[:1] == b"f":
            failures[key] = v[1:].decode(errors="replace")
        else:
            pending.append(key)
    return values, failures, sorted(pending)


FLOW_LINKS_MAX = 200  # children a job's page lists


_JOB_KEY = re.compile(r"^(\{\{[^{}]*\}:[^{}]*\}|\{[^{}]*\}):j:(.*)$", re.S)


def split_job_key(key: str) -> tuple[str, str]:
    """"{prefix:queue}:j:<id>" -> ("{prefix:queue}", "<id>"), as includes/flows.lua's
    split_job_key: a queue name may hold ":j:" (only braces and whitespace are refused),
    an id anything; the prefix may be a tag itself, "{{t}:queue}"."""
    m = _JOB_KEY.match(key)
    if m is None:
        raise ValueError(f"not a job key: {key!r}")
    return m.group(1), m.group(2)


def _queue_of(base: str, prefix: str) -> str:
    """"{prefix:queue}" -> "queue" (the prefix may be a tag itself: "{{t}:queue}")."""
    return base[len(prefix) + 2:-1]


async def flow_links(queue: Queue, job_id: str) -> dict[str, Any]:
    """A job's place in its flow, for the dashboard: ``{"parent": {queue, id, state} | None,
    "children": [{queue, id, state, outcome}], "more": children not listed}``; outcome is
    "pending", "completed" or "failed" (failed or removed, under "ignore")."""
    r, prefix = queue.redis, queue.prefix
    async with r.pipeline(transaction=False) as pipe:
        pipe.hget(queue.keys.job(job_id), "par")
        pipe.hgetall(f"{queue.keys.base}:kids:{job_id}")
        par, kids = await pipe.execute()
    refs = [] if par is None else [par]
    listed = sorted(kids.items())[:FLOW_LINKS_MAX]
    refs += [k for k, _ in listed]
    async with r.pipeline(transaction=False) as pipe:
        for ref in refs:
            pipe.hget(ref, "st")
        states = await pipe.execute()

    def node(ref: bytes, st: bytes | None) -> dict[str, Any]:
        base, node_id = split_job_key(ref.decode())
        # As users see it: a job a worker holds ahead is waiting (job.public_state).
        return {"queue": _queue_of(base, prefix), "id": node_id,
                "state": "unknown" if st is None else public_state(st.decode())}

    parent = node(par, states[0]) if par is not None else None
    outcome = {b"": "pending", b"c": "completed", b"f": "failed"}
    children = [{**node(ref, st), "outcome": outcome.get(v[:1], "failed")}
                for (ref, v), st in zip(listed, states[len(refs) - len(listed):], strict=True)]
    return {"parent": parent, "children": children, "more": max(0, len(kids) - len(listed))}


class FlowProducer:
    """Adds trees of jobs. ``FlowProducer(url=...)`` or ``FlowProducer(connection=...)``;
    queues are named in the tree and share ``prefix``."""

    def __init__(self, *, url: str | None = None, connection: Any = None,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._own = connection is None
        self._url = url
        self.redis: Any = (check_client(connection, "FlowProducer", url) if connection is not None
                           else connect(url))
        self._queues: dict[str, Queue] = {}
        # As Queue's: each call carries this producer's id and next number (lua/add_flow.lua).
        self._producer, self._pid, self._seq = uuid.uuid4().hex[:16], os.getpid(), 0
        self._lock = asyncio.Lock()
        # Calls whose outcome is unknown, fenced before the next call (minique/unsettled.py).
        self._fences = Fences()

    async def _fence_unsettled(self) -> None:
        """As Queue's: fences the calls whose outcome is unknown before the next one goes;
        ``AddNotSent`` when Redis does not answer (the next call was not sent)."""
        if not self._fences:
            return
        try:
            await self._fences.fence(self.redis)
        except (RedisError, OSError) as exc:
            raise AddNotSent(
                "this flow was not sent: an earlier add_flow's outcome is unknown, and Redis "
                f"did not answer the fence that settles it ({type(exc).__name__}: {exc})") from exc

    async def settle(self, error: AddOutcomeUnknown) -> bool:
        """Settles an ``AddOutcomeUnknown`` that this FlowProducer's ``add``/``add_bulk``
        raised: fences the call (lua/fence_add.lua), so that no copy of it still in the
        network adds anything from now on, and says whether it ran (True: every job of the
        call was added, atomically; False: none was, and none ever will be: adding the
        tree again is safe). One script call, none when a later add already fenced it.
        ``SettleError`` when Redis does not answer or the error is too old; ValueError for
        an error another producer raised."""
        if not error.calls or any(c.producer != self._producer for c in error.calls):
            raise ValueError("settle an AddOutcomeUnknown with the FlowProducer that raised it")
        async with self._lock:
            try:
                await self._fences.fence(self.redis)
            except (RedisError, OSError) as exc:
                raise SettleError(f"Redis did not answer the fence ({type(exc).__name__}: "
                                  f"{exc}); settle again once it does") from exc
        return all(self._fences.outcome(call) is not None for call in error.calls)

    def _queue(self, name: Any) -> Queue:
        from .queue import Queue

        if not isinstance(name, str):
            raise FlowError(f"a node's queue must be a queue name, got {name!r}")
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis, prefix=self.prefix)
        return self._queues[name]

    def _flatten(self, tree: Any) -> tuple[list[_Prepared], list[list[int]]]:
        nodes: list[_Prepared] = []
        children: list[list[int]] = []
        seen: set[tuple[str, str]] = set()
        # Per node, the queues (by id) of it and its ancestors that have a priority: a
        # child's failure may climb (fail_parent) to any ancestor, and release one under
        # 'ignore' or 'remove_dependency'; one in the child's queue with a priority then
        # goes ahead of what the child's worker holds (parent_ahead).
        prioritized: list[frozenset[int]] = []
        stack: list[tuple[Any, str]] = [(tree, "")]
        while stack:
            node, parent = stack.pop()
            where = f"flow node {len(nodes) + 1}"
            if not isinstance(node, Mapping):
                raise FlowError(f"{where} must be a dict with name and queue, got {node!r}")
            extra = set(node) - NODE_KEYS
            if extra:
                raise FlowError(f"{where}: unknown key(s) {sorted(extra)}; "
                                f"use {', '.join(sorted(NODE_KEYS))}")
            opts = dict(node.get("opts") or {})
            own_policy = policy_code(opts.pop("on_failure", "fail_parent"))
            if not parent and own_policy != "f":
                raise FlowError(f"{where}: on_failure applies to children only")
            queue = self._queue(node.get("queue"))
            above = prioritized[int(parent[1:]) - 1] if parent else frozenset()
            prepared = prepare_child(queue, node.get("name", ""), node.get("data"), opts,
                                     parent, own_policy, id(queue) in above)
            if prepared.resolved.wire_priority:
                above = above | {id(queue)}
            prioritized.append(above)
            if prepared.args[0]:
                ident = (queue.keys.base, prepared.args[0])
                if ident in seen:
                    raise FlowError(f"job {prepared.args[0]!r} of queue {queue.name!r} appears "
                                    "twice in the flow (a job cannot be its own ancestor)")
                seen.add(ident)
            nodes.append(prepared)
            children.append([])
            index = len(nodes)
            if parent:
                children[int(parent[1:]) - 1].append(index - 1)
            kids = node.get("children") or []
            if not isinstance(kids, list | tuple):
                raise FlowError(f"{where}: children must be a list, got {kids!r}")
            for kid in reversed(kids):
                stack.append((kid, f"#{index}"))
            if len(nodes) > MAX_NODES:
                raise FlowError(f"a flow has at most {MAX_NODES} jobs")
        return nodes, children

    async def add(self, tree: Mapping[str, Any]) -> FlowNode:
        """Adds the tree atomically; returns its nodes. FlowError/ValueError/TypeError for a
        bad tree, ``InvalidJobState`` if one of its custom ids exists already: then nothing
        was written."""
        return (await self._add_trees([tree], name_trees=False))[0]

    async def add_bulk(self, trees: Sequence[Mapping[str, Any]]) -> list[FlowNode]:
        """Adds several trees in one script call, all of them or none (BullMQ's
        ``addBulk``); returns their root nodes in the order given. At most MAX_NODES
        (10,000) jobs in all. Errors as for ``add``: a bad tree (named by its index, from
        0), a job
        that appears twice across the trees or a custom id that exists already writes
        nothing."""
        if isinstance(trees, Mapping | str | bytes) or not isinstance(trees, Sequence):
            raise FlowError(f"add_bulk takes a list of trees, got {type(trees).__name__}")
        return await self._add_trees(trees, name_trees=True)

    async def _add_trees(self, trees: Sequence[Mapping[str, Any]], *,
                         name_trees: bool) -> list[FlowNode]:
        if not trees:
            return []
        if os.getpid() != self._pid:  # before any Queue of the tree is made
            self._after_fork()
        nodes: list[_Prepared] = []
        children: list[list[int]] = []
        roots: list[int] = []
        seen: set[tuple[str, str]] = set()
        for t, tree in enumerate(trees):
            try:
                flat, kids = self._flatten(tree)
            except (ValueError, TypeError) as exc:  # FlowError, PayloadError among them
                if not name_trees:
                    raise
                raise _in_tree(exc, t) from None
            offset = len(nodes)
            for node in flat:
                if node.parent.startswith("#"):  # '#k': node k of this call, 1-based
                    node.parent = f"#{int(node.parent[1:]) + offset}"
                if node.args[0]:
                    ident = (node.queue.keys.base, node.args[0])
                    if ident in seen:
                        raise FlowError(f"tree {t}: job {node.args[0]!r} of queue "
                                        f"{node.queue.name!r} is in an earlier tree too")
                    seen.add(ident)
            roots.append(offset)
            nodes.extend(flat)
            children.extend([k + offset for k in ks] for ks in kids)
            if len(nodes) > MAX_NODES:
                raise FlowError(f"add_bulk adds at most {MAX_NODES} jobs in all")
        async with self._lock:
            await self._fence_unsettled()
            self._seq += 1
            try:
                now_ms = await submit(self.redis, nodes, self._producer, self._seq)
            except AddOutcomeUnknown as exc:
                self._fences.add(list(exc.calls))
                raise
            except BaseException:
                self._fences.add([unsettled_call(nodes, self._producer, self._seq)])
                raise
        built = [FlowNode(_made(n, now_ms, bool(children[i]))) for i, n in enumerate(nodes)]
        for i, kid_indexes in enumerate(children):
            built[i].children = [built[k] for k in kid_indexes]
        return [built[r] for r in roots]

    def _after_fork(self) -> None:
        """A forked child is a producer of its own, with connections of its own: the
        parent's pooled sockets (and their event loop) are not the child's, and a call sent
        on one could be written and its reply lost (then a retry adds twice). Raises
        RuntimeError, before anything is sent, for a connection the caller gave."""
        if not self._own:
            raise RuntimeError("this FlowProducer was given a connection in another process; "
                               "make a FlowProducer (and its connection) in this one")
        self.redis = connect(self._url)
        self._queues = {}
        self._producer, self._pid, self._seq = uuid.uuid4().hex[:16], os.getpid(), 0
        self._lock = asyncio.Lock()
        self._fences = Fences()

    async def get_flow(self, queue: str, job_id: str, *, depth: int = 10,
                       max_children: int = FLOW_LINKS_MAX) -> FlowNode | None:
        """The tree under job ``job_id`` of ``queue`` as stored now (BullMQ's ``getFlow``):
        a FlowNode of the Job, its children's nodes ``depth`` levels down (0: none), at most
        ``max_children`` per job, ordered by their job keys. Children already deleted (by
        their retention, or removed) are left out. None if the job does not exist. Reads
        one level per round trip."""
        if os.getpid() != self._pid:
            self._after_fork()
        _positive = (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0
                     and isinstance(max_children, int) and not isinstance(max_children, bool)
                     and max_children >= 1)
        if not _positive:
            raise ValueError(f"depth must be an integer >= 0 and max_children one >= 1, got "
                             f"{depth!r} and {max_children!r}")
        [root] = await self._nodes([(self._queue(queue), job_id)])
        level = [root] if root is not None else []
        for _ in range(depth):
            if not level:
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for node in level:
                    pipe.hkeys(f"{node.job.queue.keys.base}:kids:{node.job.id}")
                kid_keys = await pipe.execute()
            wanted: list[tuple[Queue, str]] = []
            owners: list[FlowNode] = []
            for node, keys in zip(level, kid_keys, strict=True):
                for key in sorted(keys)[:max_children]:
                    base, kid_id = split_job_key(key.decode())
                    wanted.append((self._queue(_queue_of(base, self.prefix)), kid_id))
                    owners.append(node)
            found = await self._nodes(wanted)
            level = []
            for owner, kid in zip(owners, found, strict=True):
                if kid is not None:
                    owner.children.append(kid)
                    level.append(kid)
        return root

    async def _nodes(self, refs: list[tuple[Queue, str]]) -> list[FlowNode | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for q, kid_id in refs:
                pipe.hgetall(q.keys.job(kid_id))
            hashes = await pipe.execute()
        return [FlowNode(Job.from_hash(q, kid_id, h)) if h else None
                for (q, kid_id), h in zip(refs, hashes, strict=True)]

    async def close(self) -> None:
        """Settles the calls whose outcome is unknown where Redis answers (see
        Queue.close), then closes the client if the FlowProducer made it."""
        if self._fences and os.getpid() == self._pid:
            with contextlib.suppress(RedisError, OSError):
                await self._fences.fence(self.redis)
        if self._own:
            await self.redis.aclose()

    async def __aenter__(self) -> FlowProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
