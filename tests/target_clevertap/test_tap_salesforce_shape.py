"""Input shaped exactly like singer-io tap-salesforce 2.8.1 output lands as expected."""

from __future__ import annotations

from typing import Any


def _by_identity(emulator: Any) -> dict[str, dict[str, Any]]:
    return {p["identity"]: p["profileData"] for p in emulator.profiles()}


def _events(emulator: Any) -> list[tuple[str, str, int]]:
    return sorted((e["evtName"], e["identity"], e["ts"]) for e in emulator.events())


def test_tap_salesforce_output_lands_expected_profiles_and_events(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    run = run_target(ct_config, "tap_salesforce_output.singer")
    profiles = _by_identity(clevertap_emulator)
    assert set(profiles) == {
        "SF_Contact_003C0101",
        "SF_Contact_003C0102",
        "SF_Lead_00QL0101",
    }
    buyer = profiles["SF_Contact_003C0101"]
    assert buyer["Email"] == "person101@example.com"
    assert buyer["Phone"] == "+14155550101"
    assert buyer["DOB"] == {"$date": 479174400}  # 1985-03-09
    assert buyer["MailingCity"] == "Austin"
    assert buyer["Interests__c"] == ["Golf", "Wine"]
    assert buyer["MSG-email"] is True
    assert buyer["MSG-sms"] is False
    assert buyer["Opportunity Stage"] == "Closed Won"
    assert buyer["Opportunity Amount"] == 12500.5
    assert buyer["Opportunity Close Date"] == {"$date": 1705276800}  # 2024-01-15
    for contact in ("SF_Contact_003C0101", "SF_Contact_003C0102"):
        assert profiles[contact]["Account Industry"] == "Manufacturing"
        assert profiles[contact]["Account Annual Revenue"] == 5000000
    lead = profiles["SF_Lead_00QL0101"]
    assert lead["Lead Status"] == "Open - Not Contacted"
    assert lead["City"] == "Boston"  # Lead.Address -> City, as Salesforce names it
    assert lead["MSG-email"] is False

    buyer_id, second_id, lead_id = (
        "SF_Contact_003C0101",
        "SF_Contact_003C0102",
        "SF_Lead_00QL0101",
    )
    assert _events(clevertap_emulator) == sorted(
        [
            ("Opportunity Created", buyer_id, 1704704400),  # 2024-01-08T09:00Z
            ("Opportunity Won", buyer_id, 1705276800),  # CloseDate 2024-01-15
            ("Opportunity Stage Changed", buyer_id, 1704704400),
            ("Opportunity Stage Changed", buyer_id, 1705309200),
            ("Case Created", second_id, 1704873600),  # 2024-01-10T08:00Z
            ("Case Closed", second_id, 1705075200),  # 2024-01-12T16:00Z
            ("Task Created", buyer_id, 1704790800),
            ("Task Completed", buyer_id, 1704812400),
            ("Task Created", lead_id, 1704794400),
        ]
    )
    (won,) = clevertap_emulator.events(evtName="Opportunity Won")
    assert won["evtData"]["Amount"] == 12500.5
    assert len(won["evtData"]["ct_event_key"]) == 20
    assert read_rejects() == []
    contact_stats = run.stats("Contact")
    assert contact_stats["received"] == 3
    assert contact_stats["skipped"] == {"deleted": 1}
    # one STATE per record in, one STATE out: the last one, after everything settled
    assert len(run.states) == 1
    assert run.states[0]["bookmarks"]["OpportunityHistory"]["SystemModstamp"] == (
        "2024-01-15T09:00:00.000000Z"
    )


def test_tap_salesforce_replay_adds_no_events(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "tap_salesforce_output.singer")
    before = _events(clevertap_emulator)
    run_target(ct_config, "tap_salesforce_output.singer")
    assert _events(clevertap_emulator) == before
