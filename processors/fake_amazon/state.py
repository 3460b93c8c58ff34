"""Everything the fake server knows, plus the knobs tests turn."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from processors.fake_amazon.clock import FakeClock
from processors.fake_amazon.dataset import DAY_ZONES, FakeSeller, SellerData, build_dataset
from processors.fake_amazon.faults import Fault, FaultAction, FaultBook
from processors.fake_amazon.pagination import PageTokens
from processors.fake_amazon.quotas import UsagePlans


@dataclass
class IssuedToken:
    seller: int
    expires_at: float
    # "sp" (the SP-API grant) or "ads" (the Amazon Ads grant): each API takes its own.
    grant: str = "sp"


@dataclass
class ReportJob:
    """An SP-API report or an Ads report moving through its states as it is polled."""

    report_id: str
    seller: int
    kind: str
    request: dict[str, Any]
    created_at: float
    polls: int = 0
    fail: bool = False
    document: bytes = b""


@dataclass
class LoggedRequest:
    method: str
    path: str
    operation: str
    seller: int | None
    at: float
    # The status answered (set once the answer is made; 0 until then).
    status: int = 0


@dataclass
class FakeAmazon:
    """In-memory Amazon: seeded data, issued tokens, reports, faults and usage plans."""

    seed: int = 7
    seller_count: int = 2
    days: int = 90
    token_ttl: int = 3600
    polls_until_done: int = 1
    inventory_token_ttl: float = 30.0
    orders_token_ttl: float = 24 * 3600.0
    inventory_page_size: int = 50
    transactions_page_size: int = 100
    clock: FakeClock = field(default_factory=FakeClock)
    data: list[SellerData] = field(init=False)
    # The day ``data`` was built on in each of DAY_ZONES: its history is the ``days`` full UTC
    # days before it, and its Ads data ends on the marketplace's yesterday.
    data_days: tuple[date, ...] = field(init=False)
    plans: UsagePlans = field(init=False)
    faults: FaultBook = field(default_factory=FaultBook)
    page_tokens: PageTokens = field(default_factory=PageTokens.random)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    revoked: set[int] = field(default_factory=set)
    reports: dict[str, ReportJob] = field(default_factory=dict)
    log: list[LoggedRequest] = field(default_factory=list)
    lwa_calls: int = 0
    # Multiplies every usage plan's rate: a fast clock for throttling tests.
    quota_scale: float = 1.0
    _modified: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._build_data()
        self.plans = UsagePlans(self.clock, lambda: self.quota_scale)

    def _build_data(self) -> None:
        now = self.clock.now()
        self.data = build_dataset(self.seed, sellers=self.seller_count, days=self.days, generated_at=now)
        self.data_days = _days_at(now)
        self._modified = False

    # -- looking things up -------------------------------------------------

    @property
    def sellers(self) -> list[FakeSeller]:
        return [d.seller for d in self.data]

    def seller_for_token(self, token: str | None, grant: str = "sp") -> int | None:
        """The seller an access token acts for, if it is live and was issued for ``grant``."""
        if not token:
            return None
        with self._lock:
            issued = self.tokens.get(token)
        if issued is None or issued.expires_at <= self.clock.time() or issued.seller in self.revoked:
            return None
        return issued.seller if issued.grant == grant else None

    def seller_for_refresh_token(
        self, client_id: str, client_secret: str, refresh_token: str
    ) -> tuple[int, str] | None:
        """(seller, grant) for a refresh token of either grant."""
        for data in self.data:
            s = data.seller
            if (s.client_id, s.client_secret) != (client_id, client_secret):
                continue
            if refresh_token == s.refresh_token:
                return s.index, "sp"
            if refresh_token == s.ads_refresh_token:
                return s.index, "ads"
        return None

    def seller_for_profile(self, profile_id: str) -> int | None:
        for data in self.data:
            if profile_id in {str(p) for p in data.seller.profile_ids}:
                return data.seller.index
        return None

    def set_records(self, seller: int, **records: list[dict[str, Any]]) -> None:
        """Replaces a seller's wire-shaped records (``orders=[...]``, ``transactions=[...]``,
        ``ad_rows=[...]``); ``reset`` rebuilds the seeded data afterwards."""
        for name, items in records.items():
            setattr(self.data[seller], name, list(items))
        self._modified = True

    # -- state changes made by routes --------------------------------------

    def issue_token(self, seller: int, grant: str = "sp") -> str:
        token = "Atza|" + secrets.token_urlsafe(24)
        with self._lock:
            self.lwa_calls += 1
            self.tokens[token] = IssuedToken(seller, self.clock.time() + self.token_ttl, grant)
        return token

    def add_report(self, seller: int, kind: str, request: dict[str, Any]) -> ReportJob:
        report_id = str(50_000 + len(self.reports)) if kind == "sp" else secrets.token_hex(8)
        job = ReportJob(report_id, seller, kind, request, self.clock.time())
        with self._lock:
            self.reports[report_id] = job
        return job

    def record(self, method: str, path: str, operation: str, seller: int | None) -> LoggedRequest:
        entry = LoggedRequest(method, path, operation, seller, self.clock.time())
        with self._lock:
            self.log.append(entry)
        return entry

    # -- knobs for tests ---------------------------------------------------

    def inject(self, operation: str, action: FaultAction, **options: Any) -> Fault:
        """Queue a fault, e.g. ``inject("searchOrders", "throttle", times=3, skip=1)``."""
        return self.faults.add(Fault(operation=operation, action=action, **options))

    def revoke(self, seller: int) -> None:
        """The seller removed the app: tokens stop working and LWA answers invalid_grant."""
        with self._lock:
            self.revoked.add(seller)

    def expire_tokens(self, seller: int | None = None) -> None:
        with self._lock:
            for token in self.tokens.values():
                if seller is None or token.seller == seller:
                    token.expires_at = 0.0

    def calls(self, operation: str) -> int:
        with self._lock:
            return sum(1 for entry in self.log if entry.operation == operation)

    def reset(self) -> None:
        """Back to a fresh server's state, keeping the seeded data (which is costly to build)."""
        self.faults.clear()
        self.plans.reset()
        self.plans.enabled = True
        self.clock.reset()
        # Unless a midnight has passed since it was built (a session running past midnight).
        # After a UTC midnight a first sync starts a day later than the data's first day (it
        # reaches back whole days from today) and would miss that day's orders, transactions
        # and ads; after a marketplace's midnight its Ads data would lack the new yesterday.
        if _days_at(self.clock.now()) != self.data_days or self._modified:
            self._build_data()
        defaults = FakeAmazon.__dataclass_fields__
        for name in (
            "token_ttl",
            "polls_until_done",
            "inventory_page_size",
            "transactions_page_size",
            "quota_scale",
        ):
            setattr(self, name, defaults[name].default)
        with self._lock:
            self.tokens.clear()
            self.revoked.clear()
            self.reports.clear()
            self.log.clear()
            self.lwa_calls = 0


def _days_at(now: datetime) -> tuple[date, ...]:
    return tuple(now.astimezone(ZoneInfo(zone)).date() for zone in DAY_ZONES)
