"""The mapping presets in transforms/: load, name only real fields, give golden output.

Each preset is checked three ways: the target's own loader accepts it; every stream,
field and column it names exists (the Salesforce emulator's sample org for sObjects,
tap-clevertap's discovered schemas for CleverTap columns), with errors naming the
preset line; and run on sample input it gives the golden payloads under
tests/fixtures/transforms/ (rewrite them with TRANSFORMS_UPDATE_GOLDEN=1, then review
the diff).
"""

from __future__ import annotations

import collections
import itertools
import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import requests
import yaml
from sandbox.salesforce.schema import OBJECTS
from target_clevertap.mapping_load import MappingError as CleverTapMappingError
from target_clevertap.mapping_load import load_mappings as load_clevertap_mappings
from target_salesforce.describe import check_mapping_against_describe, parse_describe
from target_salesforce.mapping import MappingError as SalesforceMappingError
from target_salesforce.mapping import find_mapping, template_paths
from target_salesforce.mapping import load_mappings as load_salesforce_mappings

if TYPE_CHECKING:
    from singer_sdk.streams import RESTStream

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
    mapped = {
        name
        for name, m in mappings.items()
        if not m.skip and (m.profile is not None or m.events)
    }
    for stream, mapping in mappings.items():
        sobject = OBJECTS.get(stream)
        if sobject is None:
            errors.append(
                index.error(
                    stream,
                    None,
                    f"stream {stream!r} is not an sObject of the sample org",
                )
            )
            continue
        if mapping.skip:
            continue
        fields = mapping.referenced_fields()
        # The loader defaults conversion_field on every stream; check it where the
        # preset sets it.
        explicit = any(v == "conversion_field" for v, _ in index.streams[stream][1])
        if mapping.conversion_field and explicit:
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
        errors += _check_references(index, stream, mapping, with_profile, mapped)
    return errors


# References to people resolve through these streams' profile identities; any
# other object's records resolve to whoever their mapping (profile or events) names.
_PERSON_REFS = {"Contact": {"Contact"}, "Lead": {"Lead"}, "Who": {"Contact", "Lead"}}


def _check_references(
    index: PresetIndex,
    stream: str,
    mapping: Any,
    with_profile: set[str],
    mapped: set[str],
) -> list[str]:
    """Problems of the `{ref: ...}` identities of one stream's mapping."""
    errors: list[str] = []
    sobject = OBJECTS[stream]
    specs = [("profile", mapping.profile.identity)] if mapping.profile else []
    specs += [(f"events[{i}]", e.identity) for i, e in enumerate(mapping.events)]
    for where, spec in specs:
        if spec.kind != "ref":
            continue
        target = str(spec.ref_object)
        if target in _PERSON_REFS or target == "Account":
            # An AccountId fans out to the Contacts of the account.
            needs = _PERSON_REFS.get(target, {"Contact"})
            lacking, why = needs - with_profile, "gives no profile"
        else:
            lacking, why = {target} - mapped, "does not map (or skips)"
        if lacking:
            errors.append(
                index.error(
                    stream,
                    spec.value,
                    f"stream {stream!r}, {where}.identity: {{ref: {spec.value}}} "
                    f"resolves through {', '.join(sorted(lacking))}, which this "
                    f"preset {why}",
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
            (s for s in index.streams if f"streams.{s}" in str(exc)),
            next(iter(index.streams)),
        )
        return [index.error(stream, None, str(exc))]
    errors: list[str] = []
    for name, mapping in mappings.items():
        matched = [s for s in tap_schemas if find_mapping(mappings, s) is mapping]
        if mapping.source_stream in tap_schemas:  # a second entry for one stream
            matched = [str(mapping.source_stream)]
        if not matched:
            errors.append(
                index.error(
                    name, None, f"stream {name!r} matches no tap-clevertap stream"
                )
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
                index.error(
                    name,
                    str(mapping.sobject),
                    f"stream {name!r}: object "
                    f"{mapping.sobject!r} is not in the sample org",
                )
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

    A profile carries the keys the import preset gives a Contact's Id, a Lead's Id
    and the city (read from the preset, so a rename there shows up here), plus an
    account's own score; the emulator's seed raises the events the export presets
    name.
    """
    from sandbox.clevertap.testing import running_emulator  # noqa: PLC0415
    from tap_clevertap.tap import TapCleverTap  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("tap-schemas")
    with running_emulator(db_path=tmp / "ct.db") as ct:
        ct.seed(
            profiles=3,
            events_per_day=12,
            notifications=False,
            campaigns=2,
            messages=2,
            event_names=list(EXPORT_EVENTS),
            **{"from": 20240601, "to": 20240601},
        )
        preset = _streams(TRANSFORMS / "salesforce_to_clevertap.yml")
        contact = preset["Contact"]["profile"]["properties"]["rename"]
        lead = preset["Lead"]["profile"]["properties"]["rename"]
        profile = {
            contact["Id"]: "0035g0000000001AAA",
            lead["Id"]: "00Q5g0000000001EAA",
            contact["MailingCity"]: "Pune",
            **ACCOUNT_PROFILE_PROPERTIES,
        }
        body = {
            "d": [
                {
                    "type": "profile",
                    "identity": "seed-user-0001",
                    "profileData": profile,
                }
            ]
        }
        reply = requests.post(
            f"{ct.base_url}/1/upload", json=body, headers=ct.headers(), timeout=30
        )
        assert reply.json()["status"] == "success", reply.text
        config = {
            **ct.plugin_config(),
            "start_date": "2024-06-01T00:00:00Z",
            "end_date": "2024-06-02T00:00:00Z",
            "event_names": list(EXPORT_EVENTS),
        }
        tap = TapCleverTap(config=config, parse_env_config=False)
        try:
            return {
                stream.name: set(stream.schema["properties"])
                for stream in tap.streams.values()
            }
        finally:
            for stream in tap.streams.values():
                # every tap-clevertap stream is a RESTStream (CleverTapStream)
                cast("RESTStream[Any]", stream).requests_session.close()


# ------------------------------------------------------------------ loading and checks


@pytest.mark.parametrize("preset", IMPORT_PRESETS, ids=lambda p: p.name)
def test_import_preset_loads_and_names_only_sample_org_fields(preset: Path) -> None:
    mappings = load_clevertap_mappings(path=preset)
    assert {"Contact", "Lead", "Account", "Opportunity", "Case", "Task"} <= set(
        mappings
    )
    assert check_import_preset(preset) == []


@pytest.mark.parametrize("preset", EXPORT_PRESETS, ids=lambda p: p.name)
def test_export_preset_loads_and_fits_sample_org_and_tap_columns(
    preset: Path, tap_schemas: dict[str, set[str]]
) -> None:
    mappings = load_salesforce_mappings(None, str(preset))
    assert "events_*" in mappings
    assert check_export_preset(preset, tap_schemas) == []


@pytest.mark.parametrize(
    "preset", [*IMPORT_PRESETS, *EXPORT_PRESETS], ids=lambda p: p.name
)
def test_preset_is_versioned(preset: Path) -> None:
    doc = yaml.safe_load(preset.read_text(encoding="utf-8"))
    assert doc["version"] == 4
    readme = (TRANSFORMS / "README.md").read_text(encoding="utf-8")
    assert preset.name in readme, f"{preset.name} is not described in the README"


def _broken_copy(tmp_path: Path, preset: Path, old: str, new: str) -> tuple[Path, int]:
    text = preset.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    text = text.replace(old, new, 1)
    line = text[: text.index(new)].count("\n") + 1
    broken = tmp_path / preset.name
    broken.write_text(text, encoding="utf-8")
    return broken, line


def test_import_checker_names_the_line_of_an_unknown_field(tmp_path: Path) -> None:
    broken, line = _broken_copy(
        tmp_path,
        TRANSFORMS / "salesforce_to_clevertap.yml",
        "include: [CaseNumber, Subject, Status,",
        "include: [CaseNumber, Subjct, Status,",
    )
    (error,) = check_import_preset(broken)
    assert f"salesforce_to_clevertap.yml, line {line}: stream 'Case'" in error
    assert "field 'Subjct' does not exist on Case" in error


def _without_entry(tmp_path: Path, stream: str, replacement: str) -> str:
    """The import preset with one stream's entry replaced; returns the new text."""
    text = (TRANSFORMS / "salesforce_to_clevertap.yml").read_text(encoding="utf-8")
    start = text.index(f"\n  {stream}:\n") + 1
    end = re.compile(r"^(  \S|\s*$)", re.MULTILINE)
    nxt = end.search(text, text.index("\n", start) + 1)
    assert nxt is not None
    text = text[:start] + replacement + text[nxt.start() :]
    (tmp_path / "salesforce_to_clevertap.yml").write_text(text, encoding="utf-8")
    return text


def test_import_checker_names_a_reference_to_a_skipped_stream(tmp_path: Path) -> None:
    # Without a Case mapping the target cannot tell whose a CaseHistory row is.
    text = _without_entry(tmp_path, "Case", "  Case: {skip: true}\n")
    (error,) = check_import_preset(tmp_path / "salesforce_to_clevertap.yml")
    line = next(
        i for i, row in enumerate(text.splitlines(), 1) if "{ref: CaseId}" in row
    )
    assert f"line {line}: stream 'CaseHistory'" in error
    assert "resolves through Case, which this preset does not map" in error


def test_import_checker_names_a_person_reference_without_a_profile(
    tmp_path: Path,
) -> None:
    text = _without_entry(tmp_path, "Lead", "  Lead: {skip: true}\n")
    errors = check_import_preset(tmp_path / "salesforce_to_clevertap.yml")
    who = next(i for i, row in enumerate(text.splitlines(), 1) if "{ref: WhoId}" in row)
    assert any(
        f"line {who}: stream 'Task'" in e
        and "resolves through Lead, which this preset gives no profile" in e
        for e in errors
    ), errors


def test_import_preset_with_invalid_condition_fails_naming_the_line(
    tmp_path: Path,
) -> None:
    broken, line = _broken_copy(
        tmp_path,
        TRANSFORMS / "salesforce_to_clevertap.yml",
        'when: "IsClosed == True and IsWon == True and ContactId is not None"',
        'when: "IsClosed = = True"',
    )
    with pytest.raises(
        CleverTapMappingError,
        match=rf"line {line}: stream 'Opportunity', "
        r"events\[1\]\.when: invalid condition",
    ):
        check_import_preset(broken)


def test_export_checker_names_the_line_of_an_unknown_field(
    tmp_path: Path, tap_schemas: dict[str, set[str]]
) -> None:
    broken, line = _broken_copy(
        tmp_path,
        TRANSFORMS / "clevertap_to_salesforce.yml",
        "CleverTap_Delivered__c: delivered",
        "CleverTap_Delivred__c: delivered",
    )
    (error,) = check_export_preset(broken, tap_schemas)
    # The rest of the message is target-salesforce's own describe check.
    assert (
        f"clevertap_to_salesforce.yml, line {line}: stream campaign_reports:" in error
    )
    assert "'CleverTap_Delivred__c' does not exist on Campaign" in error


def test_export_checker_names_the_line_of_an_unknown_column(
    tmp_path: Path, tap_schemas: dict[str, set[str]]
) -> None:
    broken, line = _broken_copy(
        tmp_path,
        TRANSFORMS / "clevertap_to_salesforce.yml",
        "NPS_Score__c: {source: prop_score,",
        "NPS_Score__c: {source: prop_nps,",
    )
    (error,) = check_export_preset(broken, tap_schemas)
    assert (
        f"clevertap_to_salesforce.yml, line {line}: stream 'events_nps_submitted'"
        in error
    )
    assert "column 'prop_nps' is not in tap-clevertap's schema" in error


def _streams(path: Path) -> dict[str, Any]:
    streams: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))[
        "streams"
    ]
    return streams


@pytest.mark.parametrize(
    ("variant", "base", "changed"),
    [
        (
            "salesforce_to_clevertap.email_identity.yml",
            "salesforce_to_clevertap.yml",
            {"Contact", "Lead"},
        ),
        (
            "clevertap_to_salesforce.tasks.yml",
            "clevertap_to_salesforce.yml",
            {"events_*", "events_charged"},
        ),
        (
            "clevertap_to_salesforce.apex.yml",
            "clevertap_to_salesforce.yml",
            {"events_nps_submitted"},
        ),
        (
            "clevertap_to_salesforce.lead_enrichment.yml",
            "clevertap_to_salesforce.yml",
            {"events_nps_submitted_new_leads", "events_survey_answered_new_leads"},
        ),
    ],
)
def test_variant_differs_from_its_base_only_where_documented(
    variant: str, base: str, changed: set[str]
) -> None:
    ours, theirs = _streams(TRANSFORMS / variant), _streams(TRANSFORMS / base)
    added = set(ours) - set(theirs)
    assert set(theirs) <= set(ours)
    differing = {name for name in theirs if ours[name] != theirs[name]}
    assert differing | added == changed
    if variant.endswith("email_identity.yml"):
        for name in changed:
            assert ours[name]["profile"]["identity"] == {"field": "Email"}
            ours[name]["profile"]["identity"] = theirs[name]["profile"]["identity"]
            assert ours[name] == theirs[name]


# ------------------------------------------------------------------ import golden


def _sample_import_input(handle: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    """A few records of each imported object from the seeded org.

    Plus the people they reference, in tap-salesforce's stream order.
    """

    def rows(sobject: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = handle.records(sobject)
        return records

    tasks = [t for t in rows("Task") if t["IsClosed"]][:1]
    tasks += [t for t in rows("Task") if not t["IsClosed"]][:2]
    events = rows("Event")[:2]
    members = [m for m in rows("CampaignMember") if m["HasResponded"]][:2]
    members += [m for m in rows("CampaignMember") if not m["HasResponded"]][:1]
    cases = [c for c in rows("Case") if c["Status"] == "Closed"][:1]
    cases += [c for c in rows("Case") if c["Status"] != "Closed"][:1]
    case_ids = {c["Id"] for c in cases}
    history = [h for h in rows("CaseHistory") if h["CaseId"] in case_ids]
    # A won and a lost deal with a primary contact, and a deal without one on an
    # account that has contacts (it must land on nobody: no fallback).
    staffed = {c["AccountId"] for c in rows("Contact")}
    deals = rows("Opportunity")
    won = [o for o in deals if o["IsWon"] and o["ContactId"]][:1]
    lost = [o for o in deals if o["IsClosed"] and not o["IsWon"] and o["ContactId"]]
    orphan = [o for o in deals if not o["ContactId"] and o["AccountId"] in staffed]
    opps = won + lost[:1] + orphan[:1]
    opp_ids = {o["Id"] for o in opps}
    # Oldest first, as the change tracking of OpportunityHistory needs them.
    opp_history = sorted(
        (h for h in rows("OpportunityHistory") if h["OpportunityId"] in opp_ids),
        key=lambda h: h["CreatedDate"],
    )
    account_ids = {o["AccountId"] for o in opps}
    accounts = [a for a in rows("Account") if a["Id"] in account_ids]
    people = {r.get("WhoId") for r in tasks + events}
    people |= {r.get("ContactId") for r in members + cases}
    people |= {r.get("LeadId") for r in members}
    contacts = [
        c for c in rows("Contact") if c["Id"] in people or c["AccountId"] in account_ids
    ]
    # Plus a lead who asked not to be called (MSG-sms and MSG-whatsapp false).
    people |= {next(lead["Id"] for lead in rows("Lead") if lead["DoNotCall"])}
    leads = [lead for lead in rows("Lead") if lead["Id"] in people]
    return [
        ("Contact", contacts),
        ("Lead", leads),
        ("Account", accounts),
        ("Opportunity", opps),
        ("OpportunityHistory", opp_history),
        ("Case", cases),
        ("CaseHistory", history),
        ("Task", tasks),
        ("Event", events),
        ("CampaignMember", members),
        ("User", rows("User")[:1]),
        ("CleverTap_Engagement__c", rows("CleverTap_Engagement__c")[:1]),
    ]


def _dry_run_import(
    tmp_path: Path, preset: Path, text: str, kit: Any
) -> list[dict[str, Any]]:
    config = {
        "account_id": "TEST-ACCOUNT",
        "passcode": "not-used-in-a-dry-run",
        "api_url": "https://127.0.0.1:9",
        "mappings_file": str(preset),
        "dry_run": True,
        "dry_run_path": str(tmp_path / "dry-run.jsonl"),
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "state_dir": str(tmp_path / "state"),
        "default_phone_country": "US",
    }
    kit.run_target_clevertap(config, text)
    assert kit.read_jsonl(tmp_path / "rejects.jsonl") == []
    loaded: list[dict[str, Any]] = kit.read_jsonl(tmp_path / "dry-run.jsonl")
    return loaded


def _sorted_jsonl(items: list[dict[str, Any]]) -> str:
    def order(item: dict[str, Any]) -> tuple[Any, ...]:
        return (
            item["type"],
            item["identity"],
            item.get("ts") or 0,
            item.get("evtName", ""),
        )

    return "".join(
        json.dumps(item, sort_keys=True, ensure_ascii=False) + "\n"
        for item in sorted(items, key=order)
    )


def test_import_preset_on_seeded_org_gives_golden_clevertap_payloads(
    salesforce_emulator: Any, tmp_path: Path, kit: Any, check_golden: Any
) -> None:
    text = kit.singer_lines(_sample_import_input(salesforce_emulator))
    items = _dry_run_import(
        tmp_path, TRANSFORMS / "salesforce_to_clevertap.yml", text, kit
    )
    # Lead.DoNotCall reaches the lead's profile as MSG-sms and MSG-whatsapp.
    no_calls = [
        i["profileData"]
        for i in items
        if i["identity"].startswith("SF_Lead_")
        and i.get("profileData", {}).get("MSG-sms") is False
    ]
    assert no_calls
    assert all(data["MSG-whatsapp"] is False for data in no_calls)
    # Consent: only opt-outs travel; nobody is ever sent a subscription (true).
    profiles = [i["profileData"] for i in items if i["type"] == "profile"]
    flags = [v for data in profiles for k, v in data.items() if k.startswith("MSG-")]
    assert flags
    assert all(flag is False for flag in flags)
    events = {item.get("evtName") for item in items if item["type"] == "event"}
    assert events == {
        "Opportunity Created",
        "Opportunity Won",
        "Opportunity Lost",
        "Opportunity Stage Changed",
        "Case Created",
        "Case Closed",
        "Case Status Changed",
        "Task Created",
        "Meeting Scheduled",
        "Campaign Responded",
        "Task Completed",
    }
    check_golden(GOLDEN / "salesforce_to_clevertap.golden.jsonl", _sorted_jsonl(items))


def test_deal_events_land_on_the_primary_contact_with_the_previous_stage(
    salesforce_emulator: Any, tmp_path: Path, kit: Any
) -> None:
    sample = dict(_sample_import_input(salesforce_emulator))
    items = _dry_run_import(
        tmp_path,
        TRANSFORMS / "salesforce_to_clevertap.yml",
        kit.singer_lines(sample.items()),
        kit,
    )
    primary = {o["Id"]: o["ContactId"] for o in sample["Opportunity"]}
    # One event per stage change of each deal, compared row by row.
    stages: dict[str, list[str]] = {}
    for row in sample["OpportunityHistory"]:
        stages.setdefault(row["OpportunityId"], []).append(row["StageName"])
    expected = sorted(
        (f"SF_Contact_{primary[deal]}", deal, before, after)
        for deal, names in stages.items()
        if primary[deal]
        for before, after in itertools.pairwise(names)
        if before != after
    )
    changes = [i for i in items if i.get("evtName") == "Opportunity Stage Changed"]
    assert expected
    assert expected == sorted(
        (
            i["identity"],
            i["evtData"]["Opportunity Id"],
            i["evtData"]["Previous Stage"],
            i["evtData"]["New Stage"],
        )
        for i in changes
    )
    # Every deal event and deal property lands on the primary contact only; the
    # deal without one (on an account that has contacts) sends nothing.
    deal_items = [
        i
        for i in items
        if str(i.get("evtName", "")).startswith("Opportunity")
        or "Opportunity Stage" in i.get("profileData", {})
    ]
    assert {i["identity"] for i in deal_items} == {
        f"SF_Contact_{c}" for c in primary.values() if c
    }
    assert None in primary.values()


def _person_rows(handle: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    contact = handle.records("Contact")[0]
    lead = handle.records("Lead")[2]
    task = next(t for t in handle.records("Task"))
    return contact, lead, task


def test_lead_conversion_moves_the_leads_activity_to_the_contact_profile(
    salesforce_emulator: Any, tmp_path: Path, kit: Any
) -> None:
    contact, lead, task = _person_rows(salesforce_emulator)
    converted = {
        **lead,
        "IsConverted": True,
        "ConvertedContactId": contact["Id"],
        "ConvertedAccountId": contact["AccountId"],
        "ConvertedDate": "2025-01-02",
    }
    text = kit.singer_lines(
        [
            ("Contact", [contact]),
            ("Lead", [converted]),
            ("Task", [{**task, "WhoId": lead["Id"]}]),
        ]
    )
    items = _dry_run_import(
        tmp_path, TRANSFORMS / "salesforce_to_clevertap.yml", text, kit
    )
    by_kind = {(i["type"], i["identity"]) for i in items}
    assert ("profile", f"SF_Lead_{lead['Id']}") in by_kind
    assert ("event", f"SF_Contact_{contact['Id']}") in by_kind  # the lead's task
    assert not any(i["type"] == "event" and "SF_Lead_" in i["identity"] for i in items)


def test_email_identity_variant_keys_contacts_and_their_activity_on_email(
    salesforce_emulator: Any, tmp_path: Path, kit: Any
) -> None:
    contact, lead, task = _person_rows(salesforce_emulator)
    text = kit.singer_lines(
        [
            ("Contact", [contact]),
            ("Lead", [lead]),
            ("Task", [{**task, "WhoId": lead["Id"]}]),
        ]
    )
    preset = TRANSFORMS / "salesforce_to_clevertap.email_identity.yml"
    items = _dry_run_import(tmp_path, preset, text, kit)
    identities = {(i["type"], i.get("evtName"), i["identity"]) for i in items}
    assert identities == {
        ("profile", None, contact["Email"]),
        ("profile", None, lead["Email"]),
        ("event", "Task Created", lead["Email"]),
    } | ({("event", "Task Completed", lead["Email"])} if task["IsClosed"] else set())


# ------------------------------------------------------------------ export golden

EXPORT_DAY = "2024-06-01"
EXPORT_TS = 1717236000  # 2024-06-01T10:00:00Z
# The export runs' pinned start time: what `now: true` fields receive.
RUN_STARTED_AT = "2024-06-02T06:00:00Z"


@pytest.fixture(scope="module")
def tap_output(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> dict[str, Any]:
    """tap-clevertap's output after the import preset loaded a few sample-org people.

    The people then raised the events the export presets name; one CleverTap-only
    user (no Salesforce record) raised one too. Campaigns and message reports come
    from the emulator's seed.
    """
    from sandbox.clevertap.testing import running_emulator  # noqa: PLC0415
    from sandbox.salesforce.emulator import Emulator, Options  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("export")
    org = Emulator(db_path=tmp / "sf.db", seed="small", options=Options())
    contacts, leads = org.records("Contact")[:3], org.records("Lead")[:1]
    org.store.close()
    with running_emulator(db_path=tmp / "ct.db") as ct:
        ct.seed(
            profiles=0,
            events_per_day=0,
            notifications=False,
            campaigns=2,
            messages=2,
            **{"from": 20240601, "to": 20240601},
        )
        config = {
            **ct.plugin_config(),
            "mappings_file": str(TRANSFORMS / "salesforce_to_clevertap.yml"),
            "state_dir": str(tmp / "state"),
            "rejects_path": str(tmp / "ct-rejects.jsonl"),
            "default_phone_country": "US",
        }
        kit.run_target_clevertap(
            config, kit.singer_lines([("Contact", contacts), ("Lead", leads)])
        )
        assert kit.read_jsonl(tmp / "ct-rejects.jsonl") == []
        first, second, third = (f"SF_Contact_{c['Id']}" for c in contacts)
        lead = f"SF_Lead_{leads[0]['Id']}"
        events = [
            (first, "NPS Submitted", {"score": 9, "comment": "great"}),
            (second, "NPS Submitted", {"score": 4, "comment": "slow delivery"}),
            (lead, "NPS Submitted", {"score": 7, "comment": "ok"}),
            (
                third,
                "Survey Answered",
                {
                    "survey": "Onboarding",
                    "question": "How easy was sign-up?",
                    "answer": "Easy",
                    "score": 5,
                },
            ),
            (first, "Charged", {"Amount": 1200, "Currency": "USD"}),
            (lead, "Product Viewed", {"product": "Laptop", "price": 1200.0}),
            ("app-user-1", "Product Viewed", {"product": "Novel", "price": 15.0}),
        ]
        body = {
            "d": [
                {
                    "type": "event",
                    "identity": who,
                    "evtName": name,
                    "ts": EXPORT_TS + i * 60,
                    "evtData": data,
                }
                for i, (who, name, data) in enumerate(events)
            ]
        }
        body["d"].append(
            {
                "type": "profile",
                "identity": first,
                "profileData": dict(ACCOUNT_PROFILE_PROPERTIES),
            }
        )
        reply = requests.post(
            f"{ct.base_url}/1/upload", json=body, headers=ct.headers(), timeout=30
        )
        assert reply.json()["status"] == "success", reply.text
        messages = kit.run_tap_clevertap(
            {
                **ct.plugin_config(),
                "start_date": f"{EXPORT_DAY}T00:00:00Z",
                "end_date": "2024-06-02T00:00:00Z",
                "event_names": list(EXPORT_EVENTS),
                "campaign_lookahead_days": 0,
            }
        )
    wanted = {"profiles", "campaigns", "campaign_reports", "message_reports"}
    kept = [
        m
        for m in messages
        if m["type"] in {"SCHEMA", "RECORD"}
        and (m["stream"] in wanted or m["stream"].startswith("events_"))
    ]
    return {
        "text": "".join(json.dumps(m) + "\n" for m in kept),
        "contacts": contacts,
        "lead": leads[0],
    }


def _salesforce_config(
    handle: Any, tmp_path: Path, preset: str, **extra: Any
) -> dict[str, Any]:
    return {
        "access_token": handle.access_token,
        "instance_url": handle.base_url,
        "mappings_file": str(TRANSFORMS / preset),
        "rejects_path": str(tmp_path / "sf-rejects.jsonl"),
        "insert_journal_path": str(tmp_path / "insert-journal.sqlite3"),
        "retry_backoff_seconds": 0.001,
        **extra,
    }


def test_export_preset_on_tap_output_gives_golden_salesforce_writes(
    trusted_salesforce: Any,
    tap_output: dict[str, Any],
    tmp_path: Path,
    kit: Any,
    check_golden: Any,
) -> None:
    config = _salesforce_config(
        trusted_salesforce,
        tmp_path,
        "clevertap_to_salesforce.yml",
        dry_run=True,
        dry_run_path=str(tmp_path / "sf-dry-run.jsonl"),
        run_started_at=RUN_STARTED_AT,
    )
    kit.run_target_salesforce(config, tap_output["text"])
    writes = kit.read_jsonl(tmp_path / "sf-dry-run.jsonl")
    text = "".join(
        json.dumps(w, sort_keys=True, ensure_ascii=False) + "\n"
        for w in sorted(
            writes,
            key=lambda w: (w["stream"], json.dumps(w["payload"], sort_keys=True)),
        )
    )
    check_golden(GOLDEN / "clevertap_to_salesforce.golden.jsonl", text)
    assert kit.read_jsonl(tmp_path / "sf-rejects.jsonl") == []
    # People without the record an entry updates are "not linked", not rejects:
    # the lead's NPS answer, and the profiles of the lead and of the CleverTap-only
    # user (no Contact). The Lead entry only sees the lead's profile (`when`).
    not_linked = kit.read_jsonl(tmp_path / "sf-rejects.not-linked.jsonl")
    assert Counter((r["stream"], r["code"]) for r in not_linked) == {
        ("events_nps_submitted", "NOT_LINKED"): 1,
        ("profiles", "NOT_LINKED"): 2,
    }
    assert "app-user-1" in {r["record"]["identity"] for r in not_linked}


def test_export_preset_leaves_a_channel_without_picklist_value_unset(
    trusted_salesforce: Any, tap_output: dict[str, Any], tmp_path: Path, kit: Any
) -> None:
    # The sample org's CleverTap_Channel__c has no value for webhooks.
    text = tap_output["text"].replace('"channel": "push"', '"channel": "webhooks"')
    assert text != tap_output["text"]
    config = _salesforce_config(
        trusted_salesforce,
        tmp_path,
        "clevertap_to_salesforce.yml",
        dry_run=True,
        dry_run_path=str(tmp_path / "sf-dry-run.jsonl"),
    )
    kit.run_target_salesforce(config, text)
    payloads = {
        w["payload"]["CleverTap_Campaign_Id__c"]: w["payload"]
        for w in kit.read_jsonl(tmp_path / "sf-dry-run.jsonl")
        if w["stream"] == "message_reports"
    }
    assert "CleverTap_Channel__c" not in payloads["1800000000"]
    assert payloads["1800000001"]["CleverTap_Channel__c"] == "Email"


def test_export_preset_writes_land_in_the_sample_org(
    trusted_salesforce: Any, tap_output: dict[str, Any], tmp_path: Path, kit: Any
) -> None:
    handle = trusted_salesforce
    config = _salesforce_config(
        handle,
        tmp_path,
        "clevertap_to_salesforce.yml",
        run_started_at=RUN_STARTED_AT,
    )
    kit.run_target_salesforce(config, tap_output["text"])
    kit.run_target_salesforce(config, tap_output["text"])  # a rerun adds nothing
    first, second, third = tap_output["contacts"]
    lead = tap_output["lead"]
    rows = [
        r
        for r in handle.live_records("CleverTap_Engagement__c")
        if r["CleverTap_Event_Id__c"] and len(r["CleverTap_Event_Id__c"]) == 64
    ]
    links = sorted(
        (r["Event_Name__c"], r["Contact__c"] or "", r["Lead__c"] or "") for r in rows
    )
    assert links == [
        ("Charged", first["Id"], ""),
        ("Product Viewed", "", ""),
        ("Product Viewed", "", lead["Id"]),
    ]
    contacts = {c["Id"]: c for c in handle.records("Contact")}
    assert contacts[first["Id"]]["NPS_Score__c"] == 9
    assert contacts[second["Id"]]["NPS_Score__c"] == 4
    assert contacts[first["Id"]]["CleverTap_Id__c"] == f"SF_Contact_{first['Id']}"
    assert contacts[third["Id"]]["Last_Feedback_Date__c"] == EXPORT_DAY
    campaigns = {c["CleverTap_Campaign_Id__c"]: c for c in handle.records("Campaign")}
    assert campaigns["1700000000"]["CleverTap_Sent__c"] == 1600
    assert campaigns["1800000001"]["Name"] == "Seed message 2"
    assert campaigns["1800000001"]["CleverTap_Channel__c"] == "Email"  # from email
    # Clicked per sent, in percent: 129 of 1600 and 999 of 6319.
    assert campaigns["1700000000"]["CleverTap_Click_Rate__c"] == 8.06
    assert campaigns["1800000001"]["CleverTap_Click_Rate__c"] == 15.81
    for campaign_id in ("1700000000", "1800000001"):
        synced = campaigns[campaign_id]["CleverTap_Last_Synced__c"]
        assert synced.startswith("2024-06-02T06:00:00")
    assert kit.read_jsonl(tmp_path / "sf-rejects.jsonl") == []
    not_linked = kit.read_jsonl(tmp_path / "sf-rejects.not-linked.jsonl")
    assert {r["stream"] for r in not_linked} == {"events_nps_submitted", "profiles"}
    # The Lead entry keeps the lead's CleverTap identity on the Lead.
    leads = {r["Id"]: r for r in handle.records("Lead")}
    assert leads[lead["Id"]]["CleverTap_Id__c"] == f"SF_Lead_{lead['Id']}"


def test_tasks_variant_inserts_completed_tasks_on_contacts_and_leads(
    trusted_salesforce: Any, tap_output: dict[str, Any], tmp_path: Path, kit: Any
) -> None:
    handle = trusted_salesforce
    before = {t["Id"] for t in handle.records("Task")}
    config = _salesforce_config(handle, tmp_path, "clevertap_to_salesforce.tasks.yml")
    kit.run_target_salesforce(config, tap_output["text"])
    new = [t for t in handle.records("Task") if t["Id"] not in before]
    first = tap_output["contacts"][0]
    lead = tap_output["lead"]
    assert sorted((t["Subject"], t["WhoId"] or "") for t in new) == [
        ("CleverTap: Charged 1200", first["Id"]),
        ("CleverTap: Product Viewed", ""),
        ("CleverTap: Product Viewed", lead["Id"]),
    ]
    assert {(t["Status"], t["ActivityDate"]) for t in new} == {
        ("Completed", EXPORT_DAY)
    }


def test_apex_variant_posts_the_seed_payload_and_enriches_by_email(
    trusted_salesforce: Any, tap_output: dict[str, Any], tmp_path: Path, kit: Any
) -> None:
    handle = trusted_salesforce
    config = _salesforce_config(handle, tmp_path, "clevertap_to_salesforce.apex.yml")
    kit.run_target_salesforce(config, tap_output["text"])
    (call,) = [c for c in handle.apex_calls() if "/ct/nps/" in json.dumps(c)]
    first, second, _ = tap_output["contacts"]
    lead = tap_output["lead"]
    body = call.get("json") or call.get("body")
    if isinstance(body, str):
        body = json.loads(body)
    records = sorted(body["records"], key=lambda r: r["email"])
    assert [(r["email"], r["npsScore"]) for r in records] == sorted(
        [(first["Email"], 9), (second["Email"], 4), (lead["Email"], 7)]
    )
    by_email = {r["email"]: r for r in records}
    assert (
        by_email[first["Email"]]["leadScore"]
        == ACCOUNT_PROFILE_PROPERTIES["Lead Score"]
    )
    assert by_email[first["Email"]]["city"] == first["MailingCity"]
    leads = {r["Id"]: r for r in handle.records("Lead")}
    assert leads[lead["Id"]]["NPS_Score__c"] == 7  # the Lead, found by email
    contacts = {c["Id"]: c for c in handle.records("Contact")}
    assert contacts[second["Id"]]["NPS_Score__c"] == 4


@pytest.mark.parametrize(
    "preset", ["salesforce_to_clevertap.yml", "clevertap_to_salesforce.yml"]
)
def test_readme_table_lists_every_stream_of_the_preset(preset: str) -> None:
    readme = (TRANSFORMS / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for stream in _streams(TRANSFORMS / preset):
        assert any(f"`{stream}`" in row for row in rows), stream


def test_import_preset_gives_the_same_profile_without_compound_addresses(
    salesforce_emulator: Any, tmp_path: Path, kit: Any
) -> None:
    # tap-salesforce's BULK mode leaves compound address fields out.
    contact = salesforce_emulator.records("Contact")[0]
    lead = salesforce_emulator.records("Lead")[0]
    rest = kit.singer_lines([("Contact", [contact]), ("Lead", [lead])])
    bulk_lines = []
    for line in rest.splitlines():
        message = json.loads(line)
        body = message.get("record") or message["schema"]["properties"]
        for compound in ("MailingAddress", "Address"):
            body.pop(compound, None)
        bulk_lines.append(json.dumps(message))
    preset = TRANSFORMS / "salesforce_to_clevertap.yml"
    from_rest = _dry_run_import(tmp_path / "rest", preset, rest, kit)
    from_bulk = _dry_run_import(tmp_path / "bulk", preset, "\n".join(bulk_lines), kit)
    assert from_bulk == from_rest
    assert {i["profileData"]["City"] for i in from_rest} == {
        contact["MailingCity"],
        lead["City"],
    }


def test_lead_enrichment_variant_makes_one_lead_of_an_unknown_persons_answer(
    trusted_salesforce: Any, tap_output: dict[str, Any], tmp_path: Path, kit: Any
) -> None:
    handle = trusted_salesforce
    known = next(
        json.loads(line)["record"]
        for line in tap_output["text"].splitlines()
        if '"events_nps_submitted"' in line
        and '"RECORD"' in line
        and json.loads(line)["record"].get("profile_sf_contact_id")
    )
    unknown = {
        "profile_sf_contact_id": None,
        "profile_sf_lead_id": None,
        "prop_score": 3,
        "prop_comment": "too slow",
    }
    # An app user who answered NPS, with an email; and one without an email.
    stranger = {
        **known,
        **unknown,
        "identity": "app-user-42",
        "email": "sam.stranger@example.com",
        "name": "Sam Stranger",
        "event_key": "a" * 64,
    }
    no_email = {**stranger, "identity": "app-user-43", "email": None}
    no_email["event_key"] = "b" * 64
    text = tap_output["text"] + "".join(
        json.dumps({"type": "RECORD", "stream": "events_nps_submitted", "record": r})
        + "\n"
        for r in (stranger, no_email)
    )
    before = {lead["Id"] for lead in handle.records("Lead")}
    config = _salesforce_config(
        handle, tmp_path, "clevertap_to_salesforce.lead_enrichment.yml"
    )
    kit.run_target_salesforce(config, text)
    kit.run_target_salesforce(config, text)  # a rerun updates the same Lead
    new = [lead for lead in handle.records("Lead") if lead["Id"] not in before]
    assert [
        (
            lead["CleverTap_Id__c"],
            lead["Email"],
            lead["LastName"],
            lead["Company"],
            lead["LeadSource"],
            lead["NPS_Score__c"],
            lead["Description"],
        )
        for lead in new
    ] == [
        (
            "app-user-42",
            "sam.stranger@example.com",
            "Sam Stranger",
            "[not provided]",
            "CleverTap",
            3,
            "CleverTap NPS 3: too slow",
        )
    ]
    assert kit.read_jsonl(tmp_path / "sf-rejects.jsonl") == []
    # Known people's answers still go to their Contact, never to a new Lead.
    first = tap_output["contacts"][0]
    contact = next(c for c in handle.records("Contact") if c["Id"] == first["Id"])
    assert contact["NPS_Score__c"] == 9


def test_export_lead_entry_skips_converted_leads(
    trusted_salesforce: Any, tap_output: dict[str, Any], tmp_path: Path, kit: Any
) -> None:
    schema = next(
        line
        for line in tap_output["text"].splitlines()
        if '"SCHEMA"' in line and '"stream": "profiles"' in line
    )
    assert "profile_sf_lead_converted" in schema
    lead = tap_output["lead"]
    base = {"object_id": "o1", "profile_msg_email": False}
    records = [
        {**base, "identity": "SF_Lead_live", "profile_sf_lead_id": lead["Id"]},
        {
            **base,
            "object_id": "o2",
            "identity": "SF_Lead_converted",
            "profile_sf_lead_id": "00Q5g0000000999AAA",
            "profile_sf_lead_converted": True,
        },
    ]
    text = (
        schema
        + "\n"
        + "".join(
            json.dumps({"type": "RECORD", "stream": "profiles", "record": r}) + "\n"
            for r in records
        )
    )
    config = _salesforce_config(
        trusted_salesforce,
        tmp_path,
        "clevertap_to_salesforce.yml",
        dry_run=True,
        dry_run_path=str(tmp_path / "dry.jsonl"),
    )
    kit.run_target_salesforce(config, text)
    writes = [
        w for w in kit.read_jsonl(tmp_path / "dry.jsonl") if w["object"] == "Lead"
    ]
    assert [w["payload"] for w in writes] == [
        {
            "Id": lead["Id"],
            "CleverTap_Id__c": "SF_Lead_live",
            "HasOptedOutOfEmail": True,
        }
    ]


def test_identity_lookup_joins_the_seeded_app_users_of_the_sample_org(
    salesforce_emulator: Any,
    clevertap_emulator: Any,
    tmp_path: Path,
    kit: Any,
    fast_retries: None,  # noqa: ARG001 - a fixture with an effect
) -> None:
    ct = clevertap_emulator
    ct.seed(
        seed=1,
        profiles=3,
        events_per_day=1,
        days=1,
        campaigns=0,
        messages=0,
        notifications=False,
        crm_people="small",
    )
    app = [
        p
        for p in ct.profiles()
        if p["identity"] is None or str(p["identity"]).startswith("app-user-")
    ]
    on_app = collections.Counter(p["profileData"]["Email"] for p in app)
    people = [(name, salesforce_emulator.records(name)) for name in ("Contact", "Lead")]
    rows = [(name, row) for name, records in people for row in records]

    # What each CRM person meets: one app profile, two, or none. A profile the
    # import itself made (a Contact's SF_Contact_..., which a Lead of the sample org
    # may share an email with) is never a match.
    def meets(email: str) -> int:
        return min(on_app[email], 2)

    expected = collections.Counter(meets(row["Email"]) for _, row in rows)
    assert expected[1] >= on_app.total() - 2
    assert expected[2] == 1
    assert expected[0]
    config = {
        **ct.plugin_config(),
        "mappings_file": str(TRANSFORMS / "salesforce_to_clevertap.yml"),
        "state_dir": str(tmp_path / "state"),
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "default_phone_country": "US",
        "identity_lookup": "email",
        "identity_lookup_rate": 1000,
    }
    kit.run_target_clevertap(config, kit.singer_lines(people))

    def lookups() -> int:
        return sum(r["path"] == "/1/profile.json" for r in ct.requests_log())

    assert lookups() == len(rows)
    by_object = {p["objectId"]: p for p in ct.profiles()}
    joined = [
        by_object[p["objectId"]] for p in app if on_app[p["profileData"]["Email"]] == 1
    ]
    assert all({"SF Contact Id", "SF Lead Id"} & set(p["profileData"]) for p in joined)
    assert any(p["identity"] is None for p in joined)  # written by objectId
    crm = [p for p in ct.profiles() if str(p["identity"]).startswith("SF_")]
    assert len(crm) == expected[0]
    ambiguous = [
        r
        for r in kit.read_jsonl(tmp_path / "rejects.jsonl")
        if r["code"] == "identity_ambiguous"
    ]
    assert len(ambiguous) == expected[2]
    # a rerun asks only about the people still ambiguous
    kit.run_target_clevertap(config, kit.singer_lines(people))
    assert lookups() == len(rows) + expected[2]
