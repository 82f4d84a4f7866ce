"""The output and command-line part of `--preflight`, the same in every plugin.

Each plugin's `preflight` module runs its own checks; this module holds what they
share: the result line (`Check`), the report and exit status, reading the settings
the way the SDK does, and the `--preflight` click option. Every plugin ships its own
copy of this file so that it installs on its own; the copies are kept
byte-identical (tests/test_packages.py), so change all three together.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import click
from singer_sdk.configuration._dict_config import parse_environment_config

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

Settings = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Check:
    """One preflight result line."""

    name: str
    status: str  # PASS | FAIL | WARN
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        """Whether this check fails the preflight."""
        return self.status == "FAIL"

    def line(self) -> str:
        """`PASS name: detail` or `FAIL name: detail -> fix: ...`."""
        text = f"{self.status} {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


def report(checks: Iterable[Check], write: Callable[[str], object]) -> int:
    """Write one line per check and a summary; the exit status (1 if any failed)."""
    checks = list(checks)
    for check in checks:
        write(check.line())
    bad = sum(c.failed for c in checks)
    write(f"preflight: {len(checks) - bad} passed, {bad} failed")
    return 1 if bad else 0


def dotted(key: str) -> list[str]:
    """A flattened key split into its path at every dot."""
    return key.split(".")


def unflatten(value: object, split: Callable[[str], list[str]] = dotted) -> object:
    """Undo Meltano's flattening of an object setting.

    Meltano passes an object setting set in meltano.yml to the plugin's environment
    as one JSON object keyed by the dotted path of each leaf
    (`{"Contact.profile.identity.template": "SF_Contact_{Id}"}`), which `--config ENV`
    reads as is. A value with nested objects (or a JSON/YAML string) is left alone.

    Args:
        value: the setting's value.
        split: how a flattened key splits into its path.
    """
    if not isinstance(value, dict) or any(isinstance(v, dict) for v in value.values()):
        return value
    if not any("." in str(k) for k in value):
        return value
    out: dict[str, Any] = {}
    for key, leaf in value.items():
        *parents, last = split(str(key))
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = leaf
    return out


def settings_loader(
    schema: Mapping[str, Any],
    prefix: str,
    object_setting: str | None = None,
    split: Callable[[str], list[str]] = dotted,
) -> Callable[[click.Context], Settings]:
    """Read the settings the way the SDK does: `--config` files, then `ENV`.

    Args:
        schema: the plugin's config JSON schema.
        prefix: its environment variable prefix, e.g. `TAP_CLEVERTAP_`.
        object_setting: an object setting that Meltano flattens in the environment
            (unflattened after `--config ENV`, see `unflatten`).
        split: how that setting's flattened keys split into their path.
    """

    def load(ctx: click.Context) -> Settings:
        given = ctx.params.get("config")
        config = dict(getattr(given, "config", None) or {})
        if getattr(given, "parse_env", False):
            config |= parse_environment_config(dict(schema), prefix)
            if object_setting is not None and object_setting in config:
                config[object_setting] = unflatten(config[object_setting], split)
        return config

    return load


def with_preflight_option(
    command: click.Command,
    load_config: Callable[[click.Context], Settings],
    run: Callable[[Mapping[str, Any]], list[Check]],
    help_text: str,
) -> click.Command:
    """`command` plus the `--preflight` flag, which runs the checks and exits.

    Args:
        command: the plugin's click command (the SDK's `get_singer_command`).
        load_config: reads the `--config` settings (see `settings_loader`).
        run: the plugin's checks.
        help_text: the flag's `--help` line.
    """

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:  # noqa: FBT001 - click's callback signature
        if value:
            ctx.exit(report(run(load_config(ctx)), click.echo))

    command.params.append(
        click.Option(
            ["--preflight"],
            is_flag=True,
            expose_value=False,
            callback=callback,
            help=help_text,
        )
    )
    return command
