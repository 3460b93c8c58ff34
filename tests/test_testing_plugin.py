"""minique.testing as a user runs it: a pytest session of their own, with the plugin enabled,
testing processors through the real scripts on the server the plugin starts."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import asyncio
from minique import Registry, UnrecoverableError

registry = Registry()
sent = []

@registry.processor("emails", name="welcome")
async def welcome(job):
    if "@" not in job.data["to"]:
        raise UnrecoverableError(f"bad address {job.data['to']!r}")
    sent.append(job.data["to"])
    return {"sent": True}

@registry.processor("emails", name="flaky")
def flaky(job):  # a plain def runs in a thread, as in production
    if job.attempts_made < 2:
        raise ConnectionError("smtp reset")
    return "delivered"

@registry.processor("reports", name="daily")
async def daily(job):
    await asyncio.sleep(0.01)
    return len(job.data)


async def test_processors_run_until_the_queues_are_empty(minique):
    emails = minique.queue("emails")
    ok = await emails.add("welcome", {"to": "ann@example.org"})
    bad = await emails.add("welcome", {"to": "nobody"})
    retried = await emails.add("flaky", None, attempts=3, backoff=0.05)
    report = await minique.queue("reports").add("daily", [1, 2, 3])
    result = await minique.run_until_empty(registry)
    assert sorted(result.completed) == sorted([ok.id, retried.id, report.id])
    assert result.failed == [bad.id]
    assert (await emails.get_job(ok.id)).return_value == {"sent": True}
    assert (await emails.get_job(retried.id)).attempts_made == 3
    assert "bad address" in (await emails.get_job(bad.id)).failed_reason
    assert sent == ["ann@example.org"]


async def test_each_test_has_queues_of_its_own(minique):
    emails = minique.queue("emails")
    assert (await emails.get_stats())["total"] == 0  # nothing left from the test before
    await emails.add("welcome", {"to": "bo@example.org"}, delay=3600)  # not due: not waited for
    result = await minique.run_until_empty(registry, timeout=5)
    assert result.completed == [] and (await emails.get_stats())["delayed"] == 1


async def test_a_single_function_needs_its_queue(minique):
    async def double(job):
        return job.data * 2
    job = await minique.queue("math").add("double", 21)
    await minique.run_until_empty(double, queues=["math"])
    assert await job.wait_until_finished(timeout=1) == 42
'''


def test_the_plugin_runs_a_users_processor_tests(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIQUE_TEST_REDIS_URL", raising=False)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "minique.testing", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_plugin_uses_a_given_server(pytester: pytest.Pytester, redis_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIQUE_TEST_REDIS_URL", redis_url)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_given=f'''
async def test_url(minique, minique_redis_url):
    assert minique_redis_url == "{redis_url}"
    job = await minique.queue("q").add("x", 1)
    assert (await minique.queue("q").get_job(job.id)).data == 1
''')
    result = pytester.runpytest_subprocess("-p", "minique.testing", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # Cleaned up: no key of a test prefix is left on the shared server.
    import redis

    client = redis.Redis.from_url(redis_url)
    assert not list(client.scan_iter(match="{test-*", count=1000))
    client.close()


def test_the_fixtures_work_in_pytest_asyncios_strict_mode(pytester: pytest.Pytester, redis_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Strict is pytest-asyncio's default: a project that never set asyncio_mode marks its
    # tests, and the plugin's async fixture must still be set up (a plain pytest.fixture
    # is not: "requested an async fixture 'minique', with no plugin or hook that handled it").
    monkeypatch.setenv("MINIQUE_TEST_REDIS_URL", redis_url)
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_strict='''
import pytest

@pytest.mark.asyncio
async def test_strict(minique):
    job = await minique.queue("q").add("x", 1)
    assert (await minique.queue("q").get_job(job.id)).data == 1
''')
    result = pytester.runpytest_subprocess("-p", "minique.testing", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
