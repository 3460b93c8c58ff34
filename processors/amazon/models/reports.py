"""Reports API 2021-06-30."""

from __future__ import annotations

from datetime import datetime

import msgspec


class CreateReportSpecification(msgspec.Struct, rename="camel", frozen=True, omit_defaults=True):
    report_type: str
    marketplace_ids: list[str]
    data_start_time: datetime | None = None
    data_end_time: datetime | None = None


class CreateReportResponse(msgspec.Struct, rename="camel", frozen=True):
    report_id: str


class Report(msgspec.Struct, rename="camel", frozen=True):
    report_id: str
    report_type: str
    created_time: datetime
    processing_status: str
    marketplace_ids: list[str] | None = None
    report_document_id: str | None = None


class ReportDocument(msgspec.Struct, rename="camel", frozen=True):
    report_document_id: str
    url: str
    compression_algorithm: str | None = None
