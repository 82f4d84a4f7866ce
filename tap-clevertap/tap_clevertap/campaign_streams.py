"""Campaign streams: campaigns, each campaign's report, message reports."""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import typing as th
from typing_extensions import override

from tap_clevertap.client import CleverTapStream
from tap_clevertap.records import (
    canonical_json,
    coerce_datetime,
    json_or_none,
    scalar_str,
    snake,
)
from tap_clevertap.streams import CAMPAIGN_WINDOW_DAYS, WindowedStream, count_or_none
from tap_clevertap.timeutil import local_date, month_windows, yyyymmdd

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import requests
    from singer_sdk.helpers.types import Context, Record

# How CleverTap says a campaign has no report yet (HTTP 409, 500 or 200 bodies).
_NO_RESULT_MARKERS = (
    "no result",
    "no report",
    "not been completed",
    "hasn't been completed",
)


class CampaignsStream(WindowedStream):
    """Campaigns by scheduled date, in 31-day windows, including future ones."""

    name = "campaigns"
    path = "/1/targets/list.json"
    primary_keys: ClassVar[tuple[str, ...]] = ("id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True, description="Campaign id."),
        th.Property("name", th.StringType),
        th.Property("status", th.StringType),
        th.Property(
            "scheduled_on", th.DateTimeType, description="Scheduled start, in UTC."
        ),
        th.Property(
            "scheduled_on_raw", th.StringType, description="scheduled_on as exported."
        ),
        th.Property("campaign_json", th.StringType, description="The whole entry."),
    ).to_dict()

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        first = local_date(self.range_start(None), self.zone)
        ahead = int(self.config["campaign_lookahead_days"])
        last = self.today() + dt.timedelta(days=ahead)
        if self.config.get("end_date"):
            last = min(last, self.last_day())
        seen: set[int] = set()
        for chunk_from, chunk_to in month_windows(first, last, CAMPAIGN_WINDOW_DAYS):
            body = {"from": yyyymmdd(chunk_from), "to": yyyymmdd(chunk_to)}
            _, payload = self.call("POST", self.path, body=body, context=context)
            self.fail_on_body(payload, f"the campaign list {body}")
            for target in payload.get("targets") or []:
                record = self._shape(target)
                if record is not None and record["id"] not in seen:
                    seen.add(record["id"])
                    yield record

    def _shape(self, target: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            campaign_id = int(target["id"])
        except (KeyError, TypeError, ValueError):
            return None
        scheduled = target.get("scheduled_on")
        return {
            "id": campaign_id,
            "name": scalar_str(target.get("name")),
            "status": scalar_str(target.get("status")),
            "scheduled_on": (
                coerce_datetime(scheduled, self.zone) if scheduled is not None else None
            ),
            "scheduled_on_raw": scalar_str(scheduled),
            "campaign_json": canonical_json(target),
        }

    @override
    def get_child_context(self, record: Record, context: Context | None) -> Context:
        return {"campaign_id": record["id"]}


CAMPAIGN_METRICS = (
    "sent",
    "delivered",
    "viewed",
    "clicked",
    "converted",
    "failed",
    "bounced",
    "errors",
)


class CampaignReportsStream(CleverTapStream):
    """The report of each campaign; campaigns without a result yet are skipped."""

    name = "campaign_reports"
    path = "/1/targets/result.json"
    parent_stream_type = CampaignsStream
    state_partitioning_keys: ClassVar[list[str]] = []
    primary_keys: ClassVar[tuple[str, ...]] = ("campaign_id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("campaign_id", th.IntegerType, required=True),
        *(th.Property(metric, th.IntegerType) for metric in CAMPAIGN_METRICS),
        th.Property("result_json", th.StringType, description="The whole result."),
    ).to_dict()

    @override
    def tolerated(self, response: requests.Response) -> bool:
        if response.status_code == HTTPStatus.CONFLICT:
            return True
        return _says_no_result(response.text)

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        campaign_id = (context or {})["campaign_id"]
        response, payload = self.call(
            "POST", self.path, body={"id": campaign_id}, context=context
        )
        result = payload.get("result") if isinstance(payload, dict) else None
        if response.status_code >= HTTPStatus.BAD_REQUEST or not isinstance(
            result, dict
        ):
            if (
                response.status_code != HTTPStatus.CONFLICT
                and isinstance(payload, dict)
                and payload.get("status") == "fail"
                and not _says_no_result(str(payload.get("error", "")))
            ):
                self.fail_on_body(payload, f"the report of campaign {campaign_id}")
            self.logger.info("Campaign %s has no report yet; skipped", campaign_id)
            return
        record: dict[str, Any] = {"campaign_id": campaign_id}
        for metric in CAMPAIGN_METRICS:
            record[metric] = count_or_none(result.get(metric))
        record["result_json"] = canonical_json(result)
        yield record


def _says_no_result(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _NO_RESULT_MARKERS)


MESSAGE_FILTERS = {
    "message_report_channels": "channel",
    "message_report_delivery": "delivery",
    "message_report_status": "status",
    "message_report_message_types": "message_type",
    "message_report_labels": "label",
}


class MessageReportsStream(WindowedStream):
    """Message reports by send date, in 31-day windows (full table)."""

    name = "message_reports"
    path = "/1/message/report.json"
    primary_keys: ClassVar[tuple[str, ...]] = ("message_id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("message_id", th.StringType, required=True),
        th.Property("message_name", th.StringType),
        th.Property("channel", th.StringType),
        th.Property("delivery", th.StringType),
        th.Property("status", th.StringType),
        th.Property("message_type", th.StringType),
        th.Property("label", th.StringType),
        th.Property("date", th.DateType, description="Send day (account-local)."),
        th.Property("sent", th.IntegerType),
        th.Property("viewed", th.IntegerType),
        th.Property("clicked", th.IntegerType),
        th.Property("daily_json", th.StringType, description="Day-wise split."),
        th.Property("message_json", th.StringType, description="The whole entry."),
    ).to_dict()

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        first = local_date(self.range_start(None), self.zone)
        last = self.last_day()
        filters: dict[str, Any] = {
            api_key: list(self.config[setting])
            for setting, api_key in MESSAGE_FILTERS.items()
            if self.config.get(setting)
        }
        if self.config.get("message_report_daily"):
            filters["daily"] = True
        seen: set[str] = set()
        for chunk_from, chunk_to in month_windows(first, last, CAMPAIGN_WINDOW_DAYS):
            body = {
                "from": str(yyyymmdd(chunk_from)),
                "to": str(yyyymmdd(chunk_to)),
                **filters,
            }
            _, payload = self.call("POST", self.path, body=body, context=context)
            self.fail_on_body(payload, f"the message report {body}")
            for message in payload.get("messages") or []:
                record = shape_message(message)
                if record is not None and record["message_id"] not in seen:
                    seen.add(record["message_id"])
                    yield record


_YYYYMMDD_DIGITS = 8


def _local_day(value: object) -> str | None:
    text = str(value or "")
    if len(text) != _YYYYMMDD_DIGITS or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError:
        return None


def shape_message(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """A flat message-report row (keys like ``message id`` become snake_case)."""
    by_key = {snake(str(key)): value for key, value in message.items()}
    message_id = scalar_str(by_key.get("message_id") or by_key.get("id"))
    if message_id is None:
        return None
    record: dict[str, Any] = {"message_id": message_id}
    for key in ("message_name", "channel", "delivery", "status", "message_type"):
        record[key] = scalar_str(by_key.get(key))
    label = by_key.get("label")
    record["label"] = (
        canonical_json(label) if isinstance(label, list) else (scalar_str(label))
    )
    record["date"] = _local_day(by_key.get("date"))
    for metric in ("sent", "viewed", "clicked"):
        record[metric] = count_or_none(by_key.get(metric))
    record["daily_json"] = json_or_none(by_key.get("daily"))
    record["message_json"] = canonical_json(message)
    return record
