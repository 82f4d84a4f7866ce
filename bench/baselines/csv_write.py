"""P5 baseline: the rows of a Singer stream written to one CSV file with `csv`.

What a Bulk 2.0 load costs at least on the client: read the Singer messages from
stdin, and write each RECORD's fields as a CSV row. Usage:
`python csv_write.py --out rows.csv < input.singer`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


def write_csv(lines: Iterable[str], out_path: Path) -> int:
    """Write the RECORD rows of Singer lines to a CSV file.

    Args:
        lines: an iterable of Singer message lines.
        out_path: the CSV file.

    Returns:
        The number of rows written.
    """
    rows = 0
    writer: csv.DictWriter[str] | None = None
    with out_path.open("w", encoding="utf-8", newline="") as out:
        for line in lines:
            message = json.loads(line)
            if message.get("type") != "RECORD":
                continue
            record = message["record"]
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(record))
                writer.writeheader()
            writer.writerow(record)
            rows += 1
    return rows


def main() -> int:
    """Command line entry point.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = write_csv(sys.stdin, Path(args.out))
    print(f"{rows} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
