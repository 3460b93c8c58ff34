"""Break round 34: add's re-sends across add, add_bulk and add(parent=...) on one Queue.

Found by a break run through a proxy that acts at an exact command (tests/reply_proxy.py)
against the producer records of break round 33 (includes/producers.lua). Each test fails
on the code before its fix (b778c7e).
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis
from helpers import server_binary, wait_until
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from reply_proxy import ReplyProxy as Proxy

from minique import Queue, scripts
from minique.errors import AddBulkIncomplete
from minique.server import RedisServer

# add_flow.lua cannot read add.lua's producer record ("top|ms" / "top:gaps|ms" has one
# '|', its pattern wants two): a first send of add(parent=...) that arrives late, after
# redis-py's re-send of it ran and after a later add() of the same Queue ran, is not
# recognised as a re-send: the child is added a second time (and the record goes back).

async def test_stale_first_send_of_add_with_parent_adds_the_child_twice():
    with RedisServer(binary=server_binary()) as s:
        admin = aredis.Redis.from_url(s.url)
        release = asyncio.Event()
        state = {"held": False}

        async def on_request(conn, args):
            # The first add_flow call: held in the proxy (a slow network path) until the
            # test lets it through; the client times out and redis-py sends it again.
            if (not state["held"] and args and args[0].upper() == b"FCALL"
                    and b"add_flow" in args[1]):
                state["held"] = True
                await release.wait()
            return None

        proxy = await Proxy(s.port, on_request=on_request).start()
        client = aredis.Redis.from_url(
            proxy.url, socket_timeout=0.5, retry=Retry(NoBackoff(), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        q = Queue("flowstale", connection=client)
        try:
            parent = await q.add("parent", {}, delay=60)
            child = await q.add("child", {"c": 1}, parent=parent)   # seq 2, sent twice
            assert state["held"]
            await q.add("later", {})                                  # seq 3: "3|ms"
            before = (await admin.info("commandstats"))["cmdstat_fcall"]["calls"]
            release.set()                                             # the late first send

            async def stale_send_ran() -> bool:
                return bool((await admin.info("commandstats"))["cmdstat_fcall"]["calls"] > before)
            await wait_until(stale_send_ran, timeout=10, message="the late first send ran")
            kids = await admin.hgetall(f"{q.keys.base}:kids:{parent.id}")
            children = []
            async for k in admin.scan_iter(match="{minique:flowstale}:j:*"):
                j = await q.get_job(k.decode().rsplit(":", 1)[1])
                if j is not None and j.name == "child":
                    children.append(j.id)
            assert children == [child.id] and len(kids) == 1, (
                f"add(parent=...) returned child {child.id}; children in Redis {children}, "
                f"parent's kids {sorted(kids)}; producers record "
                f"{await admin.hgetall(q.keys.base + ':producers')}")
        finally:
            release.set()
            await q.close()
            await proxy.close()
            await admin.aclose()


# The late first send of add(parent=...) (see test_flow_stale_send_after_add.py) also
# writes its own number over add.lua's record: the record goes back below numbers that ran.
# An add_bulk call that ran then, whose reply is lost with the connection, is re-sent with
# its number and runs again: its 250 jobs are added twice (fresh automatic ids).

async def test_stale_add_flow_send_makes_a_bulk_resend_run_twice():
    with RedisServer(binary=server_binary()) as s:
        admin = aredis.Redis.from_url(s.url)
        release = asyncio.Event()
        state = {"held": False, "dropped": False}
        q = None

        async def on_request(conn, args):
            if (not state["held"] and args and args[0].upper() == b"FCALL"
                    and b"add_flow" in args[1]):
                state["held"] = True
                await release.wait()
            return None

        async def on_reply(conn, req, rep):
            # The reply of the bulk's 2nd call (seq 4: it ran): let the late add_flow
            # send in first, then lose this reply with the connection.
            if (not state["dropped"] and req and req[0].upper() == b"FCALL"
                    and b"add_flow" not in req[1] and isinstance(rep, list)
                    and len(rep) > 400):
                if state.get("bulk_seen"):
                    state["dropped"] = True
                    release.set()
                    for _ in range(200):
                        rec = await admin.hget(q.keys.base + ":producers", q._producer)
                        if rec and rec.startswith(b"2|"):
                            break
                        await asyncio.sleep(0.01)
                    return "drop"
                state["bulk_seen"] = True
            return None

        proxy = await Proxy(s.port, on_reply=on_reply, on_request=on_request).start()
        client = aredis.Redis.from_url(
            proxy.url, socket_timeout=0.5, retry=Retry(NoBackoff(), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        q = Queue("flowbulk", connection=client)
        try:
            parent = await q.add("parent", {}, delay=60)             # seq 1
            await q.add("child", {}, parent=parent)                  # seq 2, sent twice
            jobs = await q.add_bulk([("t", {"i": i}) for i in range(500)])  # seqs 3, 4
            assert state["dropped"]
            seen = {}
            async for k in admin.scan_iter(match="{minique:flowbulk}:j:*", count=1000):
                j = await q.get_job(k.decode().rsplit(":", 1)[1])
                if j is not None and j.name == "t":
                    seen.setdefault(j.data["i"], []).append(j.id)
            twice = {i: v for i, v in seen.items() if len(v) > 1}
            assert [j.data["i"] for j in jobs] == list(range(500))
            assert not twice, f"{len(twice)} of 500 bulk items added twice, e.g. {list(twice.items())[:3]}"
        finally:
            release.set()
            await q.close()
            await proxy.close()
            await admin.aclose()


# add.lua gives a job a fresh automatic id when the id the producer sent exists already
# (the id counter went back under the producer's reserved block: obliterate, or Redis
# restarted from an older snapshot, and another producer took the id). When that call's
# reply is lost and its re-send is answered as a re-send, the client reports the id it SENT:
# add() returns a Job whose id is another producer's job; its own job (the fresh id) is
# named nowhere.

@pytest.mark.parametrize("reset", ["obliterate", "old_snapshot"])
@pytest.mark.parametrize("how", ["add", "add_bulk"])
async def test_resent_add_reports_the_id_of_another_producers_job(tmp_path, reset, how):
    with RedisServer(binary=server_binary(), directory=str(tmp_path)) as s:
        admin = aredis.Redis.from_url(s.url)
        state = {"armed": False, "dropped": False}

        async def on_reply(conn, req, rep):
            # The add call of A after the reset: it ran (reply 0 or 2); lose its reply.
            if (state["armed"] and not state["dropped"] and req
                    and req[0].upper() == b"FCALL" and isinstance(rep, list)
                    and rep and rep[0] in (0, 2)):
                state["dropped"] = True
                return "drop"
            return None

        proxy = await Proxy(s.port, on_reply=on_reply).start()
        qa = Queue("ids", url=proxy.url)   # producer A, through the proxy
        try:
            if reset == "old_snapshot":
                await qa.add("a0", {"n": 0})
                await admin.save()                      # idc = 100, A's block 1..100
                await qa.add("a0b", {"n": 1})           # id 2, after the snapshot
                await qa.add_bulk([("a0c", {"n": i}) for i in range(300)])  # new block
                await admin.aclose()
                s.stop(kill=True)  # back to the snapshot (same port)
                s.start()
                admin = aredis.Redis.from_url(s.url)
                # A (the same Queue) keeps its numbers and the rest of its id block.
            else:
                await qa.add("a0", {"n": 0})            # A reserves 1..100, takes 1
                await Queue("ids", url=s.url).obliterate(force=True)
            qb = Queue("ids", url=s.url)                # producer B takes ids from 1 on
            await qb.add_bulk([("b", {"who": "B", "i": i}) for i in range(400)])
            await qb.close()
            state["armed"] = True
            if how == "add":
                got = [await qa.add("a1", {"who": "A"})]
            else:
                got = await qa.add_bulk([("a1", {"who": "A", "i": i}) for i in range(3)])
            assert state["dropped"]
            wrong = []
            for job in got:
                stored = await qa.get_job(job.id)
                if stored is None or stored.data.get("who") != "A":
                    wrong.append((job.id, stored and stored.data))
            assert not wrong, f"A's add returned ids of jobs that are not A's: {wrong}"
        finally:
            await qa.close()
            await proxy.close()
            await admin.aclose()


# (Expected to hold.) A bulk call refused unrun on every one of its 5 sends, while later
# calls ran, is fenced (lua/fence_add.lua): its gap in the record is closed, so that a late
# copy of it adds nothing; AddBulkIncomplete.not_added names exactly it; then single adds,
# coalesced adds, a child add and another bulk on the same Queue behave.

@pytest.mark.parametrize("pool", ["own", "blocking"])
async def test_gap_left_then_singles(pool):
    with RedisServer(binary=server_binary()) as s:
        admin = aredis.Redis.from_url(s.url)
        loader = aredis.Redis.from_url(s.url)
        target = {"seq": None, "n": 0}

        async def on_request(conn, args):
            if (args and args[0].upper() == b"FCALL" and b"add_flow" not in args[1]
                    and len(args) > 12 and target["seq"] is not None
                    and int(args[3 + int(args[2]) + 3]) == target["seq"]):
                target["n"] += 1
                await proxy.settled(conn)  # the calls before it run, it alone is refused
                await admin.execute_command("FUNCTION", "FLUSH")
            return None

        async def on_reply(conn, req, rep):
            # Another client puts the library back after each refusal of the target.
            if isinstance(rep, Exception) and b"not found" in str(rep).encode().lower():
                await scripts.load_library(loader)
            return None

        proxy = await Proxy(s.port, on_reply=on_reply, on_request=on_request).start()
        if pool == "own":
            q = Queue("gap", url=proxy.url)
        else:
            q = Queue("gap", connection=aredis.Redis(
                connection_pool=aredis.BlockingConnectionPool.from_url(proxy.url, max_connections=4)))
        try:
            await q.add("w", {})
            target["seq"] = q._add_seq + 3           # the 3rd of 6 calls
            with pytest.raises(AddBulkIncomplete) as ei:
                await q.add_bulk([("t", {"i": i}) for i in range(1500)])
            target["seq"] = None
            rec = await admin.hget(q.keys.base + ":producers", q._producer)
            assert b":" not in rec.split(b"|")[0], rec             # the gap is fenced
            assert ei.value.not_added == list(range(500, 750)), ei.value.not_added[:3]
            singles = await asyncio.gather(*[q.add("s", {"k": k}) for k in range(60)])
            parent = await q.add("p", {}, delay=60)
            child = await q.add("c", {}, parent=parent)
            more = await q.add_bulk([("t2", {"i": i}) for i in range(600)])
            ids = set()
            async for k in admin.scan_iter(match="{minique:gap}:j:*", count=2000):
                ids.add(k.decode().rsplit(":", 1)[1])
            for j in [*singles, child, *more, *ei.value.added]:
                assert j.id in ids
            names = {}
            for jid in ids:
                j = await q.get_job(jid)
                if j and j.name in ("t", "t2", "s"):
                    key = (j.name, (j.data or {}).get("i", (j.data or {}).get("k")))
                    names.setdefault(key, []).append(jid)
            assert all(len(v) == 1 for v in names.values())
            assert len([k for k in names if k[0] == "t"]) == 1250
            assert len([k for k in names if k[0] == "t2"]) == 600
            assert len([k for k in names if k[0] == "s"]) == 60
        finally:
            await q.close()
            await proxy.close()
            await admin.aclose()
            await loader.aclose()
