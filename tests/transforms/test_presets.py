"""The mapping presets in transforms/: load, name only real fields, give golden output.

Each preset is checked three ways: the target's own loader accepts it; every stream,
field and column it names exists (the Salesforce emulator's sample org for sObjects,
tap-clevertap's discovered schemas for CleverTap columns), with errors naming the
preset line; and run on sample input it gives the golden payloads under
tests/fixtures/transforms/ (rewrite them with TRANSFORMS_UPDATE_GOLDEN=1, then review
the diff).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import yaml
from sandbox.salesforce.schema import OBJECTS
from target_clevertap.mapping import MappingError as CleverTapMappingError
from target_clevertap.mapping import load_mappings as load_clevertap_mappings
from target_salesforce.mapping import MappingError as SalesforceMappingError
from target_salesforce.mapping import find_mapping, template_paths
from target_salesforce.mapping import load_mappings as load_salesforce_mappings
from target_salesforce.payloads import (
    check_mapping_against_describe,
    parse_describe,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMS = ROOT / "transforms"
GOLDEN = ROOT / "tests" / "fixtures" / "transforms"
IMPORT_PRESETS = sorted(TRANSFORMS.glob("salesforce_to_clevertap*.yml"))
EXPORT_PRESETS = sorted(TRANSFORMS.glob("clevertap_to_salesforce*.yml"))
API_VERSION = "62.0"
# Events the export presets name, as the CleverTap emulator's seed raises them.
EXPORT_EVENTS = ("Charged", "NPS Submitted", "Survey Answered", "Product Viewed")
# CleverTap profile properties a user's account may hold besides the imported ones.
ACCOUNT_PROFILE_PROPERTIES = {"Lead Score": 72}


# ------------------------------------------------------------------ the checker


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class PresetIndex:
    """Lines of a preset's YAML: where each stream and each scalar of it is."""

    def __init__(self, path: Path) -> None:
        """Compose the YAML (keeping marks) and index the `streams:` entries."""
        self.path = path
        root = yaml.compose(path.read_text(encoding="utf-8"))
        streams = root
        if isinstance(root, yaml.MappingNode):
            for key, value in root.value:
                if key.value == "streams":
                    streams = value
        self.streams: dict[str, tuple[int, list[tuple[str, int]]]] = {}
        assert isinstance(streams, yaml.MappingNode), f"{path}: no streams mapping"
        for key, value in streams.value:
            scalars: list[tuple[str, int]] = []
            self._walk(value, scalars)
            self.streams[key.value] = (key.start_mark.line + 1, scalars)

    def _walk(self, node: yaml.Node, out: list[tuple[str, int]]) -> None:
        if isinstance(node, yaml.ScalarNode):
            out.append((str(node.value), node.start_mark.line + 1))
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self._walk(key, out)
                self._walk(value, out)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self._walk(item, out)

    def line(self, stream: str, name: str | None = None) -> int:
        """The line naming `name` in the stream's entry (else the stream's line)."""
        start, scalars = self.streams.get(stream, (0, []))
        if name is None:
            return start
        for value, line in scalars:
            if value == name:
                return line
        for value, line in scalars:
            if "{" + name + "}" in value or re.search(rf"\b{re.escape(name)}\b", value):
                return line
        return start

    def error(self, stream: str, name: str | None, message: str) -> str:
        """An error message naming the preset file and line."""
        return f"{_rel(self.path)}, line {self.line(stream, name)}: {message}"


def check_import_preset(path: Path) -> list[str]:
    """Problems of a Salesforce -> CleverTap preset against the sample org.

    The target's loader checks the format and expressions (its errors name the
    line); this checks that streams and fields exist and references resolve.
    """
    mappings = load_clevertap_mappings(path=path)
    index = PresetIndex(path)
    errors: list[str] = []
    with_profile = {name for name, m in mappings.items() if m.profile is not None}
    for stream, mapping in mappings.items():
        sobject = OBJECTS.get(stream)
        if sobject is None:
            errors.append(
                index.error(stream, None, f"stream {stream!r} is not an sObject of "
                            "the sample org")
            )
            continue
        if mapping.skip:
            continue
        fields = mapping.referenced_fields()
        if mapping.conversion_field:
            fields.setdefault(mapping.conversion_field, []).append("conversion_field")
        for name, places in sorted(fields.items()):
            if name not in sobject.field_map:
                errors.append(
                    index.error(
                        stream,
                        name,
                        f"stream {stream!r}, {places[0]}: field {name!r} does not "
                        f"exist on {stream} in the sample org",
                    )
                )
        specs = [("profile", mapping.profile.identity)] if mapping.profile else []
        specs += [(f"events[{i}]", e.identity) for i, e in enumerate(mapping.events)]
        for where, spec in specs:
            if spec.kind != "ref":
                continue
            target = str(spec.ref_object)
            needs = {
                "Who": {"Contact", "Lead"},
                "Account": {"Contact"},
            }.get(target, {target})
            if not needs <= with_profile:
                errors.append(
                    index.error(
                        stream,
                        spec.value,
                        f"stream {stream!r}, {where}.identity: {{ref: {spec.value}}} "
                        f"resolves through {', '.join(sorted(needs))}, which this "
                        "preset gives no profile",
                    )
                )
            field = sobject.field_map.get(spec.value)
            if field is not None and field.type == "reference":
                wanted = {"Who": {"Contact", "Lead"}}.get(target, {target})
                if not wanted <= set(field.reference_to):
                    errors.append(
                        index.error(
                            stream,
                            spec.value,
                            f"stream {stream!r}, {where}.identity: {spec.value} points "
                            f"to {', '.join(field.reference_to)}, not {target}",
                        )
                    )
    return errors


def _export_sources(mapping: Any) -> set[str]:
    """Top-level record columns a target-salesforce mapping reads."""
    roots = set(mapping.used_roots)
    if mapping.apex is not None:
        pending: list[Any] = [mapping.apex.payload, mapping.apex.path]
        while pending:
            node = pending.pop()
            if isinstance(node, str):
                roots.update(p.split(".", 1)[0] for p in template_paths(node))
            elif isinstance(node, dict):
                pending.extend(node.values())
            elif isinstance(node, list):
                pending.extend(node)
    return roots


def check_export_preset(path: Path, tap_schemas: dict[str, set[str]]) -> list[str]:
    """Problems of a CleverTap -> Salesforce preset against the sample org and tap.

    `tap_schemas`: tap-clevertap stream name -> its columns (from discovery).
    """
    index = PresetIndex(path)
    try:
        mappings = load_salesforce_mappings(None, str(path))
    except SalesforceMappingError as exc:
        stream = next(
            (s for s in index.streams if f"streams.{s}" in str(exc)), next(iter(index.streams))
        )
        return [index.error(stream, None, str(exc))]
    errors: list[str] = []
    for name, mapping in mappings.items():
        matched = [s for s in tap_schemas if find_mapping(mappings, s) is mapping]
        if not matched:
            errors.append(
                index.error(name, None, f"stream {name!r} matches no tap-clevertap "
                            "stream")
            )
            continue
        for column in sorted(_export_sources(mapping)):
            lacking = [s for s in matched if column not in tap_schemas[s]]
            if lacking:
                errors.append(
                    index.error(
                        name,
                        column,
                        f"stream {name!r}: column {column!r} is not in tap-clevertap's "
                        f"schema of {', '.join(lacking)}",
                    )
                )
        if mapping.mode != "sobject":
            continue
        sobject = OBJECTS.get(str(mapping.sobject))
        if sobject is None:
            errors.append(
                index.error(name, str(mapping.sobject), f"stream {name!r}: object "
                            f"{mapping.sobject!r} is not in the sample org")
            )
            continue
        try:
            check_mapping_against_describe(
                mapping,
                parse_describe(sobject.describe(API_VERSION)),
                tap_schemas[matched[0]],
                related=lambda obj: parse_describe(OBJECTS[obj].describe(API_VERSION)),
            )
        except SalesforceMappingError as exc:
            quoted = re.findall(r"'([^']+)'", str(exc))
            errors.append(index.error(name, quoted[0] if quoted else None, str(exc)))
    return errors


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tap_schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """tap-clevertap's discovered columns on an account fed by the import preset.

    Profiles carry what the import preset writes (plus an account's own score);
    the emulator's seed raises the events the export presets name.
    """
    from sandbox.clevertap.testing import running_emulator  # noqa: PLC0415
    from tap_clevertap.tap import TapCleverTap  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("tap-schemas")
    with running_emulator(db_path=tmp / "ct.db") as ct:
        ct.seed(
            profiles=3, events_per_day=12, notifications=False, campaigns=2,
            messages=2, event_names=list(EXPORT_EVENTS), **{"from": 20240601,
                                                            "to": 20240601},
        )
        profile = {
            "SF Contact Id": "0035g0000000001AAA", "SF Lead Id": "00Q5g0000000001EAA",
            "City": "Pune", **ACCOUNT_PROFILE_PROPERTIES,
        }
        body = {"d": [{"type": "profile", "identity": "seed-user-0001",
                       "profileData": profile}]}
        reply = requests.post(f"{ct.base_url}/1/upload", json=body,
                              headers=ct.headers(), timeout=30)
        assert reply.json()["status"] == "success", reply.text
        config = {**ct.plugin_config(), "start_date": "2024-06-01T00:00:00Z",
                  "end_date": "2024-06-02T00:00:00Z", "event_names": list(EXPORT_EVENTS)}
        tap = TapCleverTap(config=config, parse_env_config=False)
        try:
            return {
                stream.name: set(stream.schema["properties"])
                for stream in tap.streams.values()
            }
        finally:
            for stream in tap.streams.values():
                stream.requests_session.close()
