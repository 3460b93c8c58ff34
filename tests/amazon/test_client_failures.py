"""Failure classification: throttling, 5xx, timeouts, drops, bad bodies, revoked sellers."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from processors.amazon import (
    AccountDisconnected,
    AmazonAccount,
    AmazonClient,
    AmazonClientError,
    AmazonConnectionError,
    AmazonDecodeError,
    AmazonRateLimited,
    AmazonServerError,
    AmazonTimeoutError,
    AmazonTransientError,
    RedisQuota,
)
from processors.amazon.models.ads import SP_CAMPAIGNS
from processors.amazon.redact import redact_url
from processors.amazon.usage_plans import plan_for
from processors.fake_amazon import FakeAmazon, FakeAmazonServer

from .helpers import settings_for


async def test_429_storm_raises_rate_limited_with_resume_token(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon, redis_client: aioredis.Redis
) -> None:
    now = fake.clock.now()
    window = {
        "last_updated_after": now - timedelta(days=120),
        "last_updated_before": now - timedelta(minutes=3),
    }
    first = await client.sp.search_orders(account, **window)
    assert first.next_token
    fake.inject("searchOrders", "throttle", times=3)
    bucket = client.caller.quota.key(account.id, "searchOrders")  # type: ignore[union-attr]
    throttled = 0
    for _ in range(10):
        try:
            resumed = await client.sp.search_orders(account, pagination_token=first.next_token, **window)
            break
        except AmazonRateLimited as exc:
            assert exc.resume_token == first.next_token
            assert exc.delay > 0
            throttled += 1
        # Retrying at once is refused by the drained shared bucket, without reaching Amazon.
        calls = fake.calls("searchOrders")
        with pytest.raises(AmazonRateLimited) as local:
            await client.sp.search_orders(account, pagination_token=first.next_token, **window)
        assert local.value.resume_token == first.next_token
        assert fake.calls("searchOrders") == calls
        # The job's delay elapses (simulated by forgetting the bucket).
        await redis_client.delete(bucket)
    assert throttled == 3
    assert resumed.orders


async def test_ads_429_honours_retry_after(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    fake.inject("listProfiles", "throttle", retry_after=9)
    with pytest.raises(AmazonRateLimited) as caught:
        await client.ads.list_profiles(account)
    assert caught.value.delay == 9


async def test_503_html_is_transient_not_empty(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    fake.inject("getInventorySummaries", "html_5xx", status=503)
    with pytest.raises(AmazonServerError) as caught:
        await client.sp.get_inventory_summaries(account)
    assert isinstance(caught.value, AmazonTransientError)
    assert caught.value.status == 503


async def test_slow_response_times_out(fake_server: FakeAmazonServer, account: AmazonAccount) -> None:
    fake_server.fake.inject("getMarketplaceParticipations", "slow", delay=1.0)
    settings = settings_for(fake_server.url)
    settings = type(settings)(endpoints=settings.endpoints, timeout=httpx.Timeout(0.2, connect=1.0))
    async with AmazonClient(settings) as amazon:
        with pytest.raises(AmazonTimeoutError) as caught:
            await amazon.sp.get_marketplace_participations(account)
    assert isinstance(caught.value, AmazonTransientError)


async def test_dropped_connection_is_transient(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    fake.inject("getMarketplaceParticipations", "drop")
    with pytest.raises(AmazonConnectionError):
        await client.sp.get_marketplace_participations(account)
    assert await client.sp.get_marketplace_participations(account)


async def test_undecodable_body_is_a_hard_error(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    fake.inject("getInventorySummaries", "garbage")
    with pytest.raises(AmazonDecodeError):
        await client.sp.get_inventory_summaries(account)


async def test_revoked_seller_is_disconnected(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    await client.sp.get_marketplace_participations(account)
    fake.revoke(0)
    with pytest.raises(AccountDisconnected) as caught:
        await client.sp.get_marketplace_participations(account)
    assert "account disconnected" in str(caught.value)
    # The 403 dropped the cached token, and the refresh then met invalid_grant.
    assert "invalid_grant" in str(caught.value)


async def test_persistent_403_after_refresh_is_disconnected(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    fake.inject("getMarketplaceParticipations", "expire_token", times=2)
    with pytest.raises(AccountDisconnected):
        await client.sp.get_marketplace_participations(account)
    assert fake.lwa_calls == 2


async def test_invalid_input_is_a_client_error(client: AmazonClient, account: AmazonAccount) -> None:
    with pytest.raises(AmazonClientError):
        await client.sp.get_report(account, "no-such-report")


async def test_secrets_stay_out_of_reprs_errors_and_logs(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.sp.get_marketplace_participations(account)
    access_token = next(iter(fake.tokens))
    fake.revoke(0)
    with pytest.raises(AccountDisconnected) as caught:
        await client.sp.get_marketplace_participations(account)
    secrets = [account.refresh_token.reveal(), account.lwa_client_secret.reveal(), access_token]
    texts = [repr(account), str(caught.value), repr(caught.value), caplog.text]
    for text in texts:
        for secret in secrets:
            assert secret not in text


async def test_empty_shared_bucket_raises_before_calling_amazon(
    fake_server: FakeAmazonServer, account: AmazonAccount, redis_client: aioredis.Redis
) -> None:
    quota = RedisQuota(redis_client)
    operation = "getMarketplaceParticipations"
    async with AmazonClient(settings_for(fake_server.url), quota=quota) as amazon:
        await amazon.sp.get_marketplace_participations(account)
        # Other workers spent the rest (drained directly: no timing involved).
        await quota.drain(account.id, operation, *plan_for(operation))
        calls = fake_server.fake.calls(operation)
        with pytest.raises(AmazonRateLimited) as caught:
            await amazon.sp.get_marketplace_participations(account)
    # One token takes 1/rate seconds to come back: about 69 s for this operation.
    assert caught.value.delay > 1.0
    assert fake_server.fake.calls("getMarketplaceParticipations") == calls


async def test_presigned_report_urls_are_redacted_from_logs(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs each request's URL at INFO; a presigned URL's signature is a credential."""
    caplog.set_level(logging.INFO)
    profile = str(fake.sellers[0].profile_id)
    end = fake.clock.now().date() - timedelta(days=2)
    report = await client.ads.create_report(account, profile, SP_CAMPAIGNS, start=end, end=end)
    while report.status != "COMPLETED":
        report = await client.ads.get_report(account, report.report_id, profile)
    assert report.url is not None
    signature = httpx.URL(report.url).params["X-Amz-Signature"]
    credential = httpx.URL(report.url).params["X-Amz-Credential"]
    assert await client.ads.download_report(report, SP_CAMPAIGNS)
    downloads = [r.getMessage() for r in caplog.records if "__s3" in r.getMessage()]
    assert downloads and all("X-Amz-Signature=REDACTED" in m for m in downloads)
    assert signature not in caplog.text and credential not in caplog.text
    assert redact_url(report.url).count("REDACTED") == 2
