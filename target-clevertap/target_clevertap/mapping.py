"""The mapping model: which CleverTap profiles and events each stream becomes.

The specs here are what the run uses, record by record; `mapping_load.py` reads
the mapping document, validates it and builds them (`load_mappings()`).
The format is documented in the package README.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from target_clevertap.values import sanitise_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from target_clevertap.exprlang import Expression

#: the record fields whose time orders versions of a record (change tracking)
DEFAULT_VERSION_FIELDS = ("SystemModstamp", "LastModifiedDate")
#: `time:` of an event that uses changed()/previous() and names no time
MODIFIED_TIME = "modified"
TEMPLATE_FIELD = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class Template:
    """A string with `{Field}` placeholders."""

    text: str
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse a template.

        Args:
            text: e.g. `SF_Contact_{Id}`.

        Returns:
            The template.
        """
        return cls(text, tuple(TEMPLATE_FIELD.findall(text)))


@dataclass(frozen=True)
class IdentitySpec:
    """Who a profile or event belongs to."""

    kind: Literal["field", "template", "ref"]
    value: str
    key: Literal["identity", "objectId"] = "identity"
    template: Template | None = None
    ref_object: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        """Record fields the identity reads."""
        if self.template is not None:
            return self.template.fields
        return (self.value,)


@dataclass(frozen=True)
class PropertySpec:
    """Which record fields become CleverTap properties, and how."""

    include: tuple[str, ...] | None = None
    exclude: frozenset[str] = frozenset()
    rename: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)
    types: Mapping[str, str] = field(default_factory=dict)
    invert: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: opt-out field -> keys set to false when it is true (consent: nothing else)
    opt_out: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    flatten_addresses: bool = True
    derive_name: bool = True
    #: tracked field -> key carrying its previous value (change tracking)
    previous: Mapping[str, str] = field(default_factory=dict)
    #: raw field name -> output key, filled as records are mapped (speed)
    key_cache: dict[str, str] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )
    #: (id of the stream's SchemaInfo, profile) -> (that SchemaInfo, its field
    #: plan compiled: `field_plans.compile_plan`)
    plans: dict[tuple[int, bool], tuple[Any, Any]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @functools.cached_property
    def constant_items(self) -> tuple[tuple[str, Any], ...]:
        """`constants` with their keys as sent (sanitised once).

        Returns:
            (key, value) pairs.
        """
        return tuple((sanitise_key(str(k)), v) for k, v in self.constants.items())


@dataclass(frozen=True)
class ProfileSpec:
    """A profile upsert built from each record."""

    identity: IdentitySpec
    properties: PropertySpec
    when: Expression | None = None
    time: str | None = None


@dataclass(frozen=True)
class EventSpec:
    """An event built from each record (when its condition holds)."""

    identity: IdentitySpec
    properties: PropertySpec
    name: Template | None = None
    name_field: str | None = None
    when: Expression | None = None
    time: str = "auto"

    def label(self) -> str:
        """A short label for logs."""
        if self.name is not None:
            return self.name.text
        return f"<{self.name_field}>"


@dataclass(frozen=True)
class StreamMapping:
    """Everything one stream becomes."""

    stream: str
    profile: ProfileSpec | None = None
    events: tuple[EventSpec, ...] = ()
    skip: bool = False
    conversion_field: str | None = "ConvertedContactId"
    origin: str = "default"
    #: orders versions of a record for change tracking (None: SystemModstamp,
    #: else LastModifiedDate)
    version_field: str | None = None
    #: change tracking per value of this field instead of per record key (e.g.
    #: OpportunityHistory rows tracked per OpportunityId)
    track_key: str | None = None

    @functools.cached_property
    def tracked_fields(self) -> frozenset[str]:
        """Fields whose last seen value is remembered per record (change tracking).

        Every field named in `changed()` / `previous()` of a condition or in a
        `properties.previous` of this stream's profile or events.

        Returns:
            The field names (empty when the mapping tracks nothing).
        """
        found: set[str] = set()
        specs: list[ProfileSpec | EventSpec] = list(self.events)
        if self.profile is not None:
            specs.append(self.profile)
        for spec in specs:
            if spec.when is not None:
                found |= spec.when.tracked
            found |= set(spec.properties.previous)
        return frozenset(found)

    @functools.cached_property
    def _identity_specs(self) -> tuple[IdentitySpec, ...]:
        """The distinct identity specs of the profile and events, in order."""
        specs: list[IdentitySpec] = []
        if self.profile is not None:
            specs.append(self.profile.identity)
        for event in self.events:
            if event.identity not in specs:
                specs.append(event.identity)
        return tuple(specs)

    @functools.cached_property
    def person_specs(self) -> tuple[IdentitySpec, ...]:
        """The distinct `identity` specs of the profile and events, in order.

        Who a record is about (`identities.record_persons`) is their union.

        Returns:
            The specs (objectId ones left out).
        """
        return tuple(spec for spec in self._identity_specs if spec.key == "identity")

    @functools.cached_property
    def ref_specs(self) -> tuple[IdentitySpec, ...]:
        """The distinct `{ref: ...}` identities of the profile and events.

        Returns:
            The specs (the identity-map reads a record's window needs).
        """
        return tuple(spec for spec in self._identity_specs if spec.kind == "ref")

    def version_fields(self) -> tuple[str, ...]:
        """The fields tried, in order, for a record's version time.

        Returns:
            `version_field`, or the Salesforce defaults.
        """
        return (self.version_field,) if self.version_field else DEFAULT_VERSION_FIELDS

    def referenced_fields(self) -> dict[str, list[str]]:
        """Every record field this mapping reads, with where it is used.

        Lets preset tests check field names against a real schema.

        Returns:
            field -> places (e.g. `profile.identity`, `events[1].when`).
        """
        found: dict[str, list[str]] = {}
        if self.profile is not None:
            p = self.profile
            _collect(found, "profile", p)
        for i, event in enumerate(self.events):
            where = f"events[{i}]"
            _collect(found, where, event)
            if event.name is not None:
                _add(found, event.name.fields, f"{where}.name")
            if event.name_field:
                _add(found, [event.name_field], f"{where}.name_field")
        if self.tracked_fields:
            if self.version_field:
                _add(found, [self.version_field], "version_field")
            if self.track_key:
                _add(found, [self.track_key], "track_key")
        return found


def _add(found: dict[str, list[str]], names: Iterable[str], where: str) -> None:
    for name in names:
        found.setdefault(name, []).append(where)


def _collect(
    found: dict[str, list[str]], where: str, spec: ProfileSpec | EventSpec
) -> None:
    props, when, time = spec.properties, spec.when, spec.time
    _add(found, spec.identity.fields, f"{where}.identity")
    _add(found, props.include or (), f"{where}.properties.include")
    _add(found, props.exclude, f"{where}.properties.exclude")
    _add(found, props.rename, f"{where}.properties.rename")
    _add(found, props.types, f"{where}.properties.types")
    _add(found, props.invert, f"{where}.properties.invert")
    _add(found, props.opt_out, f"{where}.properties.opt_out")
    _add(found, props.previous, f"{where}.properties.previous")
    if when is not None:
        _add(found, when.fields, f"{where}.when")
    if time and time not in {"auto", "now", MODIFIED_TIME}:
        _add(found, [time], f"{where}.time")


def referenced_objects(mappings: Iterable[StreamMapping]) -> set[str]:
    """The objects (streams) that `{ref: ...}` identities of mappings resolve through.

    Args:
        mappings: the stream mappings.

    Returns:
        Object names (`Who` counts as Contact and Lead, `Account` as Contact).
    """
    found: set[str] = set()
    for mapping in mappings:
        specs = [e.identity for e in mapping.events]
        if mapping.profile is not None:
            specs.append(mapping.profile.identity)
        for spec in specs:
            if spec.kind == "ref" and spec.ref_object:
                found |= {
                    "Who": {"Contact", "Lead"},
                    "Account": {"Contact"},
                }.get(spec.ref_object, {spec.ref_object})
    return found


def default_mapping(stream: str, schema_fields: Iterable[str]) -> StreamMapping | None:
    """The mapping used for a stream that has none: a profile keyed on Email.

    Args:
        stream: the stream name.
        schema_fields: the stream's schema property names.

    Returns:
        The default mapping, or None when the stream has no Email field.
    """
    if "Email" not in set(schema_fields):
        return None
    return StreamMapping(
        stream,
        profile=ProfileSpec(IdentitySpec("field", "Email"), PropertySpec()),
        origin="default",
    )
