"""P4 baseline: a bare requests loop over CleverTap's event export cursor pages.

POST /1/events.json for a cursor, then GET each page until there is no next_cursor,
writing every record as one JSON line. Usage:
`python export_requests.py --config export.json --out events.jsonl`, where the config
holds api_url, account_id, passcode, event_name, from, to and batch_size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import requests

IN_PROGRESS = 2


def export(config: dict[str, object], out_path: Path) -> int:
    """Walk the cursor pages and write the records.

    Args:
        config: the settings described in the module docstring.
        out_path: the JSON-lines output file.

    Returns:
        The number of records written.

    Raises:
        RuntimeError: when the API answers a failure.
    """
    base = str(config["api_url"]).rstrip("/")
    session = requests.Session()
    session.headers.update(
        {
            "X-CleverTap-Account-Id": str(config["account_id"]),
            "X-CleverTap-Passcode": str(config["passcode"]),
        }
    )
    query = {"event_name": config["event_name"], "from": config["from"]}
    query["to"] = config["to"]
    params = {
        "batch_size": str(config["batch_size"]),
        "events": "false",
        "app": "false",
    }
    first = session.post(
        f"{base}/1/events.json", params=params, json=query, timeout=120
    )
    first.raise_for_status()
    cursor = first.json().get("cursor")
    written = 0
    with out_path.open("w", encoding="utf-8") as out:
        while cursor:
            # cursors come percent-encoded: append them as they are
            page = session.get(f"{base}/1/events.json?cursor={cursor}", timeout=120)
            page.raise_for_status()
            body = page.json()
            if body.get("status") != "success":
                if body.get("code") == IN_PROGRESS:
                    time.sleep(0.2)
                    continue
                msg = f"export failed: {body.get('error')}"
                raise RuntimeError(msg)
            for record in body.get("records", []):
                out.write(json.dumps(record) + "\n")
                written += 1
            cursor = body.get("next_cursor")
    return written


def main() -> int:
    """Command line entry point.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    written = export(config, Path(args.out))
    print(f"{written} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
