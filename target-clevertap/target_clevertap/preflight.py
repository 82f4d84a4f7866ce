"""`target-clevertap --preflight`: check a configuration against CleverTap.

Checks, one output line each (`PASS`, `FAIL` with the fix, or `WARN`):

- credentials and region: `GET /getSchema?type=userProperties`, a read. CleverTap
  answers 401 both for wrong credentials and for the wrong regional host
  (shared docs, clevertap-api.md section 1), so after a 401 the same read is tried
  on the other regions' hosts (all *.api.clevertap.com): an answer there names the
  region to configure; no answer anywhere means the account id or passcode is wrong.
- time zone: `timezone` is a valid IANA zone (date-only fields are sent at 00:00
  there); unset, a warning. The API does not return the account's zone:
  tap-clevertap's preflight compares the same setting with exported events.
- custom profile keys: the profile keys the mappings write that are not CleverTap
  system keys, how many the account does not have yet, and the total against the
  256 custom profile keys an account may have (past it, new keys are dropped).

The exit status is 1 when any check fails. Nothing is uploaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from target_clevertap.client import (
    REGION_HOSTS,
    CleverTapClient,
    CleverTapError,
    RefusedError,
)
from target_clevertap.mapping_load import MappingError, load_mappings
from target_clevertap.payloads import account_zone
from target_clevertap.preflight_cli import (
    Check,
    settings_loader,
    with_preflight_option,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import click

    from target_clevertap.mapping import StreamMapping

MAX_CUSTOM_PROFILE_KEYS = 256
# CleverTap's predefined profile keys (shared docs, clevertap-api.md 2.5); MSG-*
# subscription flags are predefined too.
SYSTEM_PROFILE_KEYS = frozenset(
    {
        "Name",
        "Email",
        "Phone",
        "Gender",
        "Employed",
        "Education",
        "Married",
        "Age",
        "DOB",
        "Photo",
        "Tz",
        "Identity",
    }
)


def is_custom_key(key: str) -> bool:
    """Whether a profile key counts against the 256 custom profile keys."""
    return key not in SYSTEM_PROFILE_KEYS and not key.startswith("MSG-")


def mapped_profile_keys(
    mappings: Iterable[StreamMapping],
) -> tuple[set[str], list[str]]:
    """The profile keys the mappings write, and the streams whose keys are open.

    Returns:
        (keys, streams): keys named by `include`/`rename`/`constants`/`invert`;
        streams whose profile has no `include` list (every record field).
    """
    keys: set[str] = set()
    open_streams: list[str] = []
    for mapping in mappings:
        if mapping.skip or mapping.profile is None:
            continue
        props = mapping.profile.properties
        if props.include is None:
            open_streams.append(mapping.stream)
        else:
            keys.update(props.rename.get(f, f) for f in props.include)
        keys.update(props.constants)
        keys.update(key for outs in props.invert.values() for key in outs)
        keys.update(props.previous.values())
    return keys, sorted(open_streams)


def profile_keys_check(
    mapped: set[str], existing: Iterable[str], open_streams: list[str]
) -> Check:
    """The custom profile keys the mappings add, against CleverTap's 256."""
    have = {k for k in existing if is_custom_key(k)}
    wanted = {k for k in mapped if is_custom_key(k)}
    new = wanted - have
    total = len(have | wanted)
    detail = (
        f"the mappings write {len(wanted)} custom keys, {len(new)} new; the account "
        f"has {len(have)}; {total} of {MAX_CUSTOM_PROFILE_KEYS} after a run"
    )
    if open_streams:
        detail += f" (plus every field of {', '.join(open_streams)}: no include list)"
    if total > MAX_CUSTOM_PROFILE_KEYS:
        return Check(
            "custom profile keys",
            "FAIL",
            detail,
            "drop properties with `include`/`exclude` in the mappings; CleverTap "
            "drops keys past 256",
        )
    return Check("custom profile keys", "PASS", detail)


def timezone_check(name: object) -> Check:
    """The `timezone` setting: date-only fields are sent at 00:00 in that zone.

    CleverTap's API does not return the account's zone; tap-clevertap's preflight
    compares the same setting with exported events (meltano.yml gives both one value).

    Args:
        name: the configured `timezone` (None when unset).
    """
    label = "time zone"
    if name is None or not str(name).strip():
        return Check(
            label,
            "WARN",
            "timezone is not set: date-only fields (Birthdate, CloseDate) are sent "
            "at 00:00 UTC and show a day early in accounts west of UTC",
            "set timezone to the account's IANA zone (CleverTap dashboard: Settings "
            "> Account), the same value as tap-clevertap's",
        )
    try:
        account_zone(name)
    except ValueError as exc:
        return Check(label, "FAIL", str(exc), "use an IANA zone name")
    return Check(
        label,
        "PASS",
        f"timezone={name}: date-only fields are sent at 00:00 there (CleverTap's "
        "API does not tell the account's zone: tap-clevertap --preflight compares "
        "the same setting with exported events)",
    )


def credentials_check(
    region: str, api_url: str | None, error: str | None, answering: list[str]
) -> Check:
    """What the getSchema read (and the other regions' answers) say."""
    where = f"api_url {api_url}" if api_url else f"region {region}"
    if error is None:
        return Check(
            "credentials and region", "PASS", f"the account answers on {where}"
        )
    if answering:
        return Check(
            "credentials and region",
            "FAIL",
            f"{error}; the same credentials work in region {', '.join(answering)}",
            f"set region: {answering[0]} (the subdomain of your dashboard URL)",
        )
    return Check(
        "credentials and region",
        "FAIL",
        error,
        "check account_id and passcode (CleverTap dashboard: Settings > Project), "
        "and region (the subdomain of your dashboard URL)",
    )


def _client(
    config: Mapping[str, Any], region: str, api_url: str | None
) -> CleverTapClient:
    return CleverTapClient(
        account_id=str(config.get("account_id") or ""),
        passcode=str(config.get("passcode") or ""),
        region=region,
        api_url=api_url,
        timeout=float(config.get("request_timeout") or 30),
        max_tries=2,
    )


def read_properties(
    config: Mapping[str, Any], region: str, api_url: str | None
) -> tuple[list[str] | None, str | None, bool]:
    """The account's profile property names, or the error of the read.

    The flag is True when CleverTap took the credentials but refused the read
    (a 4xx other than 401: `/getSchema` is not in its public API reference).
    """
    client = _client(config, region, api_url)
    try:
        reply = client.get_schema("userProperties")
    except RefusedError as exc:
        return None, str(exc), True
    except CleverTapError as exc:
        return None, str(exc), False
    finally:
        client.close()
    props = reply.get("userProperties") or []
    return [str(p.get("name")) for p in props if isinstance(p, dict)], None, False


def run_checks(
    config: Mapping[str, Any], hosts: Mapping[str, str] = REGION_HOSTS
) -> list[Check]:
    """Every preflight check for one target-clevertap configuration.

    Args:
        config: the settings.
        hosts: region -> API host (tests point the regions at emulators).
    """
    region = str(config.get("region") or "eu1")
    api_url = config.get("api_url") or None
    checks: list[Check] = []
    try:
        mappings = load_mappings(config.get("mappings"), config.get("mappings_file"))
    except MappingError as exc:
        return [
            Check("mappings", "FAIL", str(exc), "fix the mapping at the line named")
        ]
    base = api_url or hosts.get(region)
    if base is None:
        fix = f"use one of {', '.join(hosts)}"
        return [
            Check("credentials and region", "FAIL", f"unknown region {region!r}", fix)
        ]
    existing, error, refused = read_properties(config, region, base)
    answering: list[str] = []
    if error is not None and not refused and not api_url:
        answering = [
            other
            for other, host in hosts.items()
            if other != region and read_properties(config, other, host)[1] is None
        ]
    if refused:
        where = f"api_url {api_url}" if api_url else f"region {region}"
        detail = (
            f"the account answers on {where} (no 401), but {error}; the custom "
            "profile keys the import adds cannot be counted against the 256"
        )
        checks.append(Check("credentials and region", "WARN", detail))
    else:
        checks.append(credentials_check(region, api_url, error, answering))
    checks.append(timezone_check(config.get("timezone")))
    if existing is not None:
        keys, open_streams = mapped_profile_keys(mappings.values())
        checks.append(profile_keys_check(keys, existing, open_streams))
    return checks


HELP = "Check the configuration against CleverTap (writes nothing) and exit."


def with_option(command: click.Command, schema: Mapping[str, Any]) -> click.Command:
    """The SDK's command plus `--preflight`; `schema` is the plugin's settings."""
    load = settings_loader(schema, "TARGET_CLEVERTAP_", "mappings")
    return with_preflight_option(command, load, run_checks, HELP)
