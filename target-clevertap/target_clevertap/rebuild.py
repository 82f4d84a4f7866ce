"""`target-clevertap-rebuild-ledger`: restore duplicate protection after a lost store.

The event ledger is what keeps a replay from sending an event twice. When the store
was lost (a worker's disk, a dropped database), CleverTap itself still holds every
event the target sent, each with its event key property (`ct_event_key`). This
command reads CleverTap's Get Events export for a window of days (the same reads
the target's reconciliation makes) and records every key it finds as accepted, so
the next run suppresses those events instead of sending them again:

    target-clevertap-rebuild-ledger --config target.json --from 2024-01-01
        --to 2024-01-31 [--event "Task Created" ...]

`--config ENV` reads the settings from `TARGET_CLEVERTAP_*` variables, as Meltano
sets them (`meltano invoke target-clevertap:rebuild-ledger --from ... --to ...`).
Without `--event`, the mappings' fixed event names are read (templated names and
`name_field` events cannot be listed: name them with `--event`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from singer_sdk.configuration._dict_config import parse_environment_config
from singer_sdk.exceptions import ConfigValidationError

from target_clevertap.client import CleverTapError
from target_clevertap.loader import Loader
from target_clevertap.payloads import account_zone, sanitise_key
from target_clevertap.target import TargetCleverTap

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from target_clevertap.mapping import StreamMapping

LOGGER = logging.getLogger("target-clevertap.rebuild")
ENV_PREFIX = "TARGET_CLEVERTAP_"
#: ledger rows written per transaction
CHUNK = 1000
#: export `ts` values this large are YYYYMMDDHHMMSS in the account's time zone
_DIGITS_TS = 10**13


def load_config(sources: Sequence[str]) -> dict[str, Any]:
    """Merge config files (and `ENV`: the `TARGET_CLEVERTAP_*` variables).

    Args:
        sources: paths, or `ENV`.

    Returns:
        The settings (not validated yet).
    """
    config: dict[str, Any] = {}
    for source in sources:
        if source == "ENV":
            schema = TargetCleverTap.config_jsonschema
            found = parse_environment_config(schema, ENV_PREFIX)
            for name, value in found.items():  # the SDK leaves numbers as text
                types = schema["properties"].get(name, {}).get("type") or []
                if "number" in types and isinstance(value, str):
                    found[name] = float(value)
            config.update(found)
        else:
            config.update(json.loads(Path(source).read_text(encoding="utf-8")))
    return config


def event_names(
    mappings: Mapping[str, StreamMapping], deleted_records: str
) -> tuple[list[str], list[str]]:
    """The event names the mappings send, and the ones that cannot be listed.

    Args:
        mappings: the configured mappings.
        deleted_records: the `deleted_records` setting.

    Returns:
        (fixed names, labels of templated or field-named events).
    """
    names: list[str] = []
    unknown: list[str] = []
    for stream, mapping in mappings.items():
        if mapping.skip:
            continue
        for spec in mapping.events:
            if spec.name is not None and not spec.name.fields:
                names.append(spec.name.text)
            else:
                unknown.append(f"{stream}: {spec.label()}")
        if deleted_records == "event":
            names.append(f"{sanitise_key(stream)} Deleted")
    return list(dict.fromkeys(names)), unknown


def export_ts(value: object, zone: dt.tzinfo) -> int:
    """Epoch seconds of an export record's `ts` (YYYYMMDDHHMMSS, or epoch).

    Args:
        value: the `ts` value.
        zone: the account's time zone.

    Returns:
        Epoch seconds (0 when missing).
    """
    try:
        number = int(str(value))
    except ValueError:
        return 0
    if number < _DIGITS_TS:
        return number
    when = dt.datetime.strptime(str(number), "%Y%m%d%H%M%S").replace(tzinfo=zone)
    return int(when.timestamp())


def found_keys(
    records: Iterable[dict[str, Any]], key_property: str, zone: dt.tzinfo
) -> Iterator[tuple[str, int]]:
    """(event key, ts) of the export records that carry the key property."""
    for record in records:
        props = record.get("event_props") or record.get("evtData") or {}
        key = props.get(key_property) if isinstance(props, dict) else None
        if isinstance(key, str) and key:
            yield key, export_ts(record.get("ts"), zone)


def rebuild(
    config: Mapping[str, Any], day_from: dt.date, day_to: dt.date, names: list[str]
) -> dict[str, int]:
    """Record every keyed event CleverTap holds in the window as accepted.

    Args:
        config: the validated target config.
        day_from: the first day (account time zone).
        day_to: the last day.
        names: event names to read (empty: the mappings' fixed names).

    Returns:
        Keys restored per event name.

    Raises:
        CleverTapError: when no event name is known, or an export fails.
    """
    target_config = {**config, "dry_run": False, "dry_run_remote": False}
    target = TargetCleverTap(config=target_config, parse_env_config=False)
    if not names:
        names, unknown = event_names(
            target.mappings, str(target.config["deleted_records"])
        )
        for label in unknown:
            LOGGER.warning(
                "Event %s has a templated name or a name field: name its events "
                "with --event to restore them too",
                label,
            )
    if not names:
        msg = "no event names to read: the mappings name none; use --event"
        raise CleverTapError(msg)
    zone = account_zone(config.get("timezone"))
    today = dt.datetime.now(zone).date()
    first, last = min(day_from, today), min(day_to, today)
    loader = Loader(dict(target.config), LOGGER)
    key_property = loader.ctx.options.event_key_property
    restored: dict[str, int] = {}
    try:
        store = loader.store
        for name in names:
            count = 0
            batch: list[tuple[str, str, int]] = []
            records = loader.client.iter_events(
                name, int(first.strftime("%Y%m%d")), int(last.strftime("%Y%m%d"))
            )
            for key, ts in found_keys(records, key_property, zone):
                batch.append((key, name, ts))
                if len(batch) >= CHUNK:
                    count += store.restore_accepted(batch)
                    batch = []
            count += store.restore_accepted(batch)
            restored[name] = count
            LOGGER.info(
                "Event %r: %d event keys recorded as sent (%s to %s)",
                name,
                count,
                first,
                last,
            )
    finally:
        loader.close()
    return restored


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        msg = f"not a YYYY-MM-DD date: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="target-clevertap-rebuild-ledger",
        description="Rebuild target-clevertap's event ledger for a window of days "
        "from CleverTap's Get Events export, so a lost state store does not "
        "send events again.",
    )
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        help="target config file (repeatable), or ENV for TARGET_CLEVERTAP_* vars",
    )
    parser.add_argument("--from", dest="day_from", type=_day, required=True)
    parser.add_argument("--to", dest="day_to", type=_day, required=True)
    parser.add_argument(
        "--event",
        action="append",
        default=[],
        help="event name to read (repeatable; default: the mappings' fixed names)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.day_from > args.day_to:
        parser.error("--from is after --to")
    try:
        restored = rebuild(
            load_config(args.config), args.day_from, args.day_to, list(args.event)
        )
    except (CleverTapError, ConfigValidationError, OSError, ValueError) as exc:
        LOGGER.error("target-clevertap-rebuild-ledger stopped: %s", exc)  # noqa: TRY400 - the message says it all
        return 1
    LOGGER.info(
        "Ledger rebuilt: %d event keys recorded as sent; the next run will not "
        "send these events again",
        sum(restored.values()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
