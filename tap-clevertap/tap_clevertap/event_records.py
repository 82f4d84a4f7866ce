"""Pure event shaping: event keys and the rows of one event's export.

Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any

from tap_clevertap.profile_records import (
    PROFILE_BASE,
    PROFILE_PROPERTY,
    profile_base,
    profile_extra,
    profile_values,
)
from tap_clevertap.records import (
    DATETIME,
    STRING,
    Columns,
    canonical_json,
    column_schema,
    json_or_none,
    object_schema,
)
from tap_clevertap.timeutil import iso_utc, parse_account_ts

if TYPE_CHECKING:
    from collections.abc import Mapping
    from zoneinfo import ZoneInfo

EVENT_PROPERTY = "event property"


def event_key(  # noqa: PLR0913 - the documented key parts, all keyword-only
    *,
    identity: str | None,
    object_id: str | None,
    event_name: str,
    ts: object,
    event_props: Mapping[str, Any] | None,
    session_props: Mapping[str, Any] | None,
) -> str:
    """The stable primary key of an exported event (CleverTap has no event id).

    ``sha256`` (hex) of the canonical JSON (see `canonical_json`) of the array
    ``[who, event_name, ts, event_props, session_props]``, where ``who`` is the
    identity, or ``"objectId:" + objectId`` when the profile has no identity, and
    ``ts`` is the 14-digit local timestamp as a string. Properties absent from the
    export count as ``{}``.

    Returns:
        64 lowercase hex digits.
    """
    return event_key_from_json(
        identity=identity,
        object_id=object_id,
        event_name=event_name,
        ts=str(ts),
        event_props_json=canonical_json(dict(event_props or {})),
        session_props_json=canonical_json(dict(session_props or {})),
    )


def event_key_from_json(  # noqa: PLR0913 - the key parts, properties pre-serialised
    *,
    identity: str | None,
    object_id: str | None,
    event_name: str,
    ts: str,
    event_props_json: str,
    session_props_json: str,
) -> str:
    """`event_key` with the two property objects already in canonical JSON.

    ``json.dumps`` of a list is ``[`` + its items' dumps joined by ``,`` + ``]``,
    so property JSON serialised once serves both the key and the JSON columns.
    """
    who = identity if identity not in (None, "") else f"objectId:{object_id or ''}"
    head = canonical_json([who, event_name, ts])[:-1]
    material = f"{head},{event_props_json},{session_props_json}]"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class EventShape:
    """How one event's export records become flat rows.

    Columns: ``event_key`` (primary key), ``event_name``, ``ts`` (ISO UTC),
    ``ts_account`` (the exported local ``yyyyMMddHHmmss``), the profile identity
    columns, ``prop_*`` (event properties), ``profile_*`` (profile properties),
    and lossless canonical-JSON copies ``event_props_json``, ``session_props_json``
    and ``profile_data_json``.
    """

    event_name: str
    props: Columns
    profile: Columns

    @classmethod
    def build(
        cls,
        event_name: str,
        event_property_types: Mapping[str, str],
        profile_property_types: Mapping[str, str],
    ) -> EventShape:
        """Name the columns of one event stream."""
        taken = set(_EVENT_BASE) | set(PROFILE_BASE)
        props = Columns.build(EVENT_PROPERTY, "prop_", event_property_types, taken)
        profile = Columns.build(
            PROFILE_PROPERTY, "profile_", profile_property_types, taken
        )
        return cls(event_name, props, profile)

    @classmethod
    def from_schema(cls, event_name: str, schema: Mapping[str, Any]) -> EventShape:
        """The shape a catalog schema (from an earlier discovery) describes."""
        return cls(
            event_name,
            Columns.from_schema(EVENT_PROPERTY, schema),
            Columns.from_schema(PROFILE_PROPERTY, schema),
        )

    def schema(self) -> dict[str, Any]:
        """The stream's JSON schema."""
        properties = {**_EVENT_BASE, **PROFILE_BASE}
        properties.update(self.props.schema())
        properties.update(self.profile.schema())
        return object_schema(properties, required=("event_key", "event_name", "ts"))

    def record(
        self, raw: Mapping[str, Any], zone: ZoneInfo
    ) -> tuple[dict[str, Any], Any] | None:
        """Shape one export record; None when its ``ts`` cannot be read.

        Returns:
            The row and its UTC instant.
        """
        try:
            moment = parse_account_ts(raw.get("ts"), zone)
        except ValueError:
            return None
        profile = raw.get("profile") or {}
        event_props = raw.get("event_props") or {}
        session_props = raw.get("session_props") or {}
        record: dict[str, Any] = profile_base(profile)
        ts_text = str(raw.get("ts")).strip()
        event_json = canonical_json(event_props)
        session_json = canonical_json(session_props)
        record["event_key"] = event_key_from_json(
            identity=record["identity"],
            object_id=record["object_id"],
            event_name=self.event_name,
            ts=ts_text,
            event_props_json=event_json,
            session_props_json=session_json,
        )
        record["event_name"] = self.event_name
        record["ts"] = iso_utc(moment)
        record["ts_account"] = ts_text
        self.props.fill(record, event_props, zone)
        self.profile.fill(record, profile_values(profile), zone)
        record["event_props_json"] = event_json if event_props else None
        record["session_props_json"] = session_json if session_props else None
        record["profile_data_json"] = json_or_none(profile.get("profileData"))
        record["platform_info_json"] = json_or_none(profile.get("platformInfo"))
        record["profile_extra_json"] = profile_extra(profile)
        return record, moment


PROFILE_EXTRA_NOTE = (
    "Every other key of the exported profile (e.g. df, push_token, events), as JSON."
)
_EVENT_BASE: dict[str, dict[str, Any]] = {
    "event_key": column_schema(
        STRING, "sha256 of (identity, event name, ts, properties); see README."
    ),
    "event_name": column_schema(STRING, "The CleverTap event name, as raised."),
    "ts": column_schema(DATETIME, "When the event happened, in UTC."),
    "ts_account": column_schema(
        STRING, "The exported yyyyMMddHHmmss, in the account time zone."
    ),
    "event_props_json": column_schema(STRING, "All event properties, as JSON."),
    "session_props_json": column_schema(STRING, "All session properties, as JSON."),
    "profile_data_json": column_schema(STRING, "All profile properties, as JSON."),
    "platform_info_json": column_schema(STRING, "Devices (platformInfo), as JSON."),
    "profile_extra_json": column_schema(STRING, PROFILE_EXTRA_NOTE),
}
