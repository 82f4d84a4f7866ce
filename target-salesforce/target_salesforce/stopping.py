"""Stopping a target's run: on a signal, and on an error while reading.

The SDK's handler for SIGTERM and Ctrl-C drains every sink and writes STATE from
inside the handler, in the middle of whatever the main thread was doing; a
target that waits for uploads or jobs in flight (already taken off its queue)
would write STATE before they settled. Here the first signal only ends the input
after the message being handled, so what was read settles and STATE is written
the usual way (exit 0, as the SDK); a second one stops at once (exit 128 + the
signal, no STATE past the last one). An error that ends the reading first runs
the reader's `on_stop` (the target stops or settles what it has in flight).

Both targets carry this module byte-identical, so that each installs on its own;
tests/test_packages.py holds the copies together.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, TYPE_CHECKING, Any, cast

from singer_sdk.contrib.msgspec import MsgSpecReader
from typing_extensions import override

if TYPE_CHECKING:
    import logging
    from collections import Counter
    from collections.abc import Callable, Iterable, Iterator


def until(stop: threading.Event, lines: Iterable[str]) -> Iterator[str]:
    """The lines, ending once `stop` is set (checked after each line is handled)."""
    for line in lines:
        yield line
        if stop.is_set():
            return


class StoppableReader(MsgSpecReader):
    """The SDK's msgspec reader, with an input that a signal can end."""

    def __init__(self) -> None:
        """No stop asked, no stop hook until the target sets one."""
        super().__init__()
        #: called when reading ends with an error
        self.on_stop: Callable[[], None] | None = None
        #: set by a first signal: the input ends after the message being handled
        self.stop_reading = threading.Event()

    def input_lines(self, file_input: IO[str] | None) -> Iterable[str]:
        """The lines to read (a subclass may read a pipe ahead, for instance)."""
        return file_input or self.default_input

    @override
    def process_lines(
        self,
        file_input: IO[str] | None,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
    ) -> Counter[str]:
        """The SDK's loop over lines a signal can end; an error runs `on_stop`."""
        # the SDK only iterates its input: lines are all a reader needs
        lines = until(self.stop_reading, self.input_lines(file_input))
        try:
            return super().process_lines(cast("IO[str]", lines), callbacks)
        except BaseException:
            if self.on_stop is not None:
                self.on_stop()
            raise


def on_signal(reader: object, logger: logging.Logger, name: str, signum: int) -> None:
    """A first signal ends the input; a second one stops the run at once.

    Args:
        reader: the target's message reader.
        logger: the target's logger.
        name: the target's name, for the log line.
        signum: the signal.
    """
    if isinstance(reader, StoppableReader) and not reader.stop_reading.is_set():
        reader.stop_reading.set()
        logger.warning(
            "signal %d: the input ends after the message being handled; what was "
            "read is settled as far as it can be and STATE written for what "
            "settled (a second signal stops at once)",
            signum,
        )
        return
    logger.error("%s stopped by signal %d", name, signum)
    sys.exit(128 + signum)
