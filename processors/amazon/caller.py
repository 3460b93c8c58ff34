"""Authenticated calls: shared quota, access token, one refresh on 401/403, 429 handling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Literal

import httpx

from processors.amazon.account import AmazonAccount, Grant
from processors.amazon.config import ClientSettings
from processors.amazon.errors import (
    AccountDisconnected,
    AmazonClientError,
    AmazonRateLimited,
    AmazonServerError,
)
from processors.amazon.http import (
    MAX_RETRY_AFTER,
    error_summary,
    exchange,
    raise_for_failure,
    retry_after,
)
from processors.amazon.quota import RedisQuota
from processors.amazon.report_documents import gunzip_bounded
from processors.amazon.tokens import TokenProvider
from processors.amazon.usage_plans import plan_for

Api = Literal["sp", "ads", "ads_profiles"]
# A 429 from the SP-API carries no Retry-After; the refill time of one token is the honest delay,
# capped so that a very slow plan (searchOrders: one per 3 min) does not park a job for longer.
MAX_THROTTLE_DELAY = MAX_RETRY_AFTER


class AmazonCaller:
    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: TokenProvider,
        settings: ClientSettings,
        quota: RedisQuota | None = None,
    ) -> None:
        self.http = http
        self.tokens = tokens
        self.settings = settings
        self.quota = quota

    async def call(
        self,
        account: AmazonAccount,
        *,
        api: Api,
        operation: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        content_type: str = "application/json",
        resume_token: str | None = None,
        accept: frozenset[int] = frozenset(),
        profile_id: str | None = None,
    ) -> httpx.Response:
        """A 2xx response, or one whose status is in ``accept``; otherwise a classified error.

        ``profile_id``: the Ads profile (``Amazon-Advertising-API-Scope``), for ``api="ads"``.
        """
        endpoints = self.settings.endpoints_for(account.region)
        base, token_url = (
            (endpoints.spapi, endpoints.lwa_token_url)
            if api == "sp"
            else (endpoints.ads, endpoints.ads_token_url)
        )
        grant: Grant = "sp" if api == "sp" else "ads"
        if api == "ads" and not profile_id:
            raise ValueError(f"{operation} needs an Ads profile id (the API's scope)")
        await self._take_quota(account, operation, resume_token)
        for attempt in range(2):
            token = await self.tokens.access_token(account, token_url, grant)
            request = self.http.build_request(
                method,
                base + path,
                params=params,
                content=content,
                headers=self._headers(account, api, token, content_type if content is not None else None,
                                      profile_id),
            )
            response = await exchange(self.http, request, operation=operation, timeout=self.settings.timeout,
                                      deadline=self.settings.request_deadline)
            if response.status_code in (401, 403):
                self.tokens.invalidate(account, token_url, grant)
                if attempt == 0:
                    continue
                code, _ = error_summary(response)
                raise AccountDisconnected(
                    account.id,
                    f"{operation} answered HTTP {response.status_code} {code} after a refresh",
                )
            if response.status_code == 429:
                raise await self._throttled(account, operation, response, resume_token)
            if response.status_code not in accept:
                raise_for_failure(response, operation)
            return response
        raise AssertionError("unreachable")

    async def download(self, url: str, operation: str, *, gzipped: bool = False) -> bytes:
        """Presigned "S3" URLs: no Amazon auth headers, a longer timeout. ``gzipped``: the
        body gunzipped, at most ``settings.document_max_bytes`` (else AmazonDecodeError)."""
        request = self.http.build_request("GET", url, headers={"user-agent": self.settings.user_agent})
        response = await exchange(
            self.http, request, operation=operation, timeout=self.settings.download_timeout,
            deadline=self.settings.download_deadline,
        )
        if response.status_code >= 500:
            raise AmazonServerError(operation, response.status_code)
        if response.status_code >= 300:
            raise AmazonClientError(operation, response.status_code, "DownloadFailed", "document URL refused")
        if gzipped:
            return gunzip_bounded(response.content, operation, self.settings.document_max_bytes)
        return response.content

    def _headers(
        self, account: AmazonAccount, api: Api, token: str, content_type: str | None,
        profile_id: str | None,
    ) -> dict[str, str]:
        headers = {"user-agent": self.settings.user_agent, "accept": "application/json"}
        if content_type:
            headers["content-type"] = content_type
        if api == "sp":
            headers["x-amz-access-token"] = token
            headers["x-amz-date"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            return headers
        headers["authorization"] = "Bearer " + token
        headers["amazon-advertising-api-clientid"] = account.lwa_client_id
        if api == "ads" and profile_id:
            headers["amazon-advertising-api-scope"] = profile_id
        return headers

    async def _take_quota(self, account: AmazonAccount, operation: str, resume_token: str | None) -> None:
        if self.quota is None:
            return
        rate, burst = plan_for(operation, self.settings.quota_scale)
        deadline = time.monotonic() + self.settings.max_inline_quota_wait
        while True:
            wait = await self.quota.acquire(account.id, operation, rate, burst)
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise AmazonRateLimited(
                    wait, operation=operation, account_id=account.id, resume_token=resume_token
                )
            await asyncio.sleep(wait)

    async def _throttled(
        self,
        account: AmazonAccount,
        operation: str,
        response: httpx.Response,
        resume_token: str | None,
    ) -> AmazonRateLimited:
        rate, burst = plan_for(operation, self.settings.quota_scale)
        if self.quota is not None:
            await self.quota.drain(account.id, operation, rate, burst)
        delay = retry_after(response)
        if delay is None:
            delay = min(1.0 / rate, MAX_THROTTLE_DELAY)
        return AmazonRateLimited(delay, operation=operation, account_id=account.id, resume_token=resume_token)
