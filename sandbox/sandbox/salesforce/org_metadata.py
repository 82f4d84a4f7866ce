"""Read the SFDX project in `salesforce-org/`: the custom metadata an admin deploys.

The emulated org (`schema.py`) builds its custom objects, custom fields and
validation rules from these files, so the emulator, the presets and the deployed
org share one definition. Only what the emulator needs is read: object labels and
name field; field type, label, length, precision, scale, External ID, unique,
required, lookup target, picklist values and checkbox default; validation rules of
the form `AND(NOT(ISBLANK(F)), OR(F < low, F > high))`.

Format: Metadata API source format (`objects/<Object>/fields/<Field>.field-meta.xml`,
`objects/<Object>/<Object>.object-meta.xml`,
`objects/<Object>/validationRules/<Rule>.validationRule-meta.xml`), see
https://developer.salesforce.com/docs/platform/api-metadata/references/meta-types/metadata-customfield.html
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from xml.etree import ElementTree as ET

NS = "http://soap.sforce.com/2006/04/metadata"
_Q = {"m": NS}
# sandbox/sandbox/salesforce/org_metadata.py -> the repository root.
REPO = Path(__file__).resolve().parents[3]
SOURCE_DIR = REPO / "salesforce-org" / "force-app" / "main" / "default"
_RANGE_RULE = re.compile(
    r"AND\(\s*NOT\(\s*ISBLANK\(\s*(\w+)\s*\)\s*\)\s*,\s*OR\(\s*\1\s*<\s*(-?[\d.]+)\s*,"
    r"\s*\1\s*>\s*(-?[\d.]+)\s*\)\s*\)"
)


class MetadataError(ValueError):
    """A metadata file is missing or does not have the shape this reader needs."""


@dataclasses.dataclass(frozen=True)
class FieldMeta:
    """One CustomField of `salesforce-org/`."""

    sobject: str
    name: str
    type: str
    label: str
    path: Path
    length: int = 0
    precision: int = 0
    scale: int = 0
    external_id: bool = False
    unique: bool = False
    required: bool = False
    reference_to: str | None = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default_value: str | None = None


@dataclasses.dataclass(frozen=True)
class ObjectMeta:
    """One CustomObject of `salesforce-org/` (custom objects only)."""

    name: str
    label: str
    plural_label: str
    name_field_type: str
    name_field_label: str
    path: Path


@dataclasses.dataclass(frozen=True)
class RangeRule:
    """A validation rule that keeps a number field within [low, high]."""

    sobject: str
    name: str
    field: str
    low: float
    high: float
    message: str
    path: Path


def _text(node: ET.Element, tag: str, path: Path, *, required: bool = False) -> str:
    value = node.findtext(f"m:{tag}", namespaces=_Q)
    if value is None and required:
        msg = f"{path}: <{tag}> is missing"
        raise MetadataError(msg)
    return (value or "").strip()


def _flag(node: ET.Element, tag: str, path: Path) -> bool:
    return _text(node, tag, path) == "true"


def _int(node: ET.Element, tag: str, path: Path) -> int:
    value = _text(node, tag, path)
    return int(value) if value else 0


def _root(path: Path, kind: str) -> ET.Element:
    root = ET.parse(path).getroot()  # noqa: S314 - the repository's own files
    if root.tag != f"{{{NS}}}{kind}":
        msg = f"{path}: root element is {root.tag}, expected {kind}"
        raise MetadataError(msg)
    return root


def read_field(path: Path) -> FieldMeta:
    """Parse one `.field-meta.xml` file."""
    root = _root(path, "CustomField")
    name = _text(root, "fullName", path, required=True)
    values = tuple(
        (v.findtext("m:fullName", namespaces=_Q) or "").strip()
        for v in root.findall("m:valueSet/m:valueSetDefinition/m:value", _Q)
    )
    return FieldMeta(
        sobject=path.parent.parent.name,
        name=name,
        type=_text(root, "type", path, required=True),
        label=_text(root, "label", path, required=True),
        path=path,
        length=_int(root, "length", path),
        precision=_int(root, "precision", path),
        scale=_int(root, "scale", path),
        external_id=_flag(root, "externalId", path),
        unique=_flag(root, "unique", path),
        required=_flag(root, "required", path),
        reference_to=_text(root, "referenceTo", path) or None,
        picklist=values,
        restricted=root.findtext("m:valueSet/m:restricted", namespaces=_Q) == "true",
        default_value=_text(root, "defaultValue", path) or None,
    )


def read_object(path: Path) -> ObjectMeta:
    """Parse one `.object-meta.xml` file."""
    root = _root(path, "CustomObject")
    name_field = root.find("m:nameField", _Q)
    if name_field is None:
        msg = f"{path}: <nameField> is missing"
        raise MetadataError(msg)
    return ObjectMeta(
        name=path.parent.name,
        label=_text(root, "label", path, required=True),
        plural_label=_text(root, "pluralLabel", path, required=True),
        name_field_type=_text(name_field, "type", path, required=True),
        name_field_label=_text(name_field, "label", path, required=True),
        path=path,
    )


def read_range_rule(path: Path) -> RangeRule:
    """Parse one `.validationRule-meta.xml` file of the supported form."""
    root = _root(path, "ValidationRule")
    formula = _text(root, "errorConditionFormula", path, required=True)
    match = _RANGE_RULE.fullmatch(formula)
    if match is None:
        msg = f"{path}: the emulator only understands range rules, not {formula!r}"
        raise MetadataError(msg)
    return RangeRule(
        sobject=path.parent.parent.name,
        name=_text(root, "fullName", path, required=True),
        field=match.group(1),
        low=float(match.group(2)),
        high=float(match.group(3)),
        message=_text(root, "errorMessage", path, required=True),
        path=path,
    )


@functools.cache
def custom_fields(source_dir: Path = SOURCE_DIR) -> dict[str, tuple[FieldMeta, ...]]:
    """Every custom field, by object API name, in file-name order."""
    if not source_dir.is_dir():
        msg = f"{source_dir} not found: the emulator reads the repository's metadata"
        raise MetadataError(msg)
    out: dict[str, list[FieldMeta]] = {}
    for path in sorted(source_dir.glob("objects/*/fields/*.field-meta.xml")):
        meta = read_field(path)
        out.setdefault(meta.sobject, []).append(meta)
    return {name: tuple(fields) for name, fields in out.items()}


@functools.cache
def custom_objects(source_dir: Path = SOURCE_DIR) -> dict[str, ObjectMeta]:
    """Every custom object (`*__c`) definition, by API name."""
    return {
        path.parent.name: read_object(path)
        for path in sorted(source_dir.glob("objects/*__c/*.object-meta.xml"))
    }


@functools.cache
def range_rules(source_dir: Path = SOURCE_DIR) -> dict[str, tuple[RangeRule, ...]]:
    """Active range validation rules, by object API name."""
    out: dict[str, list[RangeRule]] = {}
    for path in sorted(
        source_dir.glob("objects/*/validationRules/*.validationRule-meta.xml")
    ):
        root = _root(path, "ValidationRule")
        if _text(root, "active", path) != "true":
            continue
        rule = read_range_rule(path)
        out.setdefault(rule.sobject, []).append(rule)
    return {name: tuple(rules) for name, rules in out.items()}


def field(sobject: str, name: str, source_dir: Path = SOURCE_DIR) -> FieldMeta:
    """One custom field's definition.

    Raises:
        MetadataError: no such field in salesforce-org/.
    """
    for meta in custom_fields(source_dir).get(sobject, ()):
        if meta.name == name:
            return meta
    msg = f"{sobject}.{name} is not defined in {source_dir}"
    raise MetadataError(msg)
