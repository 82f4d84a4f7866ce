"""`tap-clevertap --preflight`: check a configuration against CleverTap, read only.

Checks, one output line each (`PASS`, `FAIL` with the fix, or `WARN`):

- credentials and region: `GET /getSchema?type=userProperties`. CleverTap answers
  401 both for wrong credentials and for the wrong regional host (shared docs,
  clevertap-api.md section 1), so after a 401 the read is tried on the other
  regions' hosts: an answer there names the region to configure. Another 4xx
  means the credentials were taken but `/getSchema` is refused (it is not in
  CleverTap's public API reference): a WARN with `event_names` set (the tap does
  without the listing), a FAIL naming `event_names` otherwise.
- time zone: CleverTap's API does not return the account's time zone. What it
  does return is enough to check it: an exported event's `ts` is the account-local
  `yyyyMMddHHmmss`, and its profile's `events.<name>.first_seen`/`last_seen` are
  epoch seconds, equal to that event's moment when it is the person's first or
  last one (the recorded real export in ../shared/fixtures/real-api/clevertap,
  events-export-page.apperture.json, shows +05:30 for an in1 account). The check
  exports the last 7 days of up to three events and compares the offsets it sees
  with `timezone`. With no event to compare, it warns instead.
- custom profile keys: how many of CleverTap's 256 the account uses (the tap adds
  none; target-clevertap --preflight counts what the import would add).

The exit status is 1 when any check fails.
"""

from __future__ import annotations

import collections
import datetime as dt
from typing import TYPE_CHECKING, Any

import requests

from tap_clevertap.client import DEFAULT_REGION, REGION_HOSTS, CleverTapAuth
from tap_clevertap.preflight_cli import (
    Check,
    settings_loader,
    with_preflight_option,
)
from tap_clevertap.timeutil import load_zone, yyyymmdd

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from zoneinfo import ZoneInfo

    import click

MAX_CUSTOM_PROFILE_KEYS = 256
SYSTEM_PROFILE_KEYS = frozenset(
    {"Name", "Email", "Phone", "Gender", "Employed", "Education", "Married", "Age"}
    | {"DOB", "Photo", "Tz", "Identity"}
)
HTTP_OK = 200
HTTP_BAD_REQUEST = 400
HTTP_UNAUTHORIZED = 401
HTTP_SERVER_ERROR = 500
LOOKBACK_DAYS = 7
MAX_EVENT_NAMES = 3
MAX_OFFSET_SECONDS = 14 * 3600
OFFSET_STEP_SECONDS = 900  # every UTC offset in use is a multiple of 15 minutes
PAGE_TRIES = 5
PAGE_SIZE = 100
TS_FORMAT = "%Y%m%d%H%M%S"


# --------------------------------------------------------------------------- pure


def offsets_seen(record: Mapping[str, Any], event_name: str) -> set[int]:
    """UTC offsets (seconds) that turn the event's epoch times into its local `ts`."""
    try:
        local = dt.datetime.strptime(str(record.get("ts")), TS_FORMAT)  # noqa: DTZ007 - account-local wall time, compared as such
    except ValueError:
        return set()
    profile = record.get("profile") or {}
    summary = (profile.get("events") or {}).get(event_name) or {}
    out = set()
    for key in ("first_seen", "last_seen"):
        epoch = summary.get(key)
        if not isinstance(epoch, int | float):
            continue
        utc = dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)
        offset = round((local - utc).total_seconds())
        if abs(offset) <= MAX_OFFSET_SECONDS and offset % OFFSET_STEP_SECONDS == 0:
            out.add(offset)
    return out


def _show(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    return f"UTC{sign}{hours:02d}:{rest // 60:02d}"


def timezone_check(
    records: Iterable[tuple[Mapping[str, Any], str]], zone: ZoneInfo, name: str
) -> Check:
    """Compare the offsets exported events show with the configured zone.

    Args:
        records: (exported event record, its event name) pairs.
        zone: the configured `timezone`.
        name: its name, for the message.
    """
    votes: collections.Counter[int] = collections.Counter()
    matching = 0
    for record, event_name in records:
        seen = offsets_seen(record, event_name)
        if not seen:
            continue
        local = dt.datetime.strptime(str(record["ts"]), TS_FORMAT)  # noqa: DTZ007 - wall time in the account zone
        offset = local.replace(tzinfo=zone).utcoffset()
        configured = round(offset.total_seconds()) if offset is not None else 0
        matching += configured in seen
        votes.update(seen)
    if not votes:
        return Check(
            "time zone",
            "WARN",
            "CleverTap's API does not return the account time zone, and no event "
            f"of the last {LOOKBACK_DAYS} days could be compared with timezone={name}",
            "check timezone against the CleverTap dashboard (Settings > Account)",
        )
    if matching:
        return Check(
            "time zone",
            "PASS",
            f"{matching} exported events line up with timezone={name}",
        )
    best, count = votes.most_common(1)[0]
    return Check(
        "time zone",
        "FAIL",
        f"exported event times are {_show(best)} ({count} events), but "
        f"timezone={name} is not",
        "set timezone to the account's IANA zone (CleverTap dashboard: Settings > "
        "Account), or the tap reads events into the wrong days",
    )


def credentials_check(where: str, error: str | None, answering: list[str]) -> Check:
    """What the getSchema read (and the other regions' answers) say."""
    name = "credentials and region"
    if error is None:
        return Check(name, "PASS", f"the account answers on {where}")
    if answering:
        return Check(
            name,
            "FAIL",
            f"{error}; the same credentials work in region {', '.join(answering)}",
            f"set region: {answering[0]} (the subdomain of your dashboard URL)",
        )
    return Check(
        name,
        "FAIL",
        error,
        "check account_id and passcode (CleverTap dashboard: Settings > Project), "
        "and region (the subdomain of your dashboard URL)",
    )


def _refused_not_unauthorised(status: int | None) -> bool:
    """A 4xx other than 401: the credentials were taken, the read was refused."""
    if status is None or status == HTTP_UNAUTHORIZED:
        return False
    return HTTP_BAD_REQUEST <= status < HTTP_SERVER_ERROR


def schema_refused_check(where: str, error: str, config: Mapping[str, Any]) -> Check:
    """What the tap does when `/getSchema` is refused with a 4xx other than 401.

    `/getSchema` is not in CleverTap's public API reference, so an account may
    refuse it; the credentials were taken all the same.
    """
    detail = (
        f"the account answers on {where} (no 401), but {error}: the tap types "
        "columns from sample export pages, and lists no event names by itself"
    )
    if config.get("event_names"):
        return Check("credentials and region", "WARN", detail)
    return Check(
        "credentials and region",
        "FAIL",
        detail,
        "set event_names to the events to export",
    )


def profile_keys_check(existing: Iterable[str]) -> Check:
    """How many of the 256 custom profile keys the account already uses."""
    custom = {
        k for k in existing if k not in SYSTEM_PROFILE_KEYS and not k.startswith("MSG-")
    }
    detail = (
        f"the account has {len(custom)} of {MAX_CUSTOM_PROFILE_KEYS}; the tap adds "
        "none (target-clevertap --preflight counts what the import adds)"
    )
    return Check("custom profile keys", "PASS", detail)


# --------------------------------------------------------------------------- I/O


class _Reader:
    """Plain reads with the tap's auth: getSchema and one export page walk."""

    def __init__(self, config: Mapping[str, Any], base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.auth = CleverTapAuth(
            str(config.get("account_id") or ""), str(config.get("passcode") or "")
        )
        self.timeout = float(config.get("request_timeout") or 30)

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        response = self.session.get(
            self.base_url + path, params=params, timeout=self.timeout
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def schema(self, kind: str) -> tuple[list[str] | None, str | None, int | None]:
        """The names `/getSchema` lists, or why not, and the HTTP status."""
        try:
            status, body = self.get("/getSchema", type=kind)
        except requests.RequestException as exc:
            return None, f"GET /getSchema: {type(exc).__name__}", None
        if status != HTTP_OK or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else ""
            return None, f"GET /getSchema: HTTP {status} {error}".rstrip(), status
        items = body.get(kind) or []
        return [str(i.get("name")) for i in items if isinstance(i, dict)], None, status

    def events(
        self, event_name: str, start: dt.date, end: dt.date
    ) -> list[dict[str, Any]]:
        response = self.session.post(
            f"{self.base_url}/1/events.json",
            params={"batch_size": PAGE_SIZE},
            json={
                "event_name": event_name,
                "from": yyyymmdd(start),
                "to": yyyymmdd(end),
            },
            timeout=self.timeout,
        )
        cursor = (
            response.json().get("cursor") if response.status_code == HTTP_OK else None
        )
        for _ in range(PAGE_TRIES if cursor else 0):
            page = self.session.get(
                f"{self.base_url}/1/events.json?cursor={cursor}", timeout=self.timeout
            ).json()
            records = page.get("records") if isinstance(page, dict) else None
            if records is not None:
                return [r for r in records if isinstance(r, dict)]
        return []

    def close(self) -> None:
        self.session.close()


def _records(
    reader: _Reader, names: list[str], zone: ZoneInfo
) -> list[tuple[dict[str, Any], str]]:
    today = dt.datetime.now(zone).date()
    start = today - dt.timedelta(days=LOOKBACK_DAYS - 1)
    out: list[tuple[dict[str, Any], str]] = []
    for name in names[:MAX_EVENT_NAMES]:
        try:
            out += [(r, name) for r in reader.events(name, start, today)]
        except (requests.RequestException, ValueError):
            continue
    return out


def run_checks(
    config: Mapping[str, Any], hosts: Mapping[str, str] = REGION_HOSTS
) -> list[Check]:
    """Every preflight check for one tap-clevertap configuration.

    Args:
        config: the settings.
        hosts: region -> API host (tests point the regions at emulators).
    """
    region = str(config.get("region") or DEFAULT_REGION)
    api_url = config.get("api_url") or None
    base = api_url or hosts.get(region)
    if base is None:
        fix = f"use one of {', '.join(hosts)}"
        return [
            Check("credentials and region", "FAIL", f"unknown region {region!r}", fix)
        ]
    reader = _Reader(config, str(base))
    try:
        existing, error, status = reader.schema("userProperties")
        where = f"api_url {api_url}" if api_url else f"region {region}"
        if error is not None and _refused_not_unauthorised(status):
            # the credentials were taken (no 401); the tap does without the listing
            checks = [schema_refused_check(where, error, config)]
            existing = None
        else:
            answering: list[str] = []
            if error is not None and not api_url:
                for other, host in hosts.items():
                    probe = _Reader(config, host)
                    if other != region and probe.schema("userProperties")[1] is None:
                        answering.append(other)
                    probe.close()
            checks = [credentials_check(where, error, answering)]
            if existing is None:
                return checks
        zone_name = str(config.get("timezone") or "UTC")
        try:
            zone = load_zone(zone_name)
        except ValueError as exc:
            return [
                *checks,
                Check("time zone", "FAIL", str(exc), "use an IANA zone name"),
            ]
        names = list(config.get("event_names") or [])
        if not names and existing is not None:
            names = reader.schema("events")[0] or []
        checks.append(timezone_check(_records(reader, names, zone), zone, zone_name))
        if existing is not None:
            checks.append(profile_keys_check(existing))
        return checks
    finally:
        reader.close()


# --------------------------------------------------------------------------- CLI


HELP = "Check the configuration against CleverTap (reads only) and exit."


def with_option(command: click.Command, schema: Mapping[str, Any]) -> click.Command:
    """The SDK's command plus `--preflight`; `schema` is the plugin's settings."""
    load = settings_loader(schema, "TAP_CLEVERTAP_")
    return with_preflight_option(command, load, run_checks, HELP)
