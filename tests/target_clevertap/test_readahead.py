"""A piped input is read ahead on a thread: the writer is not held up, order kept."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from target_clevertap.readahead import ReadAhead, is_pipe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "target_clevertap"


def _writer(fd: int, data: bytes) -> threading.Thread:
    def write() -> None:
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_lines_come_whole_and_in_order_across_chunk_boundaries() -> None:
    # a 7-byte chunk cuts lines and multi-byte characters; U+2028 is not a newline
    lines = ['{"n": 1, "s": "köln"}', '{"n": 2, "s": "a\u2028b"}', "", '{"n": 3}']
    data = ("\n".join(lines)).encode()  # the last line has no newline
    got = list(ReadAhead(io.BufferedReader(io.BytesIO(data)), chunk_bytes=7))
    assert got == lines


def test_the_writer_finishes_while_the_reader_has_taken_one_line() -> None:
    # 400 KiB is six times what a pipe holds: without reading ahead the writer
    # would block until the reader took the lines
    line = b'{"type": "RECORD", "record": {"x": "' + b"y" * 1000 + b'"}}\n'
    read_fd, write_fd = os.pipe()
    writer = _writer(write_fd, line * 400)
    with os.fdopen(read_fd, "rb") as stream:
        lines = iter(ReadAhead(stream, chunk_bytes=64 * 1024, max_chunks=16))
        next(lines)
        writer.join(timeout=10)
        assert not writer.is_alive()
        assert sum(1 for _ in lines) == 399


def test_the_read_ahead_is_bounded() -> None:
    # at most max_chunks chunks ahead: a writer of much more waits for the reader
    read_fd, write_fd = os.pipe()
    writer = _writer(write_fd, b"x\n" * 2_000_000)  # 4 MB
    with os.fdopen(read_fd, "rb") as stream:
        lines = iter(ReadAhead(stream, chunk_bytes=4096, max_chunks=2))
        next(lines)
        writer.join(timeout=0.5)
        assert writer.is_alive()  # held: the read-ahead took only its bound
        assert sum(1 for _ in lines) == 1_999_999
    writer.join(timeout=10)


def test_a_read_error_reaches_the_reading_thread() -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, _buffer: object) -> int:
            msg = "disk gone"
            raise OSError(msg)

    with pytest.raises(OSError, match="disk gone"):
        list(ReadAhead(io.BufferedReader(Broken())))


def test_only_pipes_are_read_ahead(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as pipe, os.fdopen(write_fd, "wb"):
        assert is_pipe(pipe)
    path = tmp_path / "input.singer"
    path.write_bytes(b"")
    with path.open("rb") as regular:
        assert not is_pipe(regular)
    assert not is_pipe(io.BytesIO(b""))


def test_the_target_reads_a_piped_stdin_to_the_end(tmp_path: Path) -> None:
    # the whole command through a pipe: every record received, the STATE written
    config = tmp_path / "config.json"
    config.write_text(
        '{"account_id": "A", "passcode": "P", "dry_run": true, '
        f'"dry_run_path": "{tmp_path / "out.jsonl"}", '
        f'"state_dir": "{tmp_path / "state"}", '
        f'"rejects_path": "{tmp_path / "rejects.jsonl"}"}}'
    )
    data = (FIXTURES / "contacts_five.singer").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "target_clevertap", "--config", str(config)],
        input=data,
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert '"received": 5' in done.stderr.decode()
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 5
