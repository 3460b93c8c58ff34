"""Amazon Ads API: /v2/profiles and sponsored ads reporting v3.

Report types, as documented (guides/reporting/v3/report-types): ``spCampaigns`` and
``spAdvertisedProduct`` (Sponsored Products), ``sbCampaigns`` (Sponsored Brands) and
``sdCampaigns`` (Sponsored Display); at most 31 days per report, and each type's data
retention (95, 95, 60 and 65 days).
"""

from __future__ import annotations

import gzip
import json
from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from processors.fake_amazon import responses
from processors.fake_amazon.dataset import AD_RETENTION_DAYS, MARKETPLACES, Json, ads_last_day, iso
from processors.fake_amazon.guard import guarded
from processors.fake_amazon.params import BadParam, own_base_url
from processors.fake_amazon.presign import presign, refused
from processors.fake_amazon.routes.reports import status_for
from processors.fake_amazon.state import FakeAmazon

CREATE_CONTENT_TYPE = "application/vnd.createasyncreportrequest.v3+json"
_COMMON = {"date", "startDate", "endDate", "impressions", "clicks", "cost", "campaignId", "campaignName"}
# reportTypeId -> (adProduct, groupBy allowed, columns served)
_REPORTS: dict[str, tuple[str, set[str], set[str]]] = {
    "spCampaigns": ("SPONSORED_PRODUCTS", {"campaign", "adGroup", "campaignPlacement"}, _COMMON | {
        "campaignStatus", "spend", "purchases1d", "purchases7d", "purchases14d", "sales1d", "sales7d",
        "sales14d", "unitsSoldClicks7d", "campaignBudgetAmount"}),
    "spAdvertisedProduct": ("SPONSORED_PRODUCTS", {"advertiser"}, _COMMON | {
        "adGroupId", "adId", "advertisedSku", "advertisedAsin", "spend", "purchases7d", "sales7d",
        "unitsSoldClicks7d", "acosClicks7d"}),
    "sbCampaigns": ("SPONSORED_BRANDS", {"campaign"}, _COMMON | {
        "campaignStatus", "purchases", "sales", "salesClicks", "unitsSold"}),
    "sdCampaigns": ("SPONSORED_DISPLAY", {"campaign", "matchedTarget"}, _COMMON | {
        "campaignStatus", "purchases", "sales", "salesClicks", "unitsSold"}),
}  # fmt: skip


def routes(fake: FakeAmazon) -> list[Route]:
    async def profiles(request: Request, seller: int) -> Response:
        s = fake.data[seller].seller
        return JSONResponse(
            [
                {
                    "profileId": profile_id,
                    "countryCode": MARKETPLACES[marketplace_id][1],
                    "currencyCode": MARKETPLACES[marketplace_id][2],
                    "dailyBudget": 999999999.0,
                    "timezone": MARKETPLACES[marketplace_id][4],
                    "accountInfo": {
                        "marketplaceStringId": marketplace_id,
                        "id": s.seller_id,
                        "type": "seller",
                        "name": s.name,
                        "validPaymentMethod": True,
                    },
                }
                for marketplace_id, profile_id in zip(s.marketplace_ids, s.profile_ids, strict=True)
            ]
        )

    async def create(request: Request, seller: int) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != CREATE_CONTENT_TYPE:
            return responses.ads_error(415, "415", "Content-Type must be " + CREATE_CONTENT_TYPE)
        try:
            body = json.loads(await request.body())
            config = body["configuration"]
            start, end = date.fromisoformat(body["startDate"]), date.fromisoformat(body["endDate"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadParam(f"Invalid report request: {exc}") from exc
        profile = int(request.headers["amazon-advertising-api-scope"])
        _validate(config, start, end, _profile_today(fake, seller, profile))
        body["_profile"] = profile
        canonical = json.dumps(body, sort_keys=True)
        for job in fake.reports.values():
            pending = job.kind == "ads" and job.polls <= fake.polls_until_done
            if pending and job.seller == seller and json.dumps(job.request, sort_keys=True) == canonical:
                return JSONResponse(
                    {"code": "425", "detail": f"The Request is a duplicate of : {job.report_id}"},
                    425,
                )
        job = fake.add_report(seller, "ads", body)
        return JSONResponse(_report_body(fake, job.report_id, request, advance=False))

    async def get_report(request: Request, seller: int) -> Response:
        job = fake.reports.get(request.path_params["report_id"])
        if job is None or job.seller != seller or job.kind != "ads":
            return responses.ads_error(404, "404", "Report not found")
        job.polls += 1
        return JSONResponse(_report_body(fake, job.report_id, request, advance=True))

    async def download(request: Request) -> Response:
        denied = refused(fake, request)
        if denied is not None:
            return denied
        job = fake.reports.get(request.path_params["report_id"])
        if job is None or not job.document:
            return Response(b"<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml")
        return Response(job.document, media_type="application/x-gzip")

    return [
        Route("/v2/profiles", guarded(fake, "listProfiles", "ads_profiles", profiles), methods=["GET"]),
        Route("/reporting/reports", guarded(fake, "createAdsReport", "ads", create), methods=["POST"]),
        Route(
            "/reporting/reports/{report_id}",
            guarded(fake, "getAdsReport", "ads", get_report),
            methods=["GET"],
        ),
        Route("/__s3/ads/{report_id}.json.gz", download, methods=["GET"]),
    ]


def _profile_today(fake: FakeAmazon, seller: int, profile: int) -> date:
    s = fake.data[seller].seller
    marketplace = s.marketplace_ids[s.profile_ids.index(profile)]
    return ads_last_day(marketplace, fake.clock.now()) + timedelta(days=1)


def _validate(config: Json, start: date, end: date, today: date) -> None:
    report_type = config.get("reportTypeId")
    if report_type not in _REPORTS:
        raise BadParam(f"Unsupported reportTypeId {report_type!r}; this fake serves {sorted(_REPORTS)}.")
    ad_product, group_by, allowed = _REPORTS[report_type]
    if config.get("adProduct") != ad_product:
        raise BadParam(f"{report_type} requires adProduct {ad_product}.")
    if config.get("format") != "GZIP_JSON":
        raise BadParam("format must be GZIP_JSON")
    if end < start:
        raise BadParam("endDate must not be before startDate")
    if (end - start).days + 1 > 31:
        raise BadParam(f"The date range of a {report_type} report cannot exceed 31 days.")
    if (today - start).days > AD_RETENTION_DAYS[report_type]:
        raise BadParam(f"startDate is beyond the {AD_RETENTION_DAYS[report_type]}-day retention of "
                       f"{report_type}.")
    columns = config.get("columns") or []
    unknown = set(columns) - allowed
    if unknown:
        raise BadParam(f"Invalid columns for {report_type}: " + ",".join(sorted(unknown)))
    if config.get("timeUnit") == "DAILY" and "date" not in columns:
        raise BadParam("The date column is required when timeUnit is DAILY.")
    if not set(config.get("groupBy") or []) <= group_by:
        raise BadParam(f"Invalid groupBy for {report_type}.")


def _report_body(fake: FakeAmazon, report_id: str, request: Request, *, advance: bool) -> Json:
    job = fake.reports[report_id]
    status = (
        "PENDING" if not advance else status_for(fake, job, ("PENDING", "PROCESSING", "COMPLETED", "FAILED"))
    )
    created = iso(fake.clock.now())
    body: Json = {
        "reportId": job.report_id,
        "name": job.request.get("name"),
        "status": status,
        "configuration": job.request["configuration"],
        "startDate": job.request["startDate"],
        "endDate": job.request["endDate"],
        "createdAt": created,
        "updatedAt": created,
        "url": None,
        "urlExpiresAt": None,
        "fileSize": None,
        "failureReason": "Internal error" if status == "FAILED" else None,
    }
    if status == "COMPLETED":
        if not job.document:
            job.document = gzip.compress(_rows_json(fake, job.seller, job.request))
        body["url"] = presign(fake, own_base_url(request), f"/__s3/ads/{job.report_id}.json.gz")
        body["urlExpiresAt"] = iso(fake.clock.now() + timedelta(hours=1))
        body["fileSize"] = len(job.document)
    return body


def _rows_json(fake: FakeAmazon, seller: int, request: Json) -> bytes:
    start, end = request["startDate"], request["endDate"]
    columns = request["configuration"]["columns"]
    rows = []
    report_type = request["configuration"]["reportTypeId"]
    for row in fake.data[seller].ad_report_rows(report_type, request["_profile"]):
        if start <= row["date"] <= end:
            full = {**row, "spend": row["cost"]}
            rows.append({c: full[c] for c in columns if c in full})
    return json.dumps(rows).encode()
