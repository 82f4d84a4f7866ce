"""Compare the export presets with salesforce-org/ field by field.

Every field they write exists there with a fitting type, and every upsert key is
an External ID.

Each problem names the preset file and line and the metadata file, e.g.
`transforms/clevertap_to_salesforce.yml line 23: Event_Timestamp__c is written as
datetime but salesforce-org/.../Event_Timestamp__c.field-meta.xml says Date`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.salesforce import org_metadata
from target_salesforce.mapping import FieldSpec, StreamMapping, load_mappings

if TYPE_CHECKING:
    from pathlib import Path

NUMBERS = frozenset({"Number", "Currency", "Percent"})
TEXTS = frozenset({"Text", "TextArea", "LongTextArea", "Email", "Phone", "Url"})
# A preset's `type:` hint -> the metadata types that take such a value.
HINTS = {
    "datetime": frozenset({"DateTime"}),
    "date": frozenset({"Date"}),
    "number": NUMBERS,
    "integer": NUMBERS,
    "boolean": frozenset({"Checkbox"}),
    "string": TEXTS | {"Picklist"},
}
# Plain tap-clevertap sources the presets map -> the metadata types that fit them
# (tap-clevertap/README.md lists the stream properties).
SOURCES = {
    "event_key": frozenset({"Text"}),
    "event_name": frozenset({"Text"}),
    "identity": frozenset({"Text"}),
    "email": frozenset({"Email", "Text"}),
    "event_props_json": frozenset({"LongTextArea", "TextArea"}),
    "prop_comment": TEXTS,
    "message_id": frozenset({"Text"}),
    "sent": NUMBERS,
    "delivered": NUMBERS,
    "viewed": NUMBERS,
    "clicked": NUMBERS,
    "converted": NUMBERS,
}
LOOKUPS = {"profile_sf_contact_id": "Contact", "profile_sf_lead_id": "Lead"}
UPSERT_KEY_TYPES = frozenset({"Text", "Number", "Email"})


def _expected(spec: FieldSpec) -> tuple[frozenset[str] | None, str]:  # noqa: PLR0911 - one return per kind of field spec
    """The metadata types that fit a field spec, and how the preset writes it."""
    if spec.type:
        return HINTS.get(spec.type), spec.type
    if spec.now:
        return frozenset({"DateTime"}), "now"
    if spec.expr is not None:
        return NUMBERS, "expr"
    if spec.value_map is not None:
        return frozenset({"Picklist", "Text"}), "map"
    if spec.template is not None:
        return TEXTS, "template"
    if spec.source in LOOKUPS:
        return frozenset({"Lookup"}), spec.source
    return SOURCES.get(spec.source or ""), str(spec.source)


def _rel(path: Path, repo: Path) -> str:
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


def _where(preset: Path, mapping: StreamMapping, target: str, repo: Path) -> str:
    line = mapping.field_lines.get(target, mapping.field_lines.get("", 0))
    return f"{_rel(preset, repo)} line {line}"


def _field_problems(
    preset: Path,
    mapping: StreamMapping,
    defined: dict[str, org_metadata.FieldMeta],
    repo: Path,
) -> list[str]:
    problems: list[str] = []
    folder = f"salesforce-org/.../objects/{mapping.sobject}/fields/"
    for spec in mapping.fields:
        if not spec.target.endswith("__c"):
            continue  # standard fields are not deployed from salesforce-org/
        where = _where(preset, mapping, spec.target, repo)
        meta = defined.get(spec.target)
        if meta is None:
            problems.append(
                f"{where}: {mapping.sobject}.{spec.target} is written but "
                f"{folder}{spec.target}.field-meta.xml does not exist"
            )
            continue
        types, how = _expected(spec)
        shown = _rel(meta.path, repo)
        if types is not None and meta.type not in types:
            problems.append(
                f"{where}: {spec.target} is written as {how} but {shown} says "
                f"{meta.type} (expected one of {sorted(types)})"
            )
        if spec.source in LOOKUPS and meta.reference_to != LOOKUPS[spec.source]:
            problems.append(
                f"{where}: {spec.target} takes a {LOOKUPS[spec.source]} Id but "
                f"{shown} looks up {meta.reference_to}"
            )
    if mapping.action == "upsert" and mapping.external_id_field:
        key = mapping.external_id_field
        where = _where(preset, mapping, key, repo)
        meta = defined.get(key)
        if meta is not None and (
            not meta.external_id or meta.type not in UPSERT_KEY_TYPES
        ):
            problems.append(
                f"{where}: upsert key {mapping.sobject}.{key} is not an External ID "
                f"text/number/email field in {_rel(meta.path, repo)}"
            )
    return problems


def problems(preset: Path, source_dir: Path, repo: Path) -> list[str]:
    """Every mismatch between one preset and the metadata under `source_dir`."""
    fields = org_metadata.custom_fields(source_dir)
    out: list[str] = []
    for mapping in load_mappings(None, str(preset)).values():
        if mapping.skip or mapping.mode != "sobject" or not mapping.sobject:
            continue
        defined = {m.name: m for m in fields.get(mapping.sobject, ())}
        out += _field_problems(preset, mapping, defined, repo)
    return out
