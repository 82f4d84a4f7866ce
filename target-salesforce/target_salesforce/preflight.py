"""`target-salesforce --preflight`: check a configuration against the org.

Checks, one output line each (`PASS`, `FAIL` with the fix, or `WARN`):

- login: the configured auth flow gets a session.
- every mapped object can be described; every mapped field exists and is writable
  for the mapping's action (describe `createable` / `updateable`); every upsert key
  is an External ID field.
- every Apex mapping's path is mapped to a class. The check sends a GET, which the
  NPS class of salesforce-org/ does not define: Salesforce then answers 405
  METHOD_NOT_ALLOWED without running any Apex, and 404 NOT_FOUND when no class
  maps the URL. A GET never writes (an empty POST would run the class).
- API requests left today (`GET /limits`, DailyApiRequests) against `quota_percent`.
- active duplicate rules (SOQL on DuplicateRule) on the objects the mappings create:
  a rule whose action is Block rejects new records with DUPLICATES_DETECTED. The
  API does not show a rule's action, so this is a warning, not a failure.

The exit status is 1 when any check fails. Only reads are sent: a login, describes,
a GET on each Apex path, `/limits` and one SOQL query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests
from simple_salesforce.exceptions import SalesforceError

from target_salesforce.auth import AuthError
from target_salesforce.client import SalesforceClient
from target_salesforce.describe import FieldInfo, parse_describe, split_relationship
from target_salesforce.errors import TargetSalesforceError
from target_salesforce.mapping import MappingError, StreamMapping, load_mappings
from target_salesforce.preflight_cli import (
    Check,
    settings_loader,
    with_preflight_option,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    import click

DEPLOY = (
    "deploy salesforce-org/ (cd salesforce-org && sf project deploy start "
    "--source-dir force-app; docs/production.md step 2)"
)
ASSIGN = "assign the CleverTap_Integration permission set to the integration user"
DUPLICATE_QUERY = (
    "SELECT SobjectType, DeveloperName, MasterLabel FROM DuplicateRule "
    "WHERE IsActive = true"
)
HTTP_NOT_FOUND = 404
HTTP_NOT_ALLOWED = 405
HTTP_OK_RANGE = range(200, 300)
HTTP_BAD_REQUEST = 400


def passed(name: str, detail: str) -> Check:
    """A passing check."""
    return Check(name, "PASS", detail)


def failed(name: str, detail: str, fix: str) -> Check:
    """A failing check and how to fix it."""
    return Check(name, "FAIL", detail, fix)


# --------------------------------------------------------------------------- pure


def _needs(action: str) -> tuple[str, ...]:
    if action == "insert":
        return ("createable",)
    if action == "update":
        return ("updateable",)
    return ("createable", "updateable")


def _writable(info: FieldInfo, action: str) -> bool:
    return all(getattr(info, flag) for flag in _needs(action))


def _fix_for(sobject: str, name: str) -> str:
    if name.endswith("__c") or sobject.endswith("__c"):
        return f"{DEPLOY}, then {ASSIGN}"
    return f"give the integration user edit access to {sobject}.{name}"


def field_checks(
    mapping: StreamMapping, fields: Mapping[str, FieldInfo]
) -> list[Check]:
    """Every mapped field exists and is writable; the upsert key is an External ID.

    Args:
        mapping: one sObject mapping.
        fields: the object's describe, by field name.

    Returns:
        One passing line for the mapping, or one failing line per bad field;
        plus one line for the upsert key of an upsert.
    """
    sobject = str(mapping.sobject)
    where = f"{mapping.stream} -> {sobject} ({mapping.action})"
    problems: list[Check] = []
    written = [f.target for f in mapping.fields]
    for name in written:
        if name == "Id" and mapping.action in {"update", "delete"}:
            continue
        relation = split_relationship(name)
        base = relation[0] if relation else name
        info = (
            next(
                (
                    f
                    for f in fields.values()
                    if (f.relationship_name or "").lower() == base.lower()
                ),
                None,
            )
            if relation
            else fields.get(name)
        )
        located = mapping.located(name)
        if info is None:
            problems.append(
                failed(
                    f"field {sobject}.{name}",
                    f"{where}: the field does not exist or is not visible{located}",
                    _fix_for(sobject, name),
                )
            )
        elif mapping.action != "delete" and not _writable(info, mapping.action):
            need = " and ".join(_needs(mapping.action))
            problems.append(
                failed(
                    f"field {sobject}.{name}",
                    f"{where}: the field is not {need}{located}",
                    f"{ASSIGN} (field-level security: edit), or map another field",
                )
            )
    checks = problems or [
        passed(
            f"fields {sobject}",
            f"{where}: {len(written)} mapped fields exist and are writable",
        )
    ]
    if mapping.action == "upsert":
        checks.append(upsert_key_check(mapping, fields))
    return checks


def upsert_key_check(mapping: StreamMapping, fields: Mapping[str, FieldInfo]) -> Check:
    """The upsert key of an upsert mapping is an External ID field of the object."""
    sobject = str(mapping.sobject)
    key = str(mapping.external_id_field)
    name = f"upsert key {sobject}.{key}"
    info = fields.get(key)
    located = mapping.located(key)
    if info is None:
        return failed(
            name,
            f"{mapping.stream}: the field does not exist{located}",
            _fix_for(sobject, key),
        )
    if not (info.external_id or info.name == "Id"):
        return failed(
            name,
            f"{mapping.stream}: {key} is not an External ID field{located}",
            f"tick External ID (and Unique) on {sobject}.{key} in Setup, or {DEPLOY}",
        )
    return passed(name, f"{mapping.stream}: External ID")


def apex_check(path: str, method: str, status: int, code: str) -> Check:
    """What the answer to a GET on an Apex path says about the class behind it."""
    name = f"apex /services/apexrest/{path}"
    if status == HTTP_NOT_FOUND:
        return failed(
            name,
            f"HTTP 404 {code}: no Apex class is mapped to this path",
            f"{DEPLOY} (CleverTapNpsService maps /ct/nps/*), or fix `apex.path`",
        )
    if status in (HTTP_NOT_ALLOWED, HTTP_BAD_REQUEST) or status in HTTP_OK_RANGE:
        return passed(
            name, f"a class answers (GET -> HTTP {status}); calls use {method}"
        )
    return failed(
        name,
        f"HTTP {status} {code}",
        f"{ASSIGN} (it grants access to the Apex class)",
    )


def limits_check(limits: Mapping[str, Any], quota_percent: float) -> Check:
    """API requests left in the org's rolling 24 hours (`GET /limits`)."""
    daily = limits.get("DailyApiRequests") or {}
    top = int(daily.get("Max") or 0)
    left = int(daily.get("Remaining") or 0)
    if not top:
        return failed(
            "api requests", "the /limits answer has no DailyApiRequests", ASSIGN
        )
    used = 100.0 * (top - left) / top
    detail = f"{left} of {top} left today ({used:.1f}% used)"
    if used >= quota_percent:
        return failed(
            "api requests",
            f"{detail}; the target stops above quota_percent={quota_percent:g}",
            "wait until the rolling 24 h usage drops, or raise quota_percent",
        )
    return passed("api requests", detail)


def created_objects(mappings: Iterable[StreamMapping]) -> list[str]:
    """Objects the mappings may create records on (insert or upsert)."""
    return sorted(
        {
            str(m.sobject)
            for m in mappings
            if m.mode == "sobject" and not m.skip and m.action in {"insert", "upsert"}
        }
    )


def duplicate_rule_checks(
    rules: Iterable[Mapping[str, Any]], objects: Iterable[str]
) -> list[Check]:
    """One line per created object: its active duplicate rules, if any."""
    by_object: dict[str, list[str]] = {}
    for rule in rules:
        label = str(rule.get("MasterLabel") or rule.get("DeveloperName"))
        by_object.setdefault(str(rule.get("SobjectType")), []).append(label)
    checks = []
    for sobject in objects:
        active = by_object.get(sobject)
        name = f"duplicate rules {sobject}"
        if not active:
            checks.append(passed(name, "no active duplicate rule"))
            continue
        checks.append(
            Check(
                name,
                "WARN",
                f"active: {', '.join(sorted(active))}. A rule whose action on create "
                "is Block rejects new records with DUPLICATES_DETECTED (they land "
                "in the rejects file); Allow with Report only logs them",
                "check the rule's actions in Setup > Duplicate Rules",
            )
        )
    return checks


# --------------------------------------------------------------------------- I/O


def _error_code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return str(body[0].get("errorCode") or "")
    if isinstance(body, dict):
        return str(body.get("errorCode") or "")
    return ""


def _object_checks(
    client: SalesforceClient, mappings: list[StreamMapping]
) -> list[Check]:
    checks: list[Check] = []
    described: dict[str, dict[str, FieldInfo] | None] = {}
    for mapping in mappings:
        sobject = str(mapping.sobject)
        if sobject not in described:
            try:
                described[sobject] = parse_describe(client.describe(sobject))
                checks.append(passed(f"object {sobject}", "described"))
            except TargetSalesforceError as exc:
                described[sobject] = None
                checks.append(
                    failed(f"object {sobject}", str(exc), _fix_for(sobject, ""))
                )
        fields = described[sobject]
        if fields is not None:
            checks += field_checks(mapping, fields)
    return checks


def _apex_checks(
    client: SalesforceClient, mappings: list[StreamMapping]
) -> list[Check]:
    checks = []
    sf = client.sf
    for mapping in mappings:
        if mapping.apex is None:
            continue
        path = mapping.apex.path.split("{", 1)[0].rstrip("/") or mapping.apex.path
        response = client.session.get(
            f"{sf.apex_url}{path}", headers=dict(sf.headers), timeout=client.timeout
        )
        checks.append(
            apex_check(
                path, mapping.apex.method, response.status_code, _error_code(response)
            )
        )
    return checks


def run_checks(config: Mapping[str, Any]) -> list[Check]:
    """Every preflight check for one target-salesforce configuration."""
    try:
        mappings = [
            m
            for m in load_mappings(
                config.get("streams"), config.get("mappings_file")
            ).values()
            if not m.skip
        ]
    except MappingError as exc:
        return [failed("mappings", str(exc), "fix the mapping at the line named")]
    checks = [passed("mappings", f"{len(mappings)} stream mappings read")]
    client = SalesforceClient(config)
    try:
        sf = client.sf
    except (
        AuthError,
        TargetSalesforceError,
        SalesforceError,
        requests.RequestException,
    ) as exc:
        checks.append(
            failed(
                "login",
                str(exc),
                "check auth_flow, client_id, username, private_key and domain "
                "(docs/production.md, connected app)",
            )
        )
        return checks
    checks.append(passed("login", f"session on {client.instance_url}"))
    try:
        checks += _object_checks(client, [m for m in mappings if m.mode == "sobject"])
        checks += _apex_checks(client, mappings)
        try:
            checks.append(limits_check(sf.limits(), float(config["quota_percent"])))
        except SalesforceError as exc:
            checks.append(failed("api requests", f"GET /limits: {exc}", ASSIGN))
        try:
            rules = sf.query(DUPLICATE_QUERY).get("records") or []
            checks += duplicate_rule_checks(rules, created_objects(mappings))
        except SalesforceError as exc:
            checks.append(
                failed("duplicate rules", f"SOQL on DuplicateRule: {exc}", ASSIGN)
            )
    finally:
        client.session.close()
    return checks


# --------------------------------------------------------------------------- CLI


# The keys of one field spec (target_salesforce.mapping), to find where a dotted
# field name such as `Contact__r.CleverTap_Id__c` ends in a flattened path.
FIELD_SPEC_KEYS = frozenset(
    {"source", "value", "template", "now", "expr", "type", "default", "map"}
    | {"map_default"}
)


def streams_path(key: str) -> list[str]:
    """A flattened `streams` key split into its path; field names keep their dots.

    Meltano flattens the object setting in the environment; with
    `preflight_cli.unflatten` this undoes it: `{"nps.object": "Contact",
    "nps.fields.Id": "id"}` becomes `{"nps": {"object": "Contact", "fields":
    {"Id": "id"}}}`.
    """
    parts = key.split(".")
    if len(parts) < 3 or parts[1] != "fields":  # noqa: PLR2004 - stream.fields.<name>
        return parts
    rest = parts[2:]
    cut = next((i for i in range(1, len(rest)) if rest[i] in FIELD_SPEC_KEYS), None)
    if cut is None:
        return [*parts[:2], ".".join(rest)]
    return [*parts[:2], ".".join(rest[:cut]), *rest[cut:]]


def with_defaults(
    schema: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any]:
    """The settings with the schema's defaults filled in, as the SDK does.

    Args:
        schema: the plugin's config JSON schema (where defaults are declared).
        config: the given settings.
    """
    properties = schema.get("properties") or {}
    defaults = {k: p["default"] for k, p in properties.items() if "default" in p}
    return defaults | dict(config)


def config_loader(
    schema: Mapping[str, Any], prefix: str
) -> Callable[[click.Context], dict[str, Any]]:
    """Read the settings the way the SDK does: `--config` files, `ENV`, defaults.

    Args:
        schema: the plugin's config JSON schema.
        prefix: its environment variable prefix, e.g. `TARGET_SALESFORCE_`.
    """
    load = settings_loader(schema, prefix, "streams", streams_path)

    def load_with_defaults(ctx: click.Context) -> dict[str, Any]:
        return with_defaults(schema, load(ctx))

    return load_with_defaults


HELP = "Check the configuration against Salesforce (writes nothing) and exit."


def with_option(command: click.Command, schema: Mapping[str, Any]) -> click.Command:
    """The SDK's command plus `--preflight`; `schema` is the plugin's settings."""
    load = config_loader(schema, "TARGET_SALESFORCE_")
    return with_preflight_option(command, load, run_checks, HELP)
