"""A do-nothing singer-sdk target with every default: SimpleSingerReader, validation on.

The floor every SDK target pays before doing any work: `python noop_default.py
--config cfg.json --input in.singer`.
"""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink
from singer_sdk.target_base import Target
from typing_extensions import override


class NoopSink(BatchSink):
    """Collects each batch (the BatchSink default) and drops it."""

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        """Do nothing with the batch."""


class TargetNoopDefault(Target):
    """A target that validates and parses records, then discards them."""

    name = "target-noop-default"
    config_jsonschema = th.PropertiesList(
        th.Property("label", th.StringType, description="Unused."),
    ).to_dict()
    default_sink_class = NoopSink


if __name__ == "__main__":
    TargetNoopDefault.cli()
