"""The one object a worker needs: ``AmazonClient`` with ``.sp`` and ``.ads``."""

from __future__ import annotations

import httpx

from processors.amazon.ads import AdsApi
from processors.amazon.caller import AmazonCaller
from processors.amazon.config import ClientSettings
from processors.amazon.quota import RedisQuota
from processors.amazon.redact import install_log_redaction
from processors.amazon.spapi import SellingPartnerApi
from processors.amazon.tokens import TokenProvider


class AmazonClient:
    """Share one per worker process; it owns an ``httpx.AsyncClient`` unless given one.

    ::

        async with AmazonClient(settings, quota=RedisQuota(redis)) as amazon:
            page = await amazon.sp.search_orders(account, last_updated_after=since)
    """

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        quota: RedisQuota | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings or ClientSettings()
        # httpx logs each URL at INFO, presigned report URLs (a credential) included.
        install_log_redaction()
        self._owns_http = http is None
        # No client-level default timeout: every request carries its own explicit one.
        self.http = http or httpx.AsyncClient(timeout=self.settings.timeout, follow_redirects=False)
        self.tokens = TokenProvider(
            self.http,
            timeout=self.settings.timeout,
            deadline=self.settings.request_deadline,
            refresh_margin=self.settings.token_refresh_margin,
        )
        self.caller = AmazonCaller(self.http, self.tokens, self.settings, quota)
        self.sp = SellingPartnerApi(self.caller)
        self.ads = AdsApi(self.caller)

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> AmazonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
