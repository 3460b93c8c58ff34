"""The dashboard's groups view through its API and pages (docs/guide/dashboard.md#groups):
the busiest groups, paused and throttled ones, one group's jobs, pause and resume; and a
queue name with '/' in every link."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

from driver import fetch
from test_dashboard_api import Api, api
from test_dashboard_metrics import samples

from minique import Queue
from minique.dashboard.ids import encode_id

__all__ = ["api"]  # the fixture, imported so that pytest finds it here


async def test_groups_api_orders_counts_and_pages(api: Api, queue: Queue) -> None:
    await queue.add_bulk([("sync", i, {"group": "acct-1"}) for i in range(5)])
    await queue.add_bulk([("sync", i, {"group": "acct-2"}) for i in range(3)])
    await queue.add_bulk([("sync", i, {"group": "acct-3"}) for i in range(1)])
    await queue.set_group_defaults(concurrency=2)
    await queue.set_group_options("acct-3", limiter={"max": 1, "duration": 60})
    await fetch(queue, 3)  # one turn each; acct-3 has no job left
    await fetch(queue, 1)  # acct-1 again: at its default concurrency of 2
    await queue.pause_group("acct-2")
    base = f"/api/queues/{queue.name}/groups"
    busiest = await api.get(base)
    assert [(g["id"], g["waiting"]) for g in busiest["groups"]] == [
        ("acct-1", 3), ("acct-2", 2), ("acct-3", 0)]
    # acct-2 keeps its turn in the round-robin ("ready") until a fetch finds it paused.
    assert busiest["counts"] == {"groups": 3, "active": 3, "paused": 1, "throttled": 0,
                                 "ready": 1}
    assert busiest["defaults"] == {"concurrency": 2, "limiter": None}
    running = await api.get(f"{base}?by=active")
    assert [(g["id"], g["active"]) for g in running["groups"]] == [
        ("acct-1", 2), ("acct-3", 1), ("acct-2", 1)]
    paused = await api.get(f"{base}?by=paused")
    assert [g["id"] for g in paused["groups"]] == ["acct-2"] and paused["total"] == 1
    acct3 = next(g for g in busiest["groups"] if g["id"] == "acct-3")
    assert acct3["limiter"] == {"max": 1, "duration": 60.0} and acct3["window_starts"] == 1
    second = await api.get(f"{base}?page=2&page_size=2")
    assert [g["id"] for g in second["groups"]] == ["acct-3"] and second["pages"] == 2
    err = await api.get(f"{base}?by=loudest", status=400)
    assert err["error"]["code"] == "bad_parameter"
    await api.get(f"{base}?page_size=500", status=400)
    await api.get("/api/queues/no-such-queue/groups", status=404)


async def test_group_detail_jobs_running_and_actions(api: Api, queue: Queue) -> None:
    group = "acme/eu west"  # a '/' and a space: written as ~base64url in paths
    jobs = await queue.add_bulk([("sync", i, {"group": group}) for i in range(4)])
    urgent = await queue.add("sync", 99, group=group, priority=1)
    taken = await fetch(queue, 1)
    assert taken[0][0] == urgent.id
    seg = encode_id(group)
    detail = await api.get(f"/api/queues/{queue.name}/groups/{seg}?page_size=2")
    assert detail["group"]["id"] == group and detail["group"]["waiting"] == 4
    assert [j["id"] for j in detail["jobs"]] == [jobs[0].id, jobs[1].id]
    assert detail["pages"] == 2 and [j["id"] for j in detail["running"]] == [urgent.id]
    later = await api.get(f"/api/queues/{queue.name}/groups/{seg}?page=2&page_size=2")
    assert [j["id"] for j in later["jobs"]] == [jobs[2].id, jobs[3].id]
    missing = await api.get(f"/api/queues/{queue.name}/groups/nobody", status=404)
    assert missing["error"]["code"] == "group_not_found"
    # Pause and resume: CSRF as for every action.
    r = await api.c.post(f"/api/queues/{queue.name}/groups/{seg}/pause")
    assert r.status_code == 403
    paused = await api.post(f"/api/queues/{queue.name}/groups/{seg}/pause")
    assert paused["paused"] is True
    info = await queue.get_group(group)
    assert info is not None and info.paused
    assert (await api.post(f"/api/queues/{queue.name}/groups/{seg}/resume"))["paused"] is False
    await api.post(f"/api/queues/{queue.name}/groups/{seg}/explode", status=404)
    assert not (await queue.get_group(group)).paused  # type: ignore[union-attr]
    schema = await api.get("/api/openapi.json")
    assert "/api/queues/{queue}/groups/{group}/{action}" in schema["paths"]


async def test_groups_pages_render(api: Api, queue: Queue) -> None:
    await queue.add_bulk([("sync", i, {"group": "acct/7"}) for i in range(3)])
    await queue.add("sync", 1, group="<b>bold</b>")
    await queue.pause_group("acct/7")
    seg = encode_id("acct/7")
    listing = await api.c.get(f"/queues/{queue.name}/groups")
    assert listing.status_code == 200
    assert f'href="/queues/{queue.name}/groups/{seg}"' in listing.text
    assert f'hx-post="/api/queues/{queue.name}/groups/{seg}/resume"' in listing.text
    assert "<b>bold</b>" not in listing.text and "&lt;b&gt;bold&lt;/b&gt;" in listing.text
    paused = await api.c.get(f"/queues/{queue.name}/groups?by=paused")
    assert 'data-group="acct/7"' in paused.text and "&lt;b&gt;" not in paused.text
    page = await api.c.get(f"/queues/{queue.name}/groups/{seg}")
    assert page.status_code == 200 and 'id="group-jobs"' in page.text
    assert page.text.count('<tr data-job="') == 3 and "paused" in page.text
    assert (await api.c.get(f"/queues/{queue.name}/groups/nobody")).status_code == 404
    assert (await api.c.get(f"/queues/{queue.name}/groups?by=x")).status_code == 400
    queue_page = await api.c.get(f"/queues/{queue.name}")
    assert f'href="/queues/{queue.name}/groups"' in queue_page.text


async def test_a_queue_name_with_a_slash_is_one_segment_in_every_link(
        api: Api, redis_url: str, qname: str) -> None:
    name = f"{qname[:20]}/eu/..%2F"
    q = Queue(name, url=redis_url)
    try:
        job = await q.add("report", {"n": 1}, group="g")
        seg = encode_id(name)
        assert "/" not in seg
        home = await api.c.get("/")
        assert f'href="/queues/{seg}"' in home.text
        hrefs = re.findall(r'(?:href|hx-post)="([^"]*)"', home.text)
        assert not any(h.startswith(f"/queues/{name}") for h in hrefs)
        page = await api.c.get(f"/queues/{seg}")
        assert page.status_code == 200 and f"/queues/{seg}/jobs/{job.id}" in page.text
        assert f'hx-post="/api/queues/{seg}/pause"' in page.text
        assert (await api.c.get(f"/queues/{seg}/jobs/{job.id}")).status_code == 200
        assert (await api.c.get(f"/queues/{seg}/groups/g")).status_code == 200
        detail = await api.get(f"/api/queues/{seg}")
        assert detail["name"] == name and detail["counts"]["waiting"] == 1
        await api.post(f"/api/queues/{seg}/pause")
        assert await q.is_paused()
        # The live stream of the page names the queue itself, in its query string.
        assert f'data-stream="/api/stream?{urlencode({"queue": name})}"' in page.text
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_metrics_count_groups_by_kind_not_one_series_per_group(api: Api, queue: Queue) -> None:
    await queue.add_bulk([("sync", i, {"group": f"acct-{i}"}) for i in range(4)])
    await queue.pause_group("acct-0")
    await fetch(queue, 2)  # acct-1 and acct-2 start one job each (acct-0 is paused)
    text = (await api.c.get("/metrics")).text
    got = samples(text)
    q = queue.name
    assert {kind: got[("minique_queue_groups", (("kind", kind), ("queue", q)))]
            for kind in ("groups", "active", "paused", "throttled")} == {
        "groups": 4, "active": 2, "paused": 1, "throttled": 0}
    assert "acct-1" not in text


async def test_pages_link_to_their_neighbours_keeping_their_filters(api: Api, queue: Queue) -> None:
    """The pager of the job list, the groups list and one group's jobs (macros.html pager):
    each page links to the next and the previous, with the listing's own parameters."""
    await queue.add_bulk([("sync", i, {"group": f"g{i}"}) for i in range(60)])
    await queue.add_bulk([("sync", i, {"group": "big"}) for i in range(30)])
    await queue.add_bulk([("plain", i) for i in range(30)])
    seg = encode_id("big")
    for url, query, more in (
            (f"/queues/{queue.name}", {"state": "waiting"}, {"state": "waiting"}),
            (f"/queues/{queue.name}/groups", {"by": "waiting"}, {"by": "waiting"}),
            (f"/queues/{queue.name}/groups/{seg}", {}, {})):
        first = html.unescape((await api.c.get(f"{url}?{urlencode(query)}")).text)
        assert "page 1 of " in first, url
        assert f'href="{url}?{urlencode({"page": 2, **more})}"' in first, url
        second = html.unescape((await api.c.get(f"{url}?{urlencode({**query, 'page': 2})}")).text)
        assert f'href="{url}?{urlencode({"page": 1, **more})}"' in second, url
