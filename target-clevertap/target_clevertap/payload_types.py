"""The types payload building passes around: options, outcomes, upload items."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from target_clevertap.mapping import StreamMapping

    Resolver = Callable[[str, str], list[str]]


class RecordReject(Exception):  # noqa: N818 - a record outcome, not an error
    """A record that cannot become a valid upload record."""

    def __init__(
        self, message: str, *, code: str, field_name: str | None = None
    ) -> None:
        """Create it.

        Args:
            message: a human-readable reason (no record values).
            code: a short machine-readable reason.
            field_name: the field at fault, if any.
        """
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field_name


class UnresolvedReference(Exception):  # noqa: N818 - a record outcome
    """A reference (WhoId, ContactId, ...) whose person is not known yet."""

    def __init__(
        self, obj: str, ref_field: str, value: str, *, seen: bool = False
    ) -> None:
        """Create it.

        Args:
            obj: the referenced object.
            ref_field: the reference field.
            value: the referenced Id.
            seen: the referenced record was seen and names nobody (as opposed
                to never seen).
        """
        super().__init__(f"{ref_field} {value} ({obj}) is not a known person")
        self.obj = obj
        self.field = ref_field
        self.value = value
        self.seen = seen


@dataclass(frozen=True)
class PayloadOptions:
    """Settings that shape payloads."""

    null_values: Literal["skip", "send"] = "skip"
    oversize: Literal["truncate", "reject"] = "truncate"
    default_phone_country: str | None = None
    event_key_property: str = "ct_event_key"
    max_event_properties: int = 100
    #: the account time zone (`timezone` setting): date-only values are sent as
    #: midnight of their day in it
    zone: dt.tzinfo = dt.UTC
    #: what `config` names in `when:` conditions (`stream_map_config`, as for stream
    #: maps)
    map_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Out:
    """Options plus the warnings collected while building one record."""

    opts: PayloadOptions
    warns: list[str]
    #: remembered values of the record's tracked fields (change tracking)
    previous: Mapping[str, Any] | None = None
    #: keys of the profile's fields left out as invalid (they hold `DROPPED`)
    dropped: list[str] = field(default_factory=list)


#: the value of a profile field left out as invalid (Phone), taken out before sending
DROPPED: Final = object()


@dataclass(frozen=True)
class SchemaInfo:
    """What the stream schema says about fields."""

    fields: frozenset[str] = frozenset()
    date_fields: frozenset[str] = frozenset()
    datetime_fields: frozenset[str] = frozenset()

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> SchemaInfo:
        """Read formats from a JSON schema.

        Args:
            schema: the stream's JSON schema.

        Returns:
            The info.
        """
        props: Mapping[str, Any] = schema.get("properties") or {}
        dates: set[str] = set()
        datetimes: set[str] = set()
        for name, prop in props.items():
            formats = _formats(prop)
            if "date" in formats:
                dates.add(name)
            elif "date-time" in formats:
                datetimes.add(name)
        return cls(frozenset(props), frozenset(dates), frozenset(datetimes))


def _formats(prop: object) -> set[str]:
    if not isinstance(prop, dict):
        return set()
    found = {prop["format"]} if isinstance(prop.get("format"), str) else set()
    for key in ("anyOf", "oneOf"):
        for sub in prop.get(key) or []:
            found |= _formats(sub)
    return found


@dataclass(slots=True)
class UploadItem:
    """One CleverTap upload record plus what the target needs to track it."""

    kind: Literal["profile", "event"]
    payload: dict[str, Any]
    event_key: str | None = None
    event_name: str | None = None
    ts: int | None = None


@dataclass(slots=True)
class BuildResult:
    """What one input record becomes."""

    items: list[UploadItem] = field(default_factory=list)
    #: profile fields left out as invalid (Phone): counted per stream
    dropped_fields: list[str] = field(default_factory=list)
    #: events whose time was in the future, sent as the time of sending
    future_times: int = 0
    skipped: str | None = None
    warnings: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RecordContext:
    """What building one record's uploads needs besides the record itself."""

    stream: str
    #: the record key (key properties, else a content hash)
    key: str
    mapping: StreamMapping
    schema: SchemaInfo
    opts: PayloadOptions
    #: the identity-map lookup for references
    resolve: Resolver
    #: the current epoch seconds (for `time: now`)
    now: int
    #: the values remembered for the record's tracked fields (None on its first
    #: sighting): read by `changed()`, `previous()` and `properties.previous`
    previous: Mapping[str, Any] | None = None
    #: the record's own identities by spec (see resolve_identities)
    memo: dict[int, list[str]] | None = None
    #: references found, by spec (see resolve_identities)
    refs: dict[int, list[str]] | None = None
