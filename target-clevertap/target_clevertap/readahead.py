"""Reading a piped input ahead, so the tap is not held up while a window is built.

A tap writes into a pipe that holds 64 KiB (about 50 Salesforce records). While
the target's main thread maps a window and hands it to the uploads, it reads
nothing, so the tap blocks on a full pipe and the whole pipeline runs at the
slower of the two, one after the other. `ReadAhead` reads the pipe on a thread of
its own into a bounded queue of chunks (`MAX_CHUNKS` x `CHUNK_BYTES` at most), so
the tap keeps writing while a window is built, and the main thread takes the lines
from memory. The thread only reads, decodes and splits lines (the GIL is released
while it waits on the pipe); the messages are still decoded and handled in input
order by the SDK's reader on the main thread.

Only a pipe (or socket) is read ahead: a regular file never holds a writer up.
"""

from __future__ import annotations

import codecs
import os
import queue
import stat
import threading
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: bytes asked of the pipe per read (a read returns what is there, up to this)
CHUNK_BYTES = 1 << 20
#: chunks read ahead at most: the memory the read-ahead may hold
MAX_CHUNKS = 16

_END = object()


def is_pipe(stream: IO[bytes]) -> bool:
    """Whether the stream is a pipe or a socket (something a writer can block on)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class ReadAhead:
    """The lines of a byte stream, read by a thread up to a bounded amount ahead."""

    def __init__(
        self,
        stream: IO[bytes],
        *,
        chunk_bytes: int = CHUNK_BYTES,
        max_chunks: int = MAX_CHUNKS,
    ) -> None:
        """Start nothing yet: the thread starts with the first line asked for.

        Args:
            stream: a binary stream (e.g. `sys.stdin.buffer`).
            chunk_bytes: bytes asked per read.
            max_chunks: chunks of lines held ahead at most.
        """
        self._stream = stream
        self._chunk_bytes = chunk_bytes
        self._chunks: queue.Queue[object] = queue.Queue(maxsize=max_chunks)
        self._thread: threading.Thread | None = None

    def __iter__(self) -> Iterator[str]:
        """Each line of the stream (without its newline), in order.

        Raises:
            BaseException: what reading or decoding the stream raised.
        """
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._fill, name="stdin-read-ahead", daemon=True
            )
            self._thread.start()
        while True:
            item = self._chunks.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, list):
                yield from item

    def _fill(self) -> None:
        """The thread: read, decode and split into lines until the end."""
        read = getattr(self._stream, "read1", self._stream.read)
        decoder = codecs.getincrementaldecoder("utf-8")()
        tail = ""
        try:
            while True:
                data = read(self._chunk_bytes)
                # split on "\n" only, as the SDK's line iteration does: a JSON
                # string may hold U+2028 and other separators `splitlines` splits on
                lines = (tail + decoder.decode(data, final=not data)).split("\n")
                tail = lines.pop()  # the unfinished last line ("" after a newline)
                if not data:
                    if tail:
                        lines.append(tail)
                    if lines:
                        self._chunks.put(lines)
                    break
                if lines:
                    self._chunks.put(lines)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._chunks.put(exc)
            return
        self._chunks.put(_END)
