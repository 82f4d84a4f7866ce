"""`identity_lookup: email`: new CRM people join the app profile that has their email.

The fixture `identity_lookup.singer` holds four new Contacts and a Task for each:
- person.one: one app profile with an identity -> written there;
- person.two: two app profiles -> rejected (identity_ambiguous), nothing written;
- person.three: no app profile -> SF_Contact_<Id> is created as without the setting;
- person.four: one app profile known by objectId only -> written by objectId.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest
from target_clevertap.client import CleverTapClient
from target_clevertap.identity_join import join_target
from target_clevertap.throttle import TokenBucket

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.target_clevertap.conftest import Run

    Lookup: TypeAlias = Callable[..., Run]

FIXTURE = "identity_lookup.singer"
APP_ONE = "app-user-1"
APP_FOUR_OBJECT_ID = "__a1b2c3d4e5f60718293a4b5c6d7e8f90"
LOOKUP_PATH = "/1/profile.json"


def _app_profiles(ct: Any) -> None:
    """The app's own profiles, made through the Upload API as an SDK app would."""
    records = [
        {
            "identity": APP_ONE,
            "type": "profile",
            "profileData": {"Email": "person.one@example.com", "Plan": "Gold"},
        },
        {
            "identity": "app-user-2a",
            "type": "profile",
            "profileData": {"Email": "person.two@example.com"},
        },
        {
            "identity": "app-user-2b",
            "type": "profile",
            "profileData": {"Email": "person.two@example.com"},
        },
        {
            "objectId": APP_FOUR_OBJECT_ID,
            "type": "profile",
            "profileData": {"Email": "person.four@example.com"},
        },
    ]
    reply = ct.api_post("/1/upload", {"d": records}).json()
    assert reply["status"] == "success", reply


def _lookups(ct: Any) -> list[dict[str, Any]]:
    return [r for r in ct.requests_log() if r["path"] == LOOKUP_PATH]


@pytest.fixture
def ct(clevertap_emulator: Any) -> Any:
    """The CleverTap emulator, holding the app's own profiles (`_app_profiles`)."""
    _app_profiles(clevertap_emulator)
    return clevertap_emulator


@pytest.fixture
def lookup(
    ct_config: dict[str, Any], run_target: Callable[[dict[str, Any], str], Run]
) -> Lookup:
    """Run identity_lookup.singer with `identity_lookup: email` (and any overrides)."""

    def run(**overrides: Any) -> Run:
        return run_target(
            {**ct_config, "identity_lookup": "email", **overrides}, FIXTURE
        )

    return run


def test_one_match_writes_to_the_app_profile(ct: Any, lookup: Lookup) -> None:
    run = lookup()
    [one] = ct.profiles(identity=APP_ONE)
    assert one["profileData"]["FirstName"] == "One"
    assert one["profileData"]["Plan"] == "Gold"  # the app's own data stays
    assert ct.profiles(identity="SF_Contact_003J0001") == []
    tasks = [e for e in ct.events(evtName="Task Created") if e["identity"] == APP_ONE]
    assert [t["evtData"]["Subject"] for t in tasks] == ["Call One"]
    assert run.stats("Contact")["joined_existing_profiles"] == 2


def test_one_match_without_identity_is_addressed_by_object_id(
    ct: Any, lookup: Lookup
) -> None:
    lookup()
    [four] = [p for p in ct.profiles() if p["objectId"] == APP_FOUR_OBJECT_ID]
    assert four["identity"] is None
    assert four["profileData"]["FirstName"] == "Four"
    assert ct.profiles(identity="SF_Contact_003J0004") == []
    tasks = [
        e
        for e in ct.events(evtName="Task Created")
        if e["objectId"] == APP_FOUR_OBJECT_ID
    ]
    assert [t["evtData"]["Subject"] for t in tasks] == ["Call Four"]


def test_several_matches_reject_the_person_and_their_records(
    ct: Any, lookup: Lookup, read_rejects: Callable[[], list[dict[str, Any]]]
) -> None:
    run = lookup()
    assert ct.profiles(identity="SF_Contact_003J0002") == []
    for app in ("app-user-2a", "app-user-2b"):
        [profile] = ct.profiles(identity=app)
        assert "FirstName" not in profile["profileData"]
    rejects = [r for r in read_rejects() if r["code"] == "identity_ambiguous"]
    assert sorted((r["stream"], r["key"]) for r in rejects) == [
        ("Contact", "003J0002"),
        ("Task", "00TJ0002"),
    ]
    for reject in rejects:
        assert "2 CleverTap profiles" in reject["message"]
        # the message names the count, never the other profiles or their emails
        assert "app-user-2" not in reject["message"]
        assert "@" not in reject["message"]
    assert run.stats("Contact")["rejected_by_code"] == {"identity_ambiguous": 1}


def test_no_match_creates_the_crm_profile(ct: Any, lookup: Lookup) -> None:
    lookup()
    [three] = ct.profiles(identity="SF_Contact_003J0003")
    assert three["profileData"]["Email"] == "person.three@example.com"
    assert [e["evtData"]["Subject"] for e in ct.events(identity=three["identity"])] == [
        "Call Three"
    ]


def test_lookups_are_cached_a_rerun_makes_none(ct: Any, lookup: Lookup) -> None:
    first = lookup()
    assert len(_lookups(ct)) == 4  # one per new person
    assert first.stats("Contact")["identity_lookups"] == 4
    # the ambiguous person is resolved in CleverTap (one of the two profiles
    # loses the email); only they are asked about again
    ct.api_post(
        "/1/upload",
        {
            "d": [
                {
                    "identity": "app-user-2b",
                    "type": "profile",
                    "profileData": {"Email": "someone.else@example.com"},
                }
            ]
        },
    )
    second = lookup()
    assert len(_lookups(ct)) == 5
    assert second.stats("Contact")["joined_existing_profiles"] == 1
    [two] = ct.profiles(identity="app-user-2a")
    assert two["profileData"]["FirstName"] == "Two"
    third = lookup()
    assert len(_lookups(ct)) == 5  # everyone is known: an incremental run asks nothing
    assert third.stats("Contact")["identity_lookups"] == 0
    # and the links hold: the rerun wrote to the same profiles again
    assert ct.profiles(identity="SF_Contact_003J0001") == []
    assert ct.profiles(identity="SF_Contact_003J0002") == []


def test_people_seen_before_the_setting_are_never_looked_up(
    ct: Any, lookup: Lookup
) -> None:
    lookup(identity_lookup="none")
    assert _lookups(ct) == []
    lookup()
    assert _lookups(ct) == []
    assert ct.profiles(identity="SF_Contact_003J0001") != []


def test_lookups_respect_the_rate_and_concurrency_bound(
    ct: Any, lookup: Lookup
) -> None:
    lookup(identity_lookup_rate=2)
    times = sorted(r["time"] for r in _lookups(ct))
    assert len(times) == 4
    # a burst of 3 (CleverTap's read concurrency), then 2 a second
    assert times[3] - times[0] >= 0.4
    # never over the 3 concurrent reads: the emulator would have answered 429
    assert all(r["status"] != 429 for r in ct.requests_log())


def test_token_bucket_spaces_calls_after_the_burst() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(4, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        bucket.acquire()
    assert waits == pytest.approx([0.25, 0.25, 0.25])
    now[0] += 10  # a pause refills only up to the burst
    bucket.acquire()
    bucket.acquire()
    bucket.acquire()
    assert waits[3:] == pytest.approx([0.25])


def test_join_target_prefers_identity_then_object_id() -> None:
    assert join_target({"identity": "u1", "objectId": "__x"}) == ("identity", "u1")
    assert join_target({"objectId": "__x"}) == ("objectId", "__x")
    assert join_target({"platformInfo": [{"objectId": "__y"}]}) == ("objectId", "__y")
    assert join_target({"email": "a@b.c"}) is None


@pytest.mark.parametrize(
    ("status", "body", "count"),
    [
        (200, {"status": "success", "record": {"identity": "u1"}}, 1),
        (200, {"status": "success", "record": [{"identity": "a"}, {}, "x"]}, 2),
        (200, {"status": "success", "record": None}, 0),
        (200, {"status": "success"}, 0),
        (200, {"status": "fail", "error": "Profile not found"}, 0),
        (404, {"status": "fail", "error": "Profile not found", "code": 404}, 0),
    ],
)
def test_profile_lookup_answers(
    monkeypatch: pytest.MonkeyPatch, status: int, body: dict[str, Any], count: int
) -> None:
    client = CleverTapClient(account_id="A", passcode="P", api_url="http://127.0.0.1:9")

    class Reply:
        status_code = status

        @staticmethod
        def json() -> dict[str, Any]:
            return body

    seen: dict[str, Any] = {}

    def request(method: str, url: str, **kwargs: Any) -> Reply:
        seen.update(kwargs, method=method, url=url)
        return Reply()

    monkeypatch.setattr(client.session, "request", request)
    started = time.monotonic()
    assert len(client.profiles_by_email("a@example.com")) == count
    assert time.monotonic() - started < 1
    assert seen["url"].endswith("/1/profile.json")
    assert seen["params"] == {"email": "a@example.com"}
    assert "Content-Type" not in seen["headers"]  # none on GET, as documented


def test_profiles_the_crm_import_made_are_never_joined(ct: Any, lookup: Lookup) -> None:
    # A Lead profile of the same email (e.g. the Lead converted into this Contact)
    # is the import's own: lead conversion links it, the lookup must not join it.
    imported = [
        {
            "identity": identity,
            "type": "profile",
            "profileData": {"Email": email, "SF Object": "Lead"},
        }
        for identity, email in (
            ("SF_Lead_00QJ0001", "person.one@example.com"),
            ("SF_Lead_00QJ0003", "person.three@example.com"),
        )
    ]
    assert ct.api_post("/1/upload", {"d": imported}).json()["status"] == "success"
    # the test mappings make Lead profiles with `template: "SF_Lead_{Id}"`
    run = lookup()
    # one app profile and the import's own Lead profile: joins the app's, no ambiguity
    [one] = ct.profiles(identity=APP_ONE)
    assert one["profileData"]["FirstName"] == "One"
    # only the import's own Lead profile: not a match, the Contact's profile is made
    [three] = ct.profiles(identity="SF_Contact_003J0003")
    assert three["profileData"]["FirstName"] == "Three"
    [lead] = ct.profiles(identity="SF_Lead_00QJ0003")
    assert "FirstName" not in lead["profileData"]
    assert run.stats("Contact")["rejected_by_code"] == {"identity_ambiguous": 1}
