"""Every recorded /1/upload reply of the real CleverTap, replayed through the parser.

The recordings (tests/fixtures/target_clevertap/real_upload_replies.json, copied
with their source from the shared real-API fixtures) hold three shapes of
`unprocessed` entries; each must map to the right record with the right code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from target_clevertap.client import CleverTapClient, CleverTapError
from target_clevertap.replies import loose, match_unprocessed

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "target_clevertap"
RECORDINGS = json.loads((FIXTURE / "real_upload_replies.json").read_text())[
    "recordings"
]
IDS = [f"rec{i}" for i in range(len(RECORDINGS))]
_NUMBER = re.compile(r"\s*Skipped record number\s*:\s*\d+", re.IGNORECASE)


def _client_answering(status: int, body: str) -> CleverTapClient:
    client = CleverTapClient(
        account_id="A", passcode="P", api_url="http://127.0.0.1:9", max_tries=1
    )

    def reply(*_args: Any, **_kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = body.encode()
        return response

    client._request = reply  # type: ignore[method-assign]
    return client


def _outcomes(records: list[dict[str, Any]], result: Any) -> list[str]:
    out = ["accepted"] * len(records)
    for rej in result.rejections:
        out[rej.position] = rej.code
    return out


@pytest.mark.parametrize(
    "rec",
    RECORDINGS,
    ids=[f"{i}-{r['recorded_at'][5:16]}" for i, r in enumerate(RECORDINGS)],
)
def test_every_recorded_upload_reply_maps_each_record_to_its_outcome(
    rec: dict[str, Any],
) -> None:
    records = json.loads(rec["request_body"])["d"]
    client = _client_answering(rec["status"], rec["response_body"])
    if rec["expected"] is None:  # the recorded 401: the run stops, clearly
        with pytest.raises(CleverTapError, match="401"):
            client.upload(records, idempotent=True)
        return
    result = client.upload(records, idempotent=True)
    assert not result.unmatched
    assert _outcomes(records, result) == rec["expected"]
    for rej in result.rejections:
        assert "Skipped record number" not in rej.message
        assert rej.message


@pytest.mark.parametrize(
    "rec",
    [
        pytest.param(r, id=i)
        for i, r in zip(IDS, RECORDINGS, strict=True)
        if r["expected"] and set(r["expected"]) != {"accepted"}
    ],
)
def test_entries_without_a_record_number_match_by_the_rewritten_echo(
    rec: dict[str, Any],
) -> None:
    """The echo is rewritten by CleverTap (Phone as a number, identity as text)."""
    records = json.loads(rec["request_body"])["d"]
    entries = json.loads(rec["response_body"])["unprocessed"]
    stripped = []
    for entry in entries:
        if "error" in entry:
            stripped.append({**entry, "error": _NUMBER.sub("", entry["error"])})
        else:
            ((key, message),) = entry.items()
            stripped.append({key: _NUMBER.sub("", message)})
    matched = match_unprocessed(stripped, records)
    outcomes = ["accepted"] * len(records)
    for rej in matched.rejections:
        outcomes[rej.position] = rej.code
    # two identical records (same identity) may swap; the codes per record hold
    assert sorted(outcomes) == sorted(rec["expected"])
    assert not matched.unmatched


def test_the_echo_rewrites_seen_in_recordings_compare_equal() -> None:
    sent = {"identity": 18, "profileData": {"identity": 18, "Phone": "+35922333232"}}
    echoed = {"identity": "18", "profileData": {"identity": "18", "Phone": 35922333232}}
    assert loose(sent) == loose(echoed)


def test_an_entry_that_matches_nothing_is_reported_not_fatal() -> None:
    records = [{"type": "event", "identity": "a", "evtName": "x", "evtData": {}}]
    body = json.dumps(
        {
            "status": "partial",
            "processed": 0,
            "unprocessed": [{"status": "fail", "code": 555, "error": "boom"}],
        }
    )
    result = _client_answering(200, body).upload(records, idempotent=False)
    assert result.rejections == []
    assert [(u.code, u.message) for u in result.unmatched] == [("555", "boom")]
