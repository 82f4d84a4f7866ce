"""Pure profile shaping: identity columns, profile properties, profile rows.

Nothing here does I/O. Used by the profiles stream and by every event stream
(each event row carries the profile that raised it).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from tap_clevertap.records import (
    BOOLEAN,
    STRING,
    Columns,
    column_schema,
    json_or_none,
    lift_object_id,
    object_schema,
    scalar_str,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from zoneinfo import ZoneInfo

_APP_FIELD_NOTE = "Device field; exported with include_app_fields (app=true)."
PROFILE_PROPERTY = "profile property"
PROFILE_BASE: dict[str, dict[str, Any]] = {
    "identity": column_schema(STRING, "The profile's identity (your user id)."),
    "object_id": column_schema(STRING, "CleverTap objectId (per device/profile)."),
    "email": column_schema(STRING),
    "phone": column_schema(STRING),
    "name": column_schema(STRING),
    "platform": column_schema(STRING),
    "os_version": column_schema(STRING, _APP_FIELD_NOTE),
    "app_version": column_schema(STRING, _APP_FIELD_NOTE),
    "make": column_schema(STRING, _APP_FIELD_NOTE),
    "model": column_schema(STRING, _APP_FIELD_NOTE),
}
_PROFILE_SOURCE = {
    "identity": "identity",
    "email": "email",
    "phone": "phone",
    "name": "name",
    "platform": "platform",
    "os_version": "os_version",
    "app_version": "app_version",
    "make": "make",
    "model": "model",
}
# Profile keys that have a column of their own (or a JSON column) in every stream;
# whatever else the export's profile carries goes to `profile_extra_json`.
_PROFILE_KEYS_IN_COLUMNS = frozenset(
    {*_PROFILE_SOURCE.values(), "objectId", "gender", "profileData", "platformInfo"}
)


# Profile fields CleverTap lifts out of profileData to the top level of a record.
LIFTED_PROFILE_FIELDS = {"Name": "name", "Email": "email", "Phone": "phone"}
_LIFTED_TOO = {"Gender": "gender"}


def profile_values(profile: Mapping[str, Any]) -> dict[str, Any]:
    """ProfileData plus the lifted keys that have no base column (Gender)."""
    values = dict(profile.get("profileData") or {})
    for raw, key in _LIFTED_TOO.items():
        if raw not in values and profile.get(key) is not None:
            values[raw] = profile[key]
    return values


# CleverTap's channel subscription flags (booleans; false = unsubscribed), always
# columns (profile_msg_email...): /getSchema need not list them, and consent must
# reach the export whether or not an account's schema shows them.
SUBSCRIPTION_FLAGS = ("MSG-email", "MSG-sms", "MSG-whatsapp", "MSG-push")


def profile_column_types(types: Mapping[str, str]) -> dict[str, str]:
    """Profile property types minus those already in base columns (Name...).

    The subscription flags are always there, as booleans.
    """
    columns = {k: v for k, v in types.items() if k not in LIFTED_PROFILE_FIELDS}
    columns.update(dict.fromkeys(SUBSCRIPTION_FLAGS, BOOLEAN))
    return columns


def profile_base(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The identity columns of a profile (every profile and event row has them)."""
    record = {key: scalar_str(profile.get(src)) for key, src in _PROFILE_SOURCE.items()}
    record["object_id"] = lift_object_id(profile)
    return record


def profile_extra(
    profile: Mapping[str, Any], skip: frozenset[str] = frozenset()
) -> str | None:
    """Canonical JSON of the profile keys no column holds (``df``, ``push_token``...).

    Args:
        profile: the exported profile object.
        skip: further keys held by the stream's own JSON columns.

    Returns:
        The JSON text, or None when nothing is left.
    """
    extra = {
        key: value
        for key, value in profile.items()
        if key not in _PROFILE_KEYS_IN_COLUMNS and key not in skip
    }
    return json_or_none(extra)


PROFILE_EXTRA_NOTE = (
    "Every other key of the exported profile (e.g. df, push_token, events), as JSON."
)


@dataclasses.dataclass(frozen=True)
class ProfileShape:
    """How ``/1/profiles.json`` records become flat rows keyed on ``object_id``."""

    profile: Columns

    @classmethod
    def build(cls, profile_property_types: Mapping[str, str]) -> ProfileShape:
        """Name the profile-property columns."""
        taken = set(PROFILE_BASE) | set(_PROFILE_EXTRA)
        return cls(
            Columns.build(PROFILE_PROPERTY, "profile_", profile_property_types, taken)
        )

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> ProfileShape:
        """The shape a catalog schema (from an earlier discovery) describes."""
        return cls(Columns.from_schema(PROFILE_PROPERTY, schema))

    def schema(self) -> dict[str, Any]:
        """The stream's JSON schema."""
        properties = {**PROFILE_BASE, **_PROFILE_EXTRA}
        properties.update(self.profile.schema())
        return object_schema(properties, required=("object_id",))

    def record(self, raw: Mapping[str, Any], zone: ZoneInfo) -> dict[str, Any] | None:
        """Shape one profile; None when it has no objectId anywhere."""
        record = profile_base(raw)
        if not record["object_id"]:
            return None
        self.profile.fill(record, profile_values(raw), zone)
        record["profile_data_json"] = json_or_none(raw.get("profileData"))
        record["platform_info_json"] = json_or_none(raw.get("platformInfo"))
        record["events_json"] = json_or_none(raw.get("events"))
        record["profile_extra_json"] = profile_extra(raw, skip=_PROFILE_JSON_KEYS)
        return record


_PROFILE_JSON_KEYS = frozenset({"events"})


_PROFILE_EXTRA: dict[str, dict[str, Any]] = {
    "profile_data_json": column_schema(STRING, "All profile properties, as JSON."),
    "platform_info_json": column_schema(STRING, "Devices (platformInfo), as JSON."),
    "events_json": column_schema(
        STRING, "Per-event summary (count, first_seen, last_seen), as JSON."
    ),
    "profile_extra_json": column_schema(STRING, PROFILE_EXTRA_NOTE),
}
