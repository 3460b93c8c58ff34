"""Sponsored Products campaign performance via Ads reporting v3.

Each run re-pulls the trailing ``ppc_trailing_days`` because Amazon restates attributed
sales for up to 14 days, in chunks of at most 31 days (the report's limit). The cursor
remembers the chunk and the pending report id so a retry polls the same report.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta
from typing import Any

from processors.amazon.account import AmazonAccount
from processors.amazon.errors import AmazonReportFailed, AmazonReportNotReady
from processors.amazon.models.ads import AdsReport
from processors.storage import schema
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import ad_row

STREAM = "ppc"


async def sync_ppc(ctx: SyncContext, account: AmazonAccount, now: datetime) -> int:
    if not account.ads_profile_id:
        return 0
    settings = ctx.settings
    state = await ctx.db(ctx.storage.sync_state, account.id, STREAM)
    cursor: dict[str, Any] = dict(state.cursor or {})
    last = now.date() - timedelta(days=1)
    if cursor.get("chunk_start"):
        chunk_start = date.fromisoformat(cursor["chunk_start"])
        last = date.fromisoformat(cursor["last"])
    elif state.watermark is None:
        chunk_start = last - timedelta(days=settings.initial_lookback_days - 1)
    else:
        chunk_start = min(state.watermark.date(), last + timedelta(days=1)) - timedelta(
            days=settings.ppc_trailing_days
        )
    chunk_start = max(chunk_start, now.date() - timedelta(days=settings.ads_retention_days))
    synced = 0
    while chunk_start <= last:
        chunk_end = min(last, chunk_start + timedelta(days=settings.ads_max_report_days - 1))
        report_id = cursor.get("report_id")
        if not report_id:
            created = await ctx.client.ads.create_campaign_report(account, start=chunk_start, end=chunk_end)
            report_id = created.report_id
            cursor = {
                "chunk_start": chunk_start.isoformat(),
                "last": last.isoformat(),
                "report_id": report_id,
            }
            await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, state.watermark, cursor)
        report = await _wait_for(ctx, account, report_id, cursor, state.watermark)
        rows = await ctx.client.ads.download_campaign_report(report)
        profile = account.ads_profile_id
        await ctx.db(
            ctx.storage.upsert,
            schema.ad_performance,
            [ad_row(account.id, profile, r) for r in rows],
        )
        synced += len(rows)
        chunk_start = chunk_end + timedelta(days=1)
        cursor = {
            "chunk_start": chunk_start.isoformat(),
            "last": last.isoformat(),
            "report_id": None,
        }
        await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, state.watermark, cursor)
    await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, now, None)
    return synced


async def _wait_for(
    ctx: SyncContext,
    account: AmazonAccount,
    report_id: str,
    cursor: dict[str, Any],
    watermark: datetime | None,
) -> AdsReport:
    deadline = time.monotonic() + ctx.settings.ads_poll_timeout
    while True:
        report = await ctx.client.ads.get_report(account, report_id)
        if report.status == "COMPLETED":
            return report
        if report.status in ("FAILED", "CANCELLED"):
            # Forget the report so that the retry asks for a new one.
            await ctx.db(
                ctx.storage.save_sync_state,
                account.id,
                STREAM,
                watermark,
                {**cursor, "report_id": None},
            )
            raise AmazonReportFailed(report_id, report.status, report.failure_reason)
        if time.monotonic() + ctx.settings.ads_poll_interval > deadline:
            raise AmazonReportNotReady(report_id, report.status)
        await asyncio.sleep(ctx.settings.ads_poll_interval)
