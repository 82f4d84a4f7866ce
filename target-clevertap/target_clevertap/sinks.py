"""Sinks for target-clevertap."""

from __future__ import annotations

from typing import Any

from singer_sdk.sinks import BatchSink
from typing_extensions import override


class CleverTapSink(BatchSink):
    """Placeholder sink (issue 3 fills it)."""

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        """Not implemented yet."""
