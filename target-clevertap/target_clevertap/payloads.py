"""Pure functions from Singer records to CleverTap upload records (no I/O).

The record-level entry point (`build_uploads`); the pieces live by concern in
`values` (value typing), `properties` (profileData/evtData), `identities`
(who a record is about) and `events` (names, times, keys). Their public names
are re-exported here.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from target_clevertap.events import (
    _cap_event_properties,
    build_deleted_event,
    event_key,
    event_name,
    event_time,
    record_key,
)
from target_clevertap.exprlang import ExpressionError
from target_clevertap.identities import (
    identity_text,
    record_persons,
    render_template,
    resolve_identities,
)
from target_clevertap.payload_types import (
    BuildResult,
    PayloadOptions,
    RecordContext,
    RecordReject,
    SchemaInfo,
    UnresolvedReference,
    UploadItem,
    _Out,
)
from target_clevertap.properties import build_properties
from target_clevertap.values import (
    _ONE_PERSON_REFS,
    account_zone,
    boolean,
    ct_date,
    epoch_seconds,
    multi_values,
    normalise_email,
    normalise_phone,
    number,
    parse_datetime,
    sanitise_key,
    scalar_text,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from target_clevertap.exprlang import Expression
    from target_clevertap.mapping import EventSpec, IdentitySpec

__all__ = [
    "BuildResult",
    "PayloadOptions",
    "RecordContext",
    "RecordReject",
    "SchemaInfo",
    "UnresolvedReference",
    "UploadItem",
    "_Out",
    "account_zone",
    "boolean",
    "build_deleted_event",
    "build_properties",
    "build_uploads",
    "ct_date",
    "epoch_seconds",
    "event_key",
    "event_name",
    "event_time",
    "identity_text",
    "multi_values",
    "normalise_email",
    "normalise_phone",
    "number",
    "parse_datetime",
    "record_key",
    "record_persons",
    "render_template",
    "resolve_identities",
    "sanitise_key",
    "scalar_text",
]


def _holds(
    when: Expression,
    record: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    opts: PayloadOptions,
) -> bool:
    """Whether a `when:` condition lets the record through (callers skip no condition).

    Raises:
        RecordReject: a condition that cannot be evaluated on this record (the
            message names the condition, not the record's values).
    """
    try:
        return when(record, previous, opts.map_config)
    except ExpressionError:
        msg = f"condition {when.text!r} cannot be evaluated on this record"
        raise RecordReject(msg, code="bad_condition") from None


def build_uploads(record: Mapping[str, Any], ctx: RecordContext) -> BuildResult:
    """Every upload record one input record becomes.

    Args:
        record: the input record.
        ctx: its stream, key, mapping and schema, the options, the identity
            lookup, the time and its remembered values (see RecordContext).

    Returns:
        The upload items (profile first), or a skip reason.

    Raises:
        RecordReject: when the record cannot be mapped.
    """
    mapping, opts, previous = ctx.mapping, ctx.opts, ctx.previous
    result = BuildResult()
    out = _Out(opts, result.warnings, previous, result.dropped_fields)
    profile = mapping.profile
    if profile is not None and (
        profile.when is None or _holds(profile.when, record, previous, opts)
    ):
        identities = _identities(record, profile.identity, ctx, "")
        data = build_properties(
            record, profile.properties, ctx.schema, out, profile=True
        )
        base: dict[str, Any] = {"type": "profile"}
        if profile.time:
            base["ts"] = event_time(
                record,
                profile.time,
                ctx.now,
                date_fields=ctx.schema.date_fields,
                zone=opts.zone,
            )
        id_key = profile.identity.key
        for ident in identities:
            payload = {id_key: ident, **base, "profileData": data}
            result.items.append(UploadItem("profile", payload))
        result.identities = identities
    for spec in mapping.events:
        if spec.when is None or _holds(spec.when, record, previous, opts):
            _add_events(record, spec, ctx, out, result)
    if not result.items:
        result.skipped = "condition_false"
    return result


def _identities(
    record: Mapping[str, Any], spec: IdentitySpec, ctx: RecordContext, what: str
) -> list[str]:
    """The identities `spec` names in the record.

    Raises:
        RecordReject: `missing_identity` when it names none (`what` says for what).
    """
    identities = resolve_identities(record, spec, ctx.resolve, ctx.memo, ctx.refs)
    if not identities:
        field_name = spec.fields[0]
        msg = f"no identity{what}: {field_name} is empty"
        raise RecordReject(msg, code="missing_identity", field_name=field_name)
    return identities


def _add_events(
    record: Mapping[str, Any],
    spec: EventSpec,
    ctx: RecordContext,
    out: _Out,
    result: BuildResult,
) -> None:
    """The events of one event spec (one per person it names).

    Raises:
        RecordReject: when the record names nobody, or a value is invalid.
    """
    identities = _identities(record, spec.identity, ctx, f" for event {spec.label()!r}")
    name = event_name(record, spec)
    ts = event_time(
        record,
        spec.time,
        ctx.now,
        date_fields=ctx.schema.date_fields,
        zone=out.opts.zone,
    )
    # the key keeps the UTC midnight a date-only time had before it followed
    # the account zone: events keyed before stay recognised (no duplicate)
    key_ts = ts
    if out.opts.zone is not dt.UTC:
        key_ts = event_time(
            record, spec.time, ctx.now, date_fields=ctx.schema.date_fields
        )
    if ts > ctx.now:
        # a time not reached yet (a CloseDate ahead): sent as the time of
        # sending, which Get Events can be asked about if the reply is lost;
        # the key keeps the record's time, so a replay is still recognised
        ts = ctx.now
        result.future_times += 1
        result.warnings.append(
            "event times in the future (a date not reached yet) are sent as the "
            "time of sending (counted in event_times_in_future)"
        )
    data = build_properties(record, spec.properties, ctx.schema, out, profile=False)
    data = _cap_event_properties(data, name, out.opts, result.warnings)
    # a reference that may name several people (an Account's contacts, an
    # Opportunity shared by them) keys each person's event apart; one-person
    # references (Contact, Lead, Who) do not, so a Lead conversion that moves
    # the person to another identity never makes an event look new
    fan_out = (
        spec.identity.kind == "ref" and spec.identity.ref_object not in _ONE_PERSON_REFS
    )
    id_key = spec.identity.key
    key_property = out.opts.event_key_property
    single = len(identities) == 1
    for ident in identities:
        ekey = event_key(ctx.stream, ctx.key, name, key_ts, ident if fan_out else "")
        if single:  # the data is this event's alone
            evt_data = data
            evt_data[key_property] = ekey
        else:
            evt_data = {**data, key_property: ekey}
        payload = {
            id_key: ident,
            "type": "event",
            "evtName": name,
            "ts": ts,
            "evtData": evt_data,
        }
        result.items.append(UploadItem("event", payload, ekey, name, ts))
