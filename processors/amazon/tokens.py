"""Login with Amazon access tokens: cached per account, fetched single-flight."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from processors.amazon.account import AmazonAccount, Grant
from processors.amazon.errors import AccountDisconnected, AmazonRateLimited
from processors.amazon.http import (
    DEFAULT_DEADLINE,
    decode,
    error_summary,
    exchange,
    raise_for_failure,
    retry_after,
)
from processors.amazon.models.lwa import LwaError, LwaToken
from processors.amazon.secret import Secret

_OPERATION = "lwaToken"


@dataclass
class _Cached:
    token: Secret
    refresh_at: float


class TokenProvider:
    """One cache entry per (account, token URL, grant, refresh token): SP-API and Ads may use
    different LWA hosts and grants, and a rotated refresh token gets a token of its own."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: httpx.Timeout,
        deadline: float = DEFAULT_DEADLINE,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._timeout = timeout
        self._deadline = deadline
        self._margin = refresh_margin
        self._clock = clock
        self._cache: dict[tuple[str, str, str, str], _Cached] = {}
        self._locks: dict[tuple[str, str, str, str], asyncio.Lock] = {}
        self.fetches = 0

    @staticmethod
    def _key(account: AmazonAccount, token_url: str, grant: Grant) -> tuple[str, str, str, str]:
        # A digest, not the token: the cache's keys may end up in a debugger or a dump.
        digest = hashlib.sha256(account.refresh_token_for(grant).reveal().encode()).hexdigest()[:16]
        return account.id, token_url, grant, digest

    async def access_token(self, account: AmazonAccount, token_url: str, grant: Grant = "sp") -> str:
        """A live access token for ``grant``; fetched (once, however many callers wait) when
        there is none or it expires within ``refresh_margin`` seconds."""
        key = self._key(account, token_url, grant)
        cached = self._cache.get(key)
        if cached is not None and cached.refresh_at > self._clock():
            return cached.token.reveal()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            # Another task may have refreshed while we waited for the lock.
            cached = self._cache.get(key)
            if cached is not None and cached.refresh_at > self._clock():
                return cached.token.reveal()
            fresh = await self._fetch(account, token_url, grant)
            self._cache[key] = fresh
            return fresh.token.reveal()

    def invalidate(self, account: AmazonAccount, token_url: str, grant: Grant = "sp") -> None:
        """Amazon said 401/403: the token may have been revoked early."""
        self._cache.pop(self._key(account, token_url, grant), None)

    async def _fetch(self, account: AmazonAccount, token_url: str, grant: Grant) -> _Cached:
        self.fetches += 1
        request = self._http.build_request(
            "POST",
            token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": account.refresh_token_for(grant).reveal(),
                "client_id": account.lwa_client_id,
                "client_secret": account.lwa_client_secret.reveal(),
            },
            headers={"content-type": "application/x-www-form-urlencoded;charset=UTF-8"},
        )
        started = self._clock()
        response = await exchange(self._http, request, operation=_OPERATION, timeout=self._timeout,
                                  deadline=self._deadline)
        if response.status_code == 429:
            raise AmazonRateLimited(retry_after(response) or 1.0, operation=_OPERATION, account_id=account.id)
        if response.status_code in (400, 401):
            reason = self._lwa_error(response)
            if reason in ("invalid_grant", "invalid_client", "unauthorized_client"):
                which = "Ads refresh token" if grant == "ads" else "refresh token"
                raise AccountDisconnected(account.id, f"LWA refused the {which} ({reason})")
        raise_for_failure(response, _OPERATION)
        token = decode(response, LwaToken, _OPERATION)
        lifetime = max(0.0, token.expires_in - self._margin)
        return _Cached(Secret(token.access_token), started + lifetime)

    @staticmethod
    def _lwa_error(response: httpx.Response) -> str:
        try:
            return decode(response, LwaError, _OPERATION).error
        except Exception:
            return error_summary(response)[0]
