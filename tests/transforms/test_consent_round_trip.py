"""Consent through both pipelines: the most restrictive choice wins, both ways.

A person unsubscribes in CleverTap; another opts out in Salesforce. Then the
import leg (Salesforce -> import preset -> target-clevertap) and the export leg
(tap-clevertap -> export preset -> target-salesforce) run twice each, against
the emulators. After every leg both people are still unsubscribed in CleverTap
and opted out in Salesforce: no run turns an opt-out back on.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMS = ROOT / "transforms"
FLAGS = ("MSG-email", "MSG-sms", "MSG-whatsapp")


class Legs:
    """The two pipelines between one Salesforce and one CleverTap emulator."""

    def __init__(
        self, sf: Any, ct: Any, tmp_path: Path, kit: Any, people: list[str]
    ) -> None:
        self.sf, self.ct, self.tmp, self.kit = sf, ct, tmp_path, kit
        self.people = people
        task = sf.records("Task")[0]
        # One task per person: each profile gets an event in tap-clevertap's range.
        self.tasks = [
            {**task, "Id": f"{task['Id'][:12]}{n:03d}", "WhoId": who}
            for n, who in enumerate(people)
        ]
        self.day = dt.date.fromisoformat(task["CreatedDate"][:10])
        self.runs = 0

    def contacts(self) -> dict[str, dict[str, Any]]:
        """The people's Contacts as Salesforce holds them now."""
        return {
            c["Id"]: c for c in self.sf.records("Contact") if c["Id"] in self.people
        }

    def profiles(self) -> dict[str, dict[str, Any]]:
        """The people's CleverTap profileData, by Contact Id."""
        return {
            p["identity"].removeprefix("SF_Contact_"): p["profileData"]
            for p in self.ct.profiles()
            if p["identity"].removeprefix("SF_Contact_") in self.people
        }

    def salesforce_to_clevertap(self) -> None:
        """The import leg, on the Contacts as Salesforce holds them now."""
        self.runs += 1
        rejects = self.tmp / f"ct-rejects-{self.runs}.jsonl"
        self.kit.run_target_clevertap(
            {
                **self.ct.plugin_config(),
                "mappings_file": str(TRANSFORMS / "salesforce_to_clevertap.yml"),
                "state_dir": str(self.tmp / "ct-state"),
                "rejects_path": str(rejects),
                "default_phone_country": "US",
            },
            self.kit.singer_lines(
                [("Contact", list(self.contacts().values())), ("Task", self.tasks)]
            ),
        )
        assert self.kit.read_jsonl(rejects) == []

    def clevertap_to_salesforce(self) -> None:
        """The export leg: tap-clevertap's profiles through the export preset."""
        self.runs += 1
        messages = self.kit.run_tap_clevertap(
            {
                **self.ct.plugin_config(),
                "start_date": f"{self.day.isoformat()}T00:00:00Z",
                "end_date": f"{self.day + dt.timedelta(days=2)}T00:00:00Z",
                "event_names": ["Task Created"],
                "window_days": 2,
                "campaign_lookahead_days": 0,
            }
        )
        text = "".join(
            json.dumps(m) + "\n"
            for m in messages
            if m["type"] in {"SCHEMA", "RECORD"} and m["stream"] == "profiles"
        )
        assert text.count('"RECORD"') == len(self.people), text
        rejects = self.tmp / f"sf-rejects-{self.runs}.jsonl"
        self.kit.run_target_salesforce(
            {
                "access_token": self.sf.access_token,
                "instance_url": self.sf.base_url,
                "mappings_file": str(TRANSFORMS / "clevertap_to_salesforce.yml"),
                "rejects_path": str(rejects),
                "retry_backoff_seconds": 0.001,
            },
            text,
        )
        assert self.kit.read_jsonl(rejects) == []

    def unsubscribe_in_clevertap(self, contact_id: str) -> None:
        """What CleverTap's unsubscribe page does: the flags become false."""
        body = {
            "d": [
                {
                    "type": "profile",
                    "identity": f"SF_Contact_{contact_id}",
                    "profileData": dict.fromkeys(FLAGS, False),
                }
            ]
        }
        reply = requests.post(
            f"{self.ct.base_url}/1/upload",
            json=body,
            headers=self.ct.headers(),
            timeout=30,
        )
        assert reply.json()["status"] == "success", reply.text

    def opt_out_in_salesforce(self, contact_id: str) -> None:
        """An admin (or a Salesforce form) records the opt-outs on the Contact."""
        reply = self.sf.session().patch(
            f"{self.sf.base_url}/services/data/v62.0/sobjects/Contact/{contact_id}",
            json={"HasOptedOutOfEmail": True, "DoNotCall": True},
            headers={"Authorization": f"Bearer {self.sf.access_token}"},
            timeout=30,
        )
        assert reply.status_code == 204, reply.text

    def assert_everyone_opted_out(self, when: str) -> None:
        """Both sides: every flag of every person is an opt-out."""
        profiles = self.profiles()
        for person in self.people:
            data = profiles[person]
            assert {f: data.get(f) for f in FLAGS} == dict.fromkeys(FLAGS, False), (
                when,
                person,
            )
        for person, contact in self.contacts().items():
            assert contact["HasOptedOutOfEmail"] is True, (when, person)
            assert contact["DoNotCall"] is True, (when, person)


@pytest.mark.slow
def test_opt_outs_travel_both_ways_and_no_run_turns_one_back_on(
    trusted_salesforce: Any,
    make_clevertap_emulator: Any,
    fast_retries: None,
    tmp_path: Path,
    kit: Any,
) -> None:
    del fast_retries
    sf = trusted_salesforce
    subscribed = [
        c
        for c in sf.records("Contact")
        if not c["HasOptedOutOfEmail"] and not c["DoNotCall"]
    ]
    in_clevertap, in_salesforce = subscribed[0]["Id"], subscribed[1]["Id"]
    legs = Legs(
        sf, make_clevertap_emulator(), tmp_path, kit, [in_clevertap, in_salesforce]
    )

    # Both people are imported while subscribed: nothing is sent for consent.
    legs.salesforce_to_clevertap()
    assert all(
        not any(key in data for key in FLAGS) for data in legs.profiles().values()
    )

    # One unsubscribes through a CleverTap email footer, the other opts out in
    # Salesforce.
    legs.unsubscribe_in_clevertap(in_clevertap)
    legs.opt_out_in_salesforce(in_salesforce)

    for turn in (1, 2):
        legs.salesforce_to_clevertap()
        # The CleverTap unsubscribe survives the import; the Salesforce opt-out
        # reached CleverTap.
        profiles = legs.profiles()
        assert {f: profiles[in_clevertap].get(f) for f in FLAGS} == dict.fromkeys(
            FLAGS, False
        ), turn
        assert {f: profiles[in_salesforce].get(f) for f in FLAGS} == dict.fromkeys(
            FLAGS, False
        ), turn
        legs.clevertap_to_salesforce()
        legs.assert_everyone_opted_out(f"after both legs, turn {turn}")


@pytest.mark.slow
def test_a_clevertap_opt_in_never_clears_a_salesforce_opt_out(
    trusted_salesforce: Any,
    make_clevertap_emulator: Any,
    fast_retries: None,
    tmp_path: Path,
    kit: Any,
) -> None:
    del fast_retries
    sf = trusted_salesforce
    person = next(
        c["Id"]
        for c in sf.records("Contact")
        if not c["HasOptedOutOfEmail"] and not c["DoNotCall"]
    )
    legs = Legs(sf, make_clevertap_emulator(), tmp_path, kit, [person])
    legs.opt_out_in_salesforce(person)
    legs.salesforce_to_clevertap()
    # The app (or a preference page) subscribes the person again in CleverTap.
    reply = requests.post(
        f"{legs.ct.base_url}/1/upload",
        json={
            "d": [
                {
                    "type": "profile",
                    "identity": f"SF_Contact_{person}",
                    "profileData": dict.fromkeys(FLAGS, True),
                }
            ]
        },
        headers=legs.ct.headers(),
        timeout=30,
    )
    assert reply.json()["status"] == "success", reply.text
    legs.clevertap_to_salesforce()
    contact = legs.contacts()[person]
    assert contact["HasOptedOutOfEmail"] is True
    assert contact["DoNotCall"] is True
    # And the next import restores the Salesforce opt-out in CleverTap.
    legs.salesforce_to_clevertap()
    data = legs.profiles()[person]
    assert {f: data.get(f) for f in FLAGS} == dict.fromkeys(FLAGS, False)
