"""Sinks for target-salesforce."""

from __future__ import annotations

from typing import Any

from singer_sdk.sinks import BatchSink
from typing_extensions import override


class SalesforceSink(BatchSink):
    """Placeholder sink (issue 5 fills it)."""

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        """Not implemented yet."""
