"""A do-nothing singer-sdk target with the SDK's msgspec reader.

Run it with `validate_records: false` in its config (the bench does). The floor of
a target that only decodes messages:
`python noop_msgspec.py --config cfg.json --input in.singer`.
"""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.sinks import BatchSink
from singer_sdk.target_base import Target
from typing_extensions import override


class NoopSink(BatchSink):
    """Collects each batch (the BatchSink default) and drops it."""

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        """Do nothing with the batch."""


class TargetNoopMsgspec(Target):
    """A target that decodes records with msgspec and discards them."""

    name = "target-noop-msgspec"
    message_reader_class = MsgSpecReader
    config_jsonschema = th.PropertiesList(
        th.Property("label", th.StringType, description="Unused."),
    ).to_dict()
    default_sink_class = NoopSink


if __name__ == "__main__":
    TargetNoopMsgspec.cli()
