"""salesforce-org/ is deployable and matches the presets.

Apex parses, metadata XML has what its type needs, the presets' fields match the
metadata, and the permission set covers them.

Required elements follow the Metadata API Developer Guide:
https://developer.salesforce.com/docs/platform/api-metadata/references/meta-types/metadata-customobject.html
https://developer.salesforce.com/docs/platform/api-metadata/references/meta-types/metadata-customfield.html
(CustomField: Text needs length; Number, Currency and Percent need precision and
scale; LongTextArea needs length and visibleLines; Lookup needs referenceTo and
relationshipName; Picklist needs a valueSet; Checkbox needs defaultValue.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

import pytest

if TYPE_CHECKING:
    from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
ORG = REPO / "salesforce-org"
SOURCE = ORG / "force-app" / "main" / "default"
TRANSFORMS = REPO / "transforms"
NS = "{http://soap.sforce.com/2006/04/metadata}"
PARSER_MODULES = REPO / ".tools" / "npm" / "node_modules"
PARSE_SCRIPT = Path(__file__).with_name("parse_apex.cjs")
INSTALL = "run `make apex-parser` (installs the pinned @apexdevtools/apex-parser)"

FIELD_NEEDS = {
    "Text": ("length",),
    "Number": ("precision", "scale"),
    "Currency": ("precision", "scale"),
    "Percent": ("precision", "scale"),
    "LongTextArea": ("length", "visibleLines"),
    "MultiselectPicklist": ("valueSet", "visibleLines"),
    "Picklist": ("valueSet",),
    "Lookup": ("referenceTo", "relationshipName", "deleteConstraint"),
    "Checkbox": ("defaultValue",),
    "Email": (),
    "Date": (),
    "DateTime": (),
}
# Suffix -> (root element, required child elements).
FILE_NEEDS = {
    ".field-meta.xml": ("CustomField", ("fullName", "label", "type")),
    ".object-meta.xml": (
        "CustomObject",
        ("label", "pluralLabel", "nameField", "deploymentStatus", "sharingModel"),
    ),
    ".validationRule-meta.xml": (
        "ValidationRule",
        ("fullName", "active", "errorConditionFormula", "errorMessage"),
    ),
    ".cls-meta.xml": ("ApexClass", ("apiVersion", "status")),
    ".permissionset-meta.xml": ("PermissionSet", ("label",)),
}


def _preset_check() -> ModuleType:
    path = Path(__file__).with_name("preset_check.py")
    spec = importlib.util.spec_from_file_location("preset_check", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse_apex(*files: Path) -> subprocess.CompletedProcess[str]:
    if not (PARSER_MODULES / "@apexdevtools" / "apex-parser").is_dir():
        # `make pytest` installs it and sets APEX_PARSER_REQUIRED: never skipped there.
        if os.environ.get("CI") or os.environ.get("APEX_PARSER_REQUIRED"):
            pytest.fail(f"the Apex parser is not installed: {INSTALL}")
        pytest.skip(f"the Apex parser is not installed: {INSTALL}")
    node = shutil.which("node")
    assert node, "node is needed for the Apex syntax check"
    return subprocess.run(
        [node, str(PARSE_SCRIPT), str(PARSER_MODULES), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_every_apex_file_parses_with_the_apex_grammar() -> None:
    files = sorted(SOURCE.glob("classes/*.cls")) + sorted(SOURCE.glob("triggers/*"))
    assert files
    result = _parse_apex(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_apex_check_fails_on_a_syntax_error(tmp_path: Path) -> None:
    broken = tmp_path / "Broken.cls"
    broken.write_text("public class Broken { void f( }\n")
    result = _parse_apex(broken)
    assert result.returncode == 1
    assert "Broken.cls:1:" in result.stdout


def test_the_apex_parser_is_pinned_in_the_makefile() -> None:
    installed = json.loads(
        (PARSER_MODULES / "@apexdevtools" / "apex-parser" / "package.json").read_text()
        if PARSER_MODULES.exists()
        else '{"version": null}'
    )
    makefile = (REPO / "Makefile").read_text()
    assert "APEX_PARSER_VERSION := " in makefile
    pytest_rule = next(r for r in makefile.splitlines() if r.startswith("pytest:"))
    assert "$(APEX_PARSER)" in pytest_rule
    pinned = makefile.split("APEX_PARSER_VERSION := ", 1)[1].split()[0]
    assert installed["version"] in {pinned, None}
    assert ".tools/" in (REPO / ".gitignore").read_text().splitlines()


def _metadata_files() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*") if p.name.endswith("-meta.xml"))


@pytest.mark.parametrize(
    "path", _metadata_files(), ids=lambda p: str(p.relative_to(SOURCE))
)
def test_metadata_file_is_well_formed_with_the_elements_its_type_requires(
    path: Path,
) -> None:
    suffix = next((s for s in FILE_NEEDS if path.name.endswith(s)), None)
    assert suffix, f"{path}: no check for this metadata type"
    kind, needs = FILE_NEEDS[suffix]
    root = ET.parse(path).getroot()  # noqa: S314 - the repository's own files
    assert root.tag == NS + kind, f"{path}: root {root.tag}, expected {kind}"
    missing = [n for n in needs if root.find(NS + n) is None]
    assert not missing, f"{path}: missing {missing}"
    if kind == "CustomField":
        name = root.findtext(NS + "fullName")
        assert f"{name}.field-meta.xml" == path.name, f"{path}: fullName {name}"
        type_ = root.findtext(NS + "type") or ""
        assert type_ in FIELD_NEEDS, f"{path}: unchecked field type {type_}"
        lacking = [n for n in FIELD_NEEDS[type_] if root.find(NS + n) is None]
        assert not lacking, f"{path}: a {type_} field needs {lacking}"
    if kind == "CustomObject":
        name_field = root.find(NS + "nameField")
        assert name_field is not None
        assert name_field.findtext(NS + "label"), f"{path}: nameField needs a label"
        assert name_field.findtext(NS + "type") in {"Text", "AutoNumber"}


def test_sfdx_project_points_at_force_app() -> None:
    project = json.loads((ORG / "sfdx-project.json").read_text())
    assert [d["path"] for d in project["packageDirectories"]] == ["force-app"]
    assert project["sourceApiVersion"]


@pytest.mark.parametrize(
    "preset", sorted(TRANSFORMS.glob("clevertap_to_salesforce*.yml")), ids=str
)
def test_preset_fields_match_the_metadata(preset: Path) -> None:
    problems = _preset_check().problems(preset, SOURCE, REPO)
    assert not problems, "\n".join(problems)


def _copy_org(tmp_path: Path) -> Path:
    copy = tmp_path / "default"
    shutil.copytree(SOURCE, copy)
    return copy


def test_a_changed_field_type_names_the_preset_line_and_the_metadata_file(
    tmp_path: Path,
) -> None:
    source = _copy_org(tmp_path)
    field = source / "objects/CleverTap_Engagement__c/fields/Event_Timestamp__c"
    path = field.with_name("Event_Timestamp__c.field-meta.xml")
    path.write_text(path.read_text().replace("<type>DateTime<", "<type>Date<"))
    preset = TRANSFORMS / "clevertap_to_salesforce.yml"
    line = next(
        i
        for i, text in enumerate(preset.read_text().splitlines(), 1)
        if text.strip().startswith("Event_Timestamp__c:")
    )

    problems = _preset_check().problems(preset, source, tmp_path)

    assert any(
        f"clevertap_to_salesforce.yml line {line}: Event_Timestamp__c" in p
        and "Event_Timestamp__c.field-meta.xml says Date" in p
        for p in problems
    ), problems


def test_a_renamed_preset_field_names_the_preset_line_and_the_missing_file(
    tmp_path: Path,
) -> None:
    preset = tmp_path / "clevertap_to_salesforce.yml"
    text = (TRANSFORMS / "clevertap_to_salesforce.yml").read_text()
    preset.write_text(text.replace("Event_Name__c: event_name", "Event_Nam__c: x"))
    line = next(
        i
        for i, t in enumerate(preset.read_text().splitlines(), 1)
        if "Event_Nam__c" in t
    )

    problems = _preset_check().problems(preset, SOURCE, tmp_path)

    assert any(
        p.startswith(f"clevertap_to_salesforce.yml line {line}: ")
        and "Event_Nam__c.field-meta.xml does not exist" in p
        for p in problems
    ), problems


def test_an_upsert_key_without_external_id_is_reported(tmp_path: Path) -> None:
    source = _copy_org(tmp_path)
    path = source / "objects/Campaign/fields/CleverTap_Campaign_Id__c.field-meta.xml"
    path.write_text(path.read_text().replace("<externalId>true<", "<externalId>false<"))

    problems = _preset_check().problems(
        TRANSFORMS / "clevertap_to_salesforce.yml", source, tmp_path
    )

    assert any(
        "upsert key Campaign.CleverTap_Campaign_Id__c is not an External ID" in p
        for p in problems
    ), problems


def test_permission_set_grants_every_optional_custom_field_and_the_apex_class() -> None:
    path = SOURCE / "permissionsets" / "CleverTap_Integration.permissionset-meta.xml"
    root = ET.parse(path).getroot()  # noqa: S314 - the repository's own files
    editable = {
        p.findtext(NS + "field")
        for p in root.findall(NS + "fieldPermissions")
        if p.findtext(NS + "editable") == "true"
    }
    wanted = set()
    for field in SOURCE.glob("objects/*/fields/*.field-meta.xml"):
        meta = ET.parse(field).getroot()  # noqa: S314 - the repository's own files
        # Required fields are always visible; Salesforce refuses FLS entries for them.
        if meta.findtext(NS + "required") != "true":
            wanted.add(f"{field.parent.parent.name}.{meta.findtext(NS + 'fullName')}")
    assert wanted <= editable, sorted(wanted - editable)
    classes = {
        c.findtext(NS + "apexClass")
        for c in root.findall(NS + "classAccesses")
        if c.findtext(NS + "enabled") == "true"
    }
    assert "CleverTapNpsService" in classes
    objects = {
        o.findtext(NS + "object"): o.findtext(NS + "allowEdit")
        for o in root.findall(NS + "objectPermissions")
    }
    assert objects == dict.fromkeys(
        ("Campaign", "CleverTap_Engagement__c", "Contact", "Lead"), "true"
    )
