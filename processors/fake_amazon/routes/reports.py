"""Reports API 2021-06-30: create, poll, document, and the presigned "S3" download."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.fake_amazon import responses
from processors.fake_amazon.dataset import Json, iso
from processors.fake_amazon.guard import guarded
from processors.fake_amazon.params import BadParam, own_base_url
from processors.fake_amazon.presign import presign, refused
from processors.fake_amazon.state import FakeAmazon, ReportJob

SUPPORTED = {"GET_MERCHANT_LISTINGS_ALL_DATA"}
_LISTING_COLUMNS = [
    "item-name", "item-description", "listing-id", "seller-sku", "price", "quantity", "open-date",
    "image-url", "item-is-marketplace", "product-id-type", "zshop-shipping-fee", "item-note",
    "item-condition", "zshop-category1", "zshop-browse-path", "zshop-storefront-feature", "asin1",
    "asin2", "asin3", "will-ship-internationally", "expedited-shipping", "zshop-boldface",
    "product-id", "bid-for-featured-placement", "add-delete", "pending-quantity",
    "fulfillment-channel", "merchant-shipping-group", "status",
]  # fmt: skip


def routes(fake: FakeAmazon) -> list[Route]:
    async def create(request: Request, seller: int) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise BadParam("The request body is not valid JSON.") from exc
        if not isinstance(body, dict) or not body.get("reportType"):
            raise BadParam("Missing required field: reportType")
        if not body.get("marketplaceIds"):
            raise BadParam("Missing required field: marketplaceIds")
        if body["reportType"] not in SUPPORTED:
            raise BadParam(f"Report type {body['reportType']} is not supported by this fake.")
        job = fake.add_report(seller, "sp", body)
        return responses.sp_json({"reportId": job.report_id}, status=202)

    async def get_report(request: Request, seller: int) -> Response:
        job = _job(fake, request.path_params["report_id"], seller, "sp")
        job.polls += 1
        status = status_for(fake, job, ("IN_QUEUE", "IN_PROGRESS", "DONE", "FATAL"))
        report: Json = {
            "reportId": job.report_id,
            "reportType": job.request["reportType"],
            "marketplaceIds": job.request["marketplaceIds"],
            "createdTime": iso(_dt(job.created_at)),
            "processingStatus": status,
        }
        if status != "IN_QUEUE":
            report["processingStartTime"] = iso(_dt(job.created_at + 1))
        if status == "DONE":
            report["processingEndTime"] = iso(_dt(job.created_at + 2))
            report["reportDocumentId"] = "amzn1.spdoc.1.4.na." + job.report_id
            if not job.document:
                job.document = gzip.compress(_listings_tsv(fake, seller))
        return responses.sp_json(report)

    async def get_document(request: Request, seller: int) -> Response:
        doc_id = request.path_params["document_id"]
        job = _job(fake, doc_id.rsplit(".", 1)[-1], seller, "sp")
        if not job.document:
            return responses.sp_error(404, "NotFound", "The report document was not found.")
        return responses.sp_json(
            {
                "reportDocumentId": doc_id,
                "url": presign(fake, own_base_url(request), f"/__s3/reports/{job.report_id}"),
                "compressionAlgorithm": "GZIP",
            }
        )

    async def download(request: Request) -> Response:
        denied = refused(fake, request)
        if denied is not None:
            return denied
        job = fake.reports.get(request.path_params["report_id"])
        if job is None or not job.document:
            return Response(b"<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml")
        return Response(job.document, media_type="application/octet-stream")

    return [
        Route(
            "/reports/2021-06-30/reports",
            guarded(fake, "createReport", "sp", create),
            methods=["POST"],
        ),
        Route(
            "/reports/2021-06-30/reports/{report_id}",
            guarded(fake, "getReport", "sp", get_report),
            methods=["GET"],
        ),
        Route(
            "/reports/2021-06-30/documents/{document_id}",
            guarded(fake, "getReportDocument", "sp", get_document),
            methods=["GET"],
        ),
        Route("/__s3/reports/{report_id}", download, methods=["GET"]),
    ]


def _job(fake: FakeAmazon, report_id: str, seller: int, kind: str) -> ReportJob:
    job = fake.reports.get(report_id)
    if job is None or job.seller != seller or job.kind != kind:
        raise BadParam(f"Report {report_id} does not exist.")
    return job


def status_for(fake: FakeAmazon, job: ReportJob, names: tuple[str, str, str, str]) -> str:
    queued, running, done, failed = names
    if job.polls <= fake.polls_until_done:
        return queued if job.polls == 1 else running
    return failed if job.fail else done


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _listings_tsv(fake: FakeAmazon, seller: int) -> bytes:
    rows = ["\t".join(_LISTING_COLUMNS)]
    for n, sku in enumerate(fake.data[seller].skus):
        inventory = fake.data[seller].inventory[n]
        values = dict.fromkeys(_LISTING_COLUMNS, "")
        values.update(
            {
                "item-name": sku["title"],
                # Cp1252-only punctuation, as real exports contain.
                "item-description": f"{sku['title']} \u2013 premium quality",
                "listing-id": f"0{seller}{n:02d}ZX{n}",
                "seller-sku": sku["sku"],
                "price": str(sku["price"]),
                "quantity": "",
                "open-date": "2025-03-01 10:00:00 PST",
                "item-condition": "11",
                "asin1": sku["asin"],
                "product-id": sku["asin"],
                "product-id-type": "1",
                "pending-quantity": str(
                    inventory["inventoryDetails"]["reservedQuantity"]["totalReservedQuantity"]
                ),
                "fulfillment-channel": "AMAZON_NA",
                "status": "Active",
            }
        )
        rows.append("\t".join(values[c] for c in _LISTING_COLUMNS))
    return ("\r\n".join(rows) + "\r\n").encode("cp1252")
