"""Event names, times and keys, and the deleted-record event (pure)."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import TYPE_CHECKING, Any

from target_clevertap.identities import render_template
from target_clevertap.payload_types import PayloadOptions, RecordReject, UploadItem
from target_clevertap.values import (
    _PROHIBITED_KEY_CHARS,
    KNOWN_DATE_FIELDS,
    epoch_seconds,
    sanitise_key,
    scalar_text,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Container, Iterable, Mapping

    from target_clevertap.mapping import EventSpec


def event_key(stream: str, record_key: str, name: str, ts: int, extra: str = "") -> str:
    """The deterministic key stored in every event (stream, record, name, ts).

    Args:
        stream: the stream.
        record_key: the record's key property values.
        name: the event name.
        ts: the event time (epoch seconds).
        extra: disambiguates events fanned out to several people.

    Returns:
        A 20-hex-digit key.
    """
    raw = "\x1f".join((stream, record_key, name, str(ts), extra))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


def record_key(record: Mapping[str, Any], key_properties: Iterable[str]) -> str:
    """A stable key for a record: its key properties, else a content hash.

    Args:
        record: the record.
        key_properties: the stream's key properties.

    Returns:
        The key.
    """
    keys = list(key_properties)
    if len(keys) == 1:  # the common case, `Id`
        value = record.get(keys[0])
        if type(value) is str:
            return value
    if keys and all(record.get(k) is not None for k in keys):
        return "|".join(scalar_text(record[k]) for k in keys)
    blob = json.dumps(record, sort_keys=True, default=scalar_text)
    return "sha:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


#: the fields tried, in order, for the time words (any other spec is one field)
_TIME_CANDIDATES = {
    "auto": ("CreatedDate", "SystemModstamp"),
    "modified": ("SystemModstamp", "LastModifiedDate"),  # when the record changed
}


def event_time(
    record: Mapping[str, Any],
    time_spec: str,
    now: int,
    *,
    date_fields: Container[str] = (),
    zone: dt.tzinfo | None = None,
) -> int:
    """The event's epoch seconds.

    A date-only field (`date_fields`, or a Salesforce date field such as
    CloseDate) gives midnight of its day in `zone`, the account time zone, as
    its profile property does: the event lands on that day in the dashboard.

    Args:
        record: the record.
        time_spec: `auto` (CreatedDate, else SystemModstamp), a field, or `now`.
        now: the current time, used only for `now`.
        date_fields: the stream's date-only fields (schema `format: date`).
        zone: the account time zone (None: UTC).

    Returns:
        Epoch seconds.

    Raises:
        RecordReject: when the time field is missing or not a date.
    """
    if time_spec == "now":
        return now
    candidates = _TIME_CANDIDATES.get(time_spec) or (time_spec,)
    for name in candidates:
        value = record.get(name)
        if value is None:
            continue
        date_only = name in date_fields or name in KNOWN_DATE_FIELDS
        seconds = epoch_seconds(value, date_only=date_only, zone=zone)
        if seconds is None:
            msg = f"{name} is not a date-time"
            raise RecordReject(msg, code="invalid_time", field_name=name)
        return seconds
    msg = f"no event time: {' / '.join(candidates)} is empty"
    raise RecordReject(msg, code="missing_time", field_name=candidates[0])


@functools.lru_cache(maxsize=1024)
def _fixed_name(text: str) -> str:
    """A template without placeholders, as an event name (cleaned once)."""
    return _PROHIBITED_KEY_CHARS.sub(" ", text).strip()


def event_name(record: Mapping[str, Any], spec: EventSpec) -> str:
    """The event name for a record.

    Args:
        record: the record.
        spec: the event spec.

    Returns:
        The name.

    Raises:
        RecordReject: when the name is empty.
    """
    if spec.name is not None and not spec.name.fields:  # a fixed name
        name = _fixed_name(spec.name.text)
    else:
        if spec.name is not None:
            name = render_template(spec.name.text, spec.name.fields, record)
        else:
            value = record.get(spec.name_field or "")
            name = "" if value is None else scalar_text(value)
        name = _PROHIBITED_KEY_CHARS.sub(" ", name).strip()
    if not name:
        msg = f"event name from {spec.name_field or spec.label()!r} is empty"
        raise RecordReject(msg, code="missing_event_name", field_name=spec.name_field)
    return name


def _cap_event_properties(
    data: dict[str, Any], name: str, opts: PayloadOptions, warns: list[str]
) -> dict[str, Any]:
    """Keep an event within the per-event property cap (one slot for the key)."""
    room = max(opts.max_event_properties - 1, 0)
    if len(data) <= room:
        return data
    if opts.oversize == "reject":
        msg = f"event {name!r} has {len(data) + 1} properties, over the cap of "
        msg += f"{opts.max_event_properties} (list them with properties.include)"
        raise RecordReject(msg, code="too_many_properties")
    warns.append(
        f"event {name!r} cut to {opts.max_event_properties} properties "
        "(list the ones you need with properties.include)"
    )
    return dict(list(data.items())[:room])


# ---------------------------------------------------------------------- records


def build_deleted_event(  # noqa: PLR0913 - keyword-only inputs
    record: Mapping[str, Any],
    *,
    stream: str,
    key: str,
    identity: str,
    id_key: str,
    opts: PayloadOptions,
    now: int,
) -> UploadItem:
    """The `<stream> Deleted` event for an `IsDeleted` row.

    Args:
        record: the deleted record.
        stream: its stream.
        key: its record key.
        identity: the person.
        id_key: `identity` or `objectId`.
        opts: payload options.
        now: current epoch seconds (used only when the row has no time at all).

    Returns:
        The upload item.
    """
    name = f"{sanitise_key(stream)} Deleted"
    try:
        ts = event_time(record, "SystemModstamp", now)
    except RecordReject:
        ts = event_time(record, "auto", now)
    ekey = event_key(stream, key, name, ts)
    payload = {
        id_key: identity,
        "type": "event",
        "evtName": name,
        "ts": ts,
        "evtData": {"Record Id": key, opts.event_key_property: ekey},
    }
    return UploadItem("event", payload, ekey, name, ts)
