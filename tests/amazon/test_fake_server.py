"""The fake on its own: standalone start, Amazon's error shapes, expiring tokens, quotas."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from processors.fake_amazon import DAY_ZONES, FakeAmazon, FakeAmazonServer, FakeClock
from processors.fake_amazon.quotas import SP_API_USAGE_PLANS

INVENTORY = "/fba/inventory/v1/summaries"
MP = "ATVPDKIKX0DER"


def token_for(server: FakeAmazonServer, index: int = 0, grant: str = "sp") -> str:
    seller = server.fake.sellers[index]
    reply = httpx.post(
        server.url + "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": seller.client_id,
            "client_secret": seller.client_secret,
            "refresh_token": seller.ads_refresh_token if grant == "ads" else seller.refresh_token,
        },
    )
    assert reply.status_code == 200
    assert reply.json()["token_type"] == "bearer"
    return str(reply.json()["access_token"])


def test_standalone_prints_url_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "processors.fake_amazon", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 10
        while True:
            try:
                assert httpx.get(url + "/__fake/health").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "standalone fake did not answer"
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(10)


def test_seeded_data_is_deterministic_and_realistic() -> None:
    a, b = FakeAmazon(seed=3), FakeAmazon(seed=3)
    assert [o["orderId"] for o in a.data[0].orders] == [o["orderId"] for o in b.data[0].orders]
    data = a.data[0]
    days = {o["createdTime"][:10] for o in data.orders}
    assert len(days) == 90
    assert len(data.skus) >= 6
    assert any(t["transactionType"] == "Refund" for t in data.transactions)
    assert any(s["low_stock"] for s in data.skus)



@pytest.mark.parametrize("zone", DAY_ZONES)
def test_reset_rebuilds_data_built_before_a_midnight(zone: str) -> None:
    """A session running past midnight UTC: a first sync then reaches back whole days from the
    new day, so data still ending the day before yesterday would come up a day short. Past a
    marketplace's midnight its Ads data would lack the new yesterday."""
    fake = FakeAmazon(seed=3)
    index = DAY_ZONES.index(zone)
    fake.data_days = tuple(d - timedelta(days=i == index) for i, d in enumerate(fake.data_days))
    stale = fake.data
    fake.reset()
    assert fake.data is not stale
    assert fake.data_days == tuple(fake.clock.now().astimezone(ZoneInfo(z)).date() for z in DAY_ZONES)
    fresh = fake.data
    fake.reset()
    assert fake.data is fresh  # same days: kept (it is costly to build)


def _wall_at(moment: datetime) -> Callable[[], float]:
    """A wall clock that reads ``moment`` now and then runs on in real time."""
    shift = moment.timestamp() - time.time()
    return lambda: time.time() + shift


PACIFIC_MIDNIGHT = datetime(2026, 12, 5, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("seconds", [-599, -30, 0, 30, 599])
def test_a_clock_started_near_a_midnight_starts_clear_of_it(seconds: int) -> None:
    clock = FakeClock(clear_of=DAY_ZONES, wall=_wall_at(PACIFIC_MIDNIGHT + timedelta(seconds=seconds)))
    clear = PACIFIC_MIDNIGHT + timedelta(seconds=600)
    assert clear <= clock.now() < clear + timedelta(seconds=60)
    clock.advance(3600)
    clock.reset()
    assert clear <= clock.now() < clear + timedelta(seconds=60)


@pytest.mark.parametrize("moment", [PACIFIC_MIDNIGHT - timedelta(seconds=601),
                                    PACIFIC_MIDNIGHT + timedelta(hours=4)])
def test_a_clock_away_from_midnights_reads_the_wall(moment: datetime) -> None:
    clock = FakeClock(clear_of=DAY_ZONES, wall=_wall_at(moment))
    assert abs(clock.now() - moment) < timedelta(seconds=30)
    assert abs(FakeClock(wall=_wall_at(PACIFIC_MIDNIGHT)).now() - PACIFIC_MIDNIGHT) < timedelta(seconds=30)


def test_lwa_rejects_unknown_refresh_token(fake_server: FakeAmazonServer) -> None:
    seller = fake_server.fake.sellers[0]
    reply = httpx.post(
        fake_server.url + "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": seller.client_id,
            "client_secret": seller.client_secret,
            "refresh_token": "Atzr|nope",
        },
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_grant"


def test_missing_parameters_get_amazon_error_shape(fake_server: FakeAmazonServer) -> None:
    headers = {"x-amz-access-token": token_for(fake_server)}
    reply = httpx.get(fake_server.url + INVENTORY, params={"granularityType": "Marketplace"}, headers=headers)
    assert reply.status_code == 400
    error = reply.json()["errors"][0]
    assert error["code"] == "InvalidInput"
    assert "granularityId" in error["message"]
    assert "x-amzn-RequestId" in reply.headers


def test_unauthenticated_call_is_403_unauthorized(fake_server: FakeAmazonServer) -> None:
    reply = httpx.get(fake_server.url + "/sellers/v1/marketplaceParticipations")
    assert reply.status_code == 403
    assert reply.json()["errors"][0]["code"] == "Unauthorized"


def test_inventory_token_expires_after_30_seconds(fake_server: FakeAmazonServer) -> None:
    fake = fake_server.fake
    fake.inventory_page_size = 3
    headers = {"x-amz-access-token": token_for(fake_server)}
    params = {
        "granularityType": "Marketplace",
        "granularityId": MP,
        "marketplaceIds": MP,
        "details": "true",
    }
    first = httpx.get(fake_server.url + INVENTORY, params=params, headers=headers).json()
    token = first["pagination"]["nextToken"]
    fresh = httpx.get(fake_server.url + INVENTORY, params={**params, "nextToken": token}, headers=headers)
    assert fresh.status_code == 200
    fake.clock.advance(31)
    stale = httpx.get(fake_server.url + INVENTORY, params={**params, "nextToken": token}, headers=headers)
    assert stale.status_code == 400
    assert "expired" in stale.json()["errors"][0]["message"]


def test_page_token_is_bound_to_its_query(fake_server: FakeAmazonServer) -> None:
    fake_server.fake.inventory_page_size = 3
    headers = {"x-amz-access-token": token_for(fake_server)}
    params = {
        "granularityType": "Marketplace",
        "granularityId": MP,
        "marketplaceIds": MP,
        "details": "true",
    }
    token = httpx.get(fake_server.url + INVENTORY, params=params, headers=headers).json()["pagination"][
        "nextToken"
    ]
    other = httpx.get(
        fake_server.url + INVENTORY,
        params={**params, "details": "false", "nextToken": token},
        headers=headers,
    )
    assert other.status_code == 400


def test_usage_plan_throttles_with_quota_exceeded(fake_server: FakeAmazonServer) -> None:
    headers = {"x-amz-access-token": token_for(fake_server)}
    _, burst = SP_API_USAGE_PLANS["getMarketplaceParticipations"]
    replies = [
        httpx.get(fake_server.url + "/sellers/v1/marketplaceParticipations", headers=headers)
        for _ in range(burst + 1)
    ]
    assert [r.status_code for r in replies[:burst]] == [200] * burst
    assert replies[0].headers["x-amzn-RateLimit-Limit"] == "0.016"
    throttled = replies[-1]
    assert throttled.status_code == 429
    assert throttled.json() == {
        "errors": [
            {
                "code": "QuotaExceeded",
                "message": "You exceeded your quota for the requested resource.",
                "details": "",
            }
        ]
    }
    assert "retry-after" not in throttled.headers
    fake_server.fake.clock.advance(1 / 0.016 + 1)
    again = httpx.get(fake_server.url + "/sellers/v1/marketplaceParticipations", headers=headers)
    assert again.status_code == 200


def test_ads_throttle_carries_retry_after(fake_server: FakeAmazonServer) -> None:
    fake = fake_server.fake
    seller = fake.sellers[0]
    fake.inject("listProfiles", "throttle", retry_after=7)
    headers = {"Authorization": "Bearer " + token_for(fake_server, grant="ads"),
               "Amazon-Advertising-API-ClientId": seller.client_id}
    reply = httpx.get(fake_server.url + "/v2/profiles", headers=headers)
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "7"
    assert httpx.get(fake_server.url + "/v2/profiles", headers=headers).status_code == 200


def test_ads_refuses_the_sp_api_grant_and_sp_refuses_the_ads_grant(fake_server: FakeAmazonServer) -> None:
    """The Ads API needs its own grant (a refresh token with the advertising scope)."""
    seller = fake_server.fake.sellers[0]
    profiles = httpx.get(fake_server.url + "/v2/profiles", headers={
        "Authorization": "Bearer " + token_for(fake_server),
        "Amazon-Advertising-API-ClientId": seller.client_id})
    assert profiles.status_code == 401
    participations = httpx.get(fake_server.url + "/sellers/v1/marketplaceParticipations",
                               headers={"x-amz-access-token": token_for(fake_server, grant="ads")})
    assert participations.status_code == 403


def test_report_documents_need_their_presigned_signature(fake_server: FakeAmazonServer) -> None:
    fake = fake_server.fake
    headers = {"x-amz-access-token": token_for(fake_server)}
    created = httpx.post(fake_server.url + "/reports/2021-06-30/reports", headers=headers,
                         json={"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA",
                               "marketplaceIds": [fake.sellers[0].marketplace_id]}).json()
    for _ in range(5):
        report = httpx.get(f"{fake_server.url}/reports/2021-06-30/reports/{created['reportId']}",
                           headers=headers).json()
    document = httpx.get(f"{fake_server.url}/reports/2021-06-30/documents/{report['reportDocumentId']}",
                         headers=headers).json()
    url = httpx.URL(document["url"])
    assert url.params["X-Amz-Signature"] and url.params["X-Amz-Credential"]
    assert httpx.get(url).status_code == 200
    forged = url.copy_set_param("X-Amz-Signature", "0" * 64)
    assert httpx.get(forged).status_code == 403
    fake.clock.advance(3 * 3600)
    assert httpx.get(url).status_code == 403  # expired


def test_html_5xx_fault(fake_server: FakeAmazonServer) -> None:
    fake_server.fake.inject("*", "html_5xx", status=503)
    reply = httpx.get(
        fake_server.url + "/sellers/v1/marketplaceParticipations",
        headers={"x-amz-access-token": token_for(fake_server)},
    )
    assert reply.status_code == 503
    assert reply.headers["content-type"].startswith("text/html")
    assert "<html>" in reply.text


def test_control_endpoints_drive_a_fake_in_another_process(fake_server: FakeAmazonServer) -> None:
    sellers = httpx.get(fake_server.url + "/__fake/sellers").json()
    assert sellers[0]["seller_id"] == fake_server.fake.sellers[0].seller_id
    bad = httpx.post(fake_server.url + "/__fake/faults", json={"operation": "*", "action": "explode"})
    assert bad.status_code == 400
    added = httpx.post(
        fake_server.url + "/__fake/faults",
        json={"operation": "getMarketplaceParticipations", "action": "html_5xx", "status": 502},
    )
    assert added.status_code == 201
    headers = {"x-amz-access-token": token_for(fake_server)}
    reply = httpx.get(fake_server.url + "/sellers/v1/marketplaceParticipations", headers=headers)
    assert reply.status_code == 502
    assert httpx.post(fake_server.url + "/__fake/revoke", json={"seller": 0}).status_code == 204
    reply = httpx.get(fake_server.url + "/sellers/v1/marketplaceParticipations", headers=headers)
    assert reply.status_code == 403
    assert httpx.post(fake_server.url + "/__fake/reset").status_code == 204
