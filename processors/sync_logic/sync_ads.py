"""Advertising: Sponsored Products, Brands and Display spend and sales, and per-SKU Sponsored
Products data, through Amazon Ads reporting v3, for every profile (marketplace) of the account.

The profiles come from ``listProfiles`` (one per marketplace; an account may pin one). Each
(report type, profile) is a stream of its own, ``ads:<reportTypeId>:<profileId>``. A run
re-pulls the trailing ``ads_trailing_days`` (Amazon restates attributed sales for up to 14
days), from at most each report type's retention, in reports of at most 31 days. Every report
of every stream is requested first (Amazon generates them side by side), each id checkpointed
as soon as it is known; then each is polled and downloaded. A resumed run polls the reports it
already asked for and never asks twice. A stream's watermark is the end of its last synced day
in the profile's time zone (the zone the reports' dates are in).
"""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from processors.amazon.account import AmazonAccount
from processors.amazon.errors import AmazonReportFailed, AmazonReportNotReady
from processors.amazon.marketplaces import MARKETPLACES
from processors.amazon.models.ads import REPORT_SPECS, AdsReport, AdsReportSpec, AdvertisedProductDay
from processors.storage import schema
from processors.storage.records import AdsProfileRecord
from processors.storage.store import day_start
from processors.sync_logic.accounts import ads_connected
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import ad_rows
from processors.sync_logic.run_marks import finished_in, mark_finished

PROFILES_STREAM = "ads:profiles"


def ads_stream(spec: AdsReportSpec, profile_id: str) -> str:
    return f"ads:{spec.report_type_id}:{profile_id}"


async def sync_ads(
    ctx: SyncContext, account: AmazonAccount, now: datetime, run_id: str | None = None,
    since: date | None = None,
) -> int:
    """Syncs every ad report type of every profile; returns the rows written. ``since`` (a
    back-fill) re-pulls from that day too (within each report type's retention).

    Raises ``AmazonReportNotReady`` (report ids kept) when Amazon is still generating a
    report after ``ads_poll_timeout`` seconds, ``AmazonReportFailed`` when one failed (it is
    forgotten, so the retry asks again), and the client's errors.
    """
    if not ads_connected(account):
        return 0
    profiles = await discover_profiles(ctx, account, now, run_id)
    written = 0
    streams: list[_Stream] = []
    for profile in profiles:
        zone = ZoneInfo(profile.timezone)
        for spec in REPORT_SPECS:
            name = ads_stream(spec, profile.profile_id)
            state = await ctx.db(ctx.storage.sync_state, account.id, name)
            done = finished_in(state, run_id)
            if done is not None:
                written += done
                continue
            cursor = state.cursor if state.cursor and "chunks" in state.cursor else None
            stream = _Stream(ctx, account, profile, spec, name, zone, state.watermark, cursor, now, since)
            await stream.save()
            streams.append(stream)
    for stream in streams:
        await stream.request_reports()
    deadline = time.monotonic() + ctx.settings.ads_poll_timeout
    for stream in streams:
        count = await stream.collect(deadline)
        await mark_finished(ctx, account.id, stream.name, run_id, count)
        written += count
    return written


async def discover_profiles(
    ctx: SyncContext, account: AmazonAccount, now: datetime, run_id: str | None = None
) -> list[AdsProfileRecord]:
    """The account's Ads profiles in its marketplaces, from ``listProfiles`` (once per run),
    stored. A pinned ``ads_profile_id`` keeps only that one."""
    state = await ctx.db(ctx.storage.sync_state, account.id, PROFILES_STREAM)
    if finished_in(state, run_id) is not None:
        return await ctx.db(ctx.storage.ads_profiles, account.id)
    found = []
    for profile in await ctx.client.ads.list_profiles(account):
        info = profile.account_info
        if account.ads_profile_id:
            if str(profile.profile_id) != account.ads_profile_id:
                continue
        elif info.marketplace_string_id not in account.marketplace_ids or info.id != account.seller_id:
            continue
        known = MARKETPLACES.get(info.marketplace_string_id)
        found.append(AdsProfileRecord(
            account_id=account.id, profile_id=str(profile.profile_id),
            marketplace_id=info.marketplace_string_id, country_code=profile.country_code,
            currency=profile.currency_code,
            timezone=profile.timezone or (known.timezone if known else "UTC")))
    await ctx.db(ctx.storage.save_ads_profiles, account.id, found)
    await ctx.db(ctx.storage.save_sync_state, account.id, PROFILES_STREAM, now, None)
    await mark_finished(ctx, account.id, PROFILES_STREAM, run_id, len(found))
    return found


class _Stream:
    """One (report type, profile): its chunks of days, their report ids, checkpointed."""

    def __init__(self, ctx: SyncContext, account: AmazonAccount, profile: AdsProfileRecord,
                 spec: AdsReportSpec, name: str, zone: ZoneInfo, watermark: datetime | None,
                 cursor: dict[str, Any] | None, now: datetime, since: date | None) -> None:
        self.ctx, self.account, self.profile, self.spec = ctx, account, profile, spec
        self.name, self.zone, self.watermark = name, zone, watermark
        self.cursor = cursor or self._plan(now, since)

    def _plan(self, now: datetime, since: date | None) -> dict[str, Any]:
        settings = self.ctx.settings
        today = now.astimezone(self.zone).date()
        last = today - timedelta(days=1)
        if self.watermark is None:
            start = last - timedelta(days=settings.initial_lookback_days - 1)
        else:
            synced_to = self.watermark.astimezone(self.zone).date()
            start = min(synced_to, last + timedelta(days=1)) - timedelta(days=settings.ads_trailing_days)
        if since is not None:
            start = min(start, since)
        start = max(start, today - timedelta(days=self.spec.retention_days - 1))
        chunks = []
        while start <= last:
            end = min(last, start + timedelta(days=self.spec.max_days - 1))
            chunks.append({"start": start.isoformat(), "end": end.isoformat(), "report": None,
                           "requested_at": None, "done": False})
            start = end + timedelta(days=1)
        return {"last": last.isoformat(), "chunks": chunks}

    async def save(self) -> None:
        await self.ctx.db(self.ctx.storage.save_sync_state, self.account.id, self.name, self.watermark,
                          self.cursor)

    async def request_reports(self) -> None:
        for chunk in self.cursor["chunks"]:
            if chunk["done"] or chunk["report"]:
                continue
            report = await self.ctx.client.ads.create_report(
                self.account, self.profile.profile_id, self.spec,
                start=date.fromisoformat(chunk["start"]), end=date.fromisoformat(chunk["end"]))
            chunk["report"], chunk["requested_at"] = report.report_id, time.time()
            await self.save()

    async def collect(self, deadline: float) -> int:
        written = 0
        table = schema.ad_products if self.spec.row is AdvertisedProductDay else schema.ad_performance
        for chunk in self.cursor["chunks"]:
            if chunk["done"]:
                continue
            report = await self._wait_for(chunk, deadline)
            rows = await self.ctx.client.ads.download_report(report, self.spec)
            await self.ctx.db(self.ctx.storage.upsert, table,
                              ad_rows(self.account.id, self.profile.profile_id, self.spec, rows))
            written += len(rows)
            chunk["done"] = True
            await self.save()
        last = date.fromisoformat(self.cursor["last"])
        self.watermark = day_start(last + timedelta(days=1), self.zone)
        self.cursor = {}
        await self.ctx.db(self.ctx.storage.save_sync_state, self.account.id, self.name, self.watermark, None)
        return written

    async def _wait_for(self, chunk: dict[str, Any], deadline: float) -> AdsReport:
        settings = self.ctx.settings
        report_id = str(chunk["report"])
        while True:
            report = await self.ctx.client.ads.get_report(self.account, report_id, self.profile.profile_id)
            if report.status == "COMPLETED":
                return report
            stale = time.time() - float(chunk["requested_at"] or 0) > settings.ads_report_max_age
            if report.status in ("FAILED", "CANCELLED") or stale:
                # Forget the report so that the retry asks for a new one.
                chunk["report"] = None
                await self.save()
                reason = report.failure_reason if not stale else "still pending after the longest wait"
                raise AmazonReportFailed(report_id, report.status, reason)
            if time.monotonic() + settings.ads_poll_interval > deadline:
                raise AmazonReportNotReady(report_id, report.status, poll_after=settings.ads_not_ready_delay)
            await asyncio.sleep(settings.ads_poll_interval)
