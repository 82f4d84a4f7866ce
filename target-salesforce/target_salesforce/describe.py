"""Pure sObject describe handling: field facts and the mapping-vs-describe checks.

Nothing here does I/O. The sink describes the object through the client and
checks its stream's mapping against the result before any write.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final

from target_salesforce.mapping import MappingError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from target_salesforce.mapping import StreamMapping

_STRING_TYPES: Final = frozenset(
    {
        "string",
        "textarea",
        "email",
        "phone",
        "url",
        "id",
        "reference",
        "encryptedstring",
        "combobox",
    }
)
_SF_TO_KIND: Final = {
    "date": "date",
    "datetime": "datetime",
    "boolean": "boolean",
    "double": "number",
    "currency": "number",
    "percent": "number",
    "int": "integer",
    "long": "integer",
    "picklist": "picklist",
    "multipicklist": "multipicklist",
}


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """What the target needs from one field of an sObject describe."""

    name: str
    type: str
    createable: bool
    updateable: bool
    external_id: bool
    length: int = 0
    restricted_values: frozenset[str] | None = None
    id_lookup: bool = False
    relationship_name: str | None = None
    reference_to: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The conversion kind derived from the Salesforce type."""
        if self.type in _SF_TO_KIND:
            return _SF_TO_KIND[self.type]
        return "string" if self.type in _STRING_TYPES else "any"


def parse_describe(describe: Mapping[str, Any]) -> dict[str, FieldInfo]:
    """Turn an sObject describe into FieldInfo by field name."""
    out: dict[str, FieldInfo] = {}
    for raw in describe.get("fields", []):
        restricted = None
        if raw.get("restrictedPicklist"):
            restricted = frozenset(
                str(p.get("value"))
                for p in raw.get("picklistValues") or []
                if p.get("active", True)
            )
        out[raw["name"]] = FieldInfo(
            name=raw["name"],
            type=str(raw.get("type", "string")),
            createable=bool(raw.get("createable")),
            updateable=bool(raw.get("updateable")),
            external_id=bool(raw.get("externalId")),
            length=int(raw.get("length") or 0),
            restricted_values=restricted,
            id_lookup=bool(raw.get("idLookup")),
            relationship_name=raw.get("relationshipName"),
            reference_to=tuple(raw.get("referenceTo") or ()),
        )
    return out


def split_relationship(name: str) -> tuple[str, str] | None:
    """`Contact__r.CleverTap_Id__c` -> (`Contact__r`, `CleverTap_Id__c`), else None.

    A polymorphic lookup keeps its type: `Contact:Who.Ext__c` -> (`Contact:Who`,
    `Ext__c`); `split_type` takes it apart.
    """
    relationship, dot, field = name.partition(".")
    return (relationship, field) if dot and relationship and field else None


def split_type(relationship: str) -> tuple[str | None, str]:
    """`Contact:Who` -> (`Contact`, `Who`); `Account` -> (None, `Account`).

    `ObjectType:RelationshipName.IndexedFieldName` is Salesforce's syntax for a
    polymorphic parent in a Bulk CSV header ("Relationship Fields in a Header
    Row (2.0)", Bulk API 2.0 developer guide); the target uses it in mappings too.
    """
    typed, colon, name = relationship.partition(":")
    return (typed, name) if colon and typed and name else (None, relationship)


def _check_relationship(
    mapping: StreamMapping,
    name: str,
    fields: Mapping[str, FieldInfo],
    related: Callable[[str], Mapping[str, FieldInfo]] | None,
) -> None:
    """A foreign-key upsert by the parent's External ID (`Rel__r.Ext__c`)."""
    typed_relationship, ext = split_relationship(name) or ("", "")
    parent_type, relationship = split_type(typed_relationship)
    where = f"stream {mapping.stream}: {name!r} on {mapping.sobject}"
    ref = next(
        (
            f
            for f in fields.values()
            if f.relationship_name
            and f.relationship_name.lower() == relationship.lower()
        ),
        None,
    )
    if ref is None:
        msg = f"{where}: no relationship named {relationship!r}"
        raise MappingError(msg, ("fields", name))
    if not _needs_write(ref, mapping.action):
        msg = f"{where}: {ref.name!r} is not writable for {mapping.action}"
        raise MappingError(msg, ("fields", name))
    polymorphic = len(ref.reference_to) > 1
    if polymorphic and parent_type is None:
        types = " or ".join(ref.reference_to)
        msg = (
            f"{where}: {ref.name} is polymorphic ({types}); name the parent's type "
            f"as Type:{relationship}.{ext}, e.g. {ref.reference_to[0]}:"
            f"{relationship}.{ext}"
        )
        raise MappingError(msg, ("fields", name))
    if parent_type is not None and parent_type not in ref.reference_to:
        msg = (
            f"{where}: {parent_type!r} is not a type {ref.name} can point to "
            f"({', '.join(ref.reference_to)})"
        )
        raise MappingError(msg, ("fields", name))
    if parent_type is not None and not polymorphic:
        msg = (
            f"{where}: {ref.name} is not polymorphic; write {relationship}.{ext} "
            "without a type"
        )
        raise MappingError(msg, ("fields", name))
    if related is None:
        return
    parent = parent_type or ref.reference_to[0]
    info = related(parent).get(ext)
    if info is None or not (info.external_id or info.id_lookup):
        msg = (
            f"{where}: {ext!r} is not an External ID field of {parent} (nor an "
            "idLookup field)"
        )
        raise MappingError(msg, ("fields", name))


def _needs_write(info: FieldInfo, action: str) -> bool:
    if action == "insert":
        return info.createable
    if action == "update":
        return info.updateable
    return info.createable and info.updateable


def check_mapping_against_describe(
    mapping: StreamMapping,
    fields: Mapping[str, FieldInfo],
    schema_properties: Iterable[str],
    related: Callable[[str], Mapping[str, FieldInfo]] | None = None,
) -> None:
    """Fail before any write when the mapping does not fit the object.

    Args:
        mapping: the stream's mapping (sobject mode).
        fields: the object's describe, by field name.
        schema_properties: the stream's schema properties (for pass_through).
        related: describes a parent object, for `Rel__r.Ext__c` targets.

    Raises:
        MappingError: naming the field and object for an unknown or non-writable
            field, or an upsert key that is not an External ID; for a mapping
            from `mappings_file`, the message ends with the file and line.
    """
    try:
        _check_describe(mapping, fields, schema_properties, related)
    except MappingError as exc:
        keys = exc.keys
        target = keys[1] if len(keys) > 1 and keys[0] == "fields" else None
        if keys[:1] == ("external_id_field",):
            target = str(mapping.external_id_field)
        located = mapping.located(target)
        if not located:
            raise
        msg = f"{exc}{located}"
        raise MappingError(msg, keys) from None


def _check_describe(
    mapping: StreamMapping,
    fields: Mapping[str, FieldInfo],
    schema_properties: Iterable[str],
    related: Callable[[str], Mapping[str, FieldInfo]] | None = None,
) -> None:
    """`check_mapping_against_describe` without the mappings-file location."""
    if mapping.action == "delete":
        if "Id" not in {f.target for f in mapping.fields} and not mapping.pass_through:
            msg = (
                f"stream {mapping.stream}: delete on {mapping.sobject} needs an "
                "`Id` field"
            )
            raise MappingError(msg)
        return
    targets = _written_fields(mapping, schema_properties)
    for name in targets:
        if name == "Id" and mapping.action == "update":
            continue
        if split_relationship(name):
            _check_relationship(mapping, name, fields, related)
        else:
            _check_field(mapping, name, fields)
    if mapping.action == "upsert":
        _check_upsert_key(mapping, fields, targets)


def _written_fields(
    mapping: StreamMapping, schema_properties: Iterable[str]
) -> list[str]:
    """The fields a record of this mapping can write."""
    targets = [f.target for f in mapping.fields]
    if mapping.pass_through:
        used = mapping.used_roots
        targets += [
            p for p in schema_properties if p not in used and not p.startswith("_sdc_")
        ]
    if mapping.pack_unmapped_into:
        targets.append(mapping.pack_unmapped_into)
    return targets


def _check_field(
    mapping: StreamMapping, name: str, fields: Mapping[str, FieldInfo]
) -> None:
    sobject = mapping.sobject
    info = fields.get(name)
    if info is None:
        msg = (
            f"stream {mapping.stream}: field {name!r} does not exist on "
            f"{sobject} (or is not visible to this user)"
        )
        raise MappingError(msg, ("fields", name))
    if not _needs_write(info, mapping.action):
        msg = (
            f"stream {mapping.stream}: field {name!r} on {sobject} is not "
            f"writable for {mapping.action}"
        )
        raise MappingError(msg, ("fields", name))


def _check_upsert_key(
    mapping: StreamMapping, fields: Mapping[str, FieldInfo], targets: list[str]
) -> None:
    sobject = mapping.sobject
    ext = str(mapping.external_id_field)
    info = fields.get(ext)
    if info is None:
        msg = (
            f"stream {mapping.stream}: external_id_field {ext!r} does not exist "
            f"on {sobject}"
        )
        raise MappingError(msg, ("external_id_field",))
    if not info.external_id and ext != "Id":
        msg = (
            f"stream {mapping.stream}: external_id_field {ext!r} on {sobject} "
            "is not flagged External ID"
        )
        raise MappingError(msg, ("external_id_field",))
    if ext not in targets:
        msg = (
            f"stream {mapping.stream}: the upsert key {ext!r} is not produced by "
            "the field mapping"
        )
        raise MappingError(msg, ("external_id_field",))
