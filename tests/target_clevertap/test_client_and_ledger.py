"""The HTTP client (regions, TLS via REQUESTS_CA_BUNDLE, retries) and the ledger."""

from __future__ import annotations

import socket
import stat
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sandbox.proxy import running_proxy
from target_clevertap import ledger
from target_clevertap.client import (
    AmbiguousSendError,
    CleverTapClient,
    CleverTapError,
    base_url_for,
)
from target_clevertap.ledger import StateStore, create_private_file


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("eu1", "https://api.clevertap.com"),
        ("in1", "https://in1.api.clevertap.com"),
        ("us1", "https://us1.api.clevertap.com"),
        ("sg1", "https://sg1.api.clevertap.com"),
        ("aps3", "https://aps3.api.clevertap.com"),
        ("mec1", "https://mec1.api.clevertap.com"),
    ],
)
def test_regions_map_to_their_hosts(region: str, url: str) -> None:
    assert base_url_for(region, None) == url
    assert base_url_for(region, "http://127.0.0.1:9/") == "http://127.0.0.1:9"


def test_requests_ca_bundle_is_honoured_for_https(
    make_clevertap_emulator: Any, tls_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    emulator = make_clevertap_emulator(tls_files=tls_files)
    assert emulator.base_url.startswith("https://")
    config = emulator.plugin_config()
    client = CleverTapClient(
        account_id=config["account_id"],
        passcode=config["passcode"],
        api_url=config["api_url"],
        timeout=5,
        max_tries=1,
    )
    with pytest.raises(CleverTapError, match="TLS"):
        client.upload(
            [{"type": "profile", "identity": "u1", "profileData": {}}], idempotent=True
        )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca_cert))
    result = client.upload(
        [{"type": "profile", "identity": "u1", "profileData": {"a": 1}}],
        idempotent=True,
    )
    assert result.processed == 1
    assert emulator.profiles(identity="u1")


def test_connection_refused_is_retried_then_fails_clearly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = CleverTapClient(
        account_id="A", passcode="P", api_url=f"http://127.0.0.1:{port}", max_tries=3
    )
    with pytest.raises(CleverTapError, match="after 3 attempts"):
        client.upload([{"type": "event"}], idempotent=False)
    assert client.retries == 2


def test_uploads_share_one_keep_alive_session(clevertap_emulator: Any) -> None:
    config = clevertap_emulator.plugin_config()
    client = CleverTapClient(
        account_id=config["account_id"],
        passcode=config["passcode"],
        api_url=config["api_url"],
    )
    for i in range(3):
        client.upload(
            [{"type": "profile", "identity": f"u{i}", "profileData": {}}],
            idempotent=True,
        )
    adapter: Any = client.session.get_adapter(config["api_url"])
    pools = list(adapter.poolmanager.pools._container.values())
    assert len(pools) == 1
    assert pools[0].num_connections == 1


def test_read_timeout_on_events_is_ambiguous_not_retried(
    clevertap_emulator: Any,
) -> None:
    config = clevertap_emulator.plugin_config()
    clevertap_emulator.fault("slow_reply", path="/1/upload", seconds=1.5)
    client = CleverTapClient(
        account_id=config["account_id"],
        passcode=config["passcode"],
        api_url=config["api_url"],
        timeout=0.5,
    )
    event = {
        "type": "event",
        "identity": "u",
        "evtName": "E",
        "ts": 1704067200,
        "evtData": {},
    }
    with pytest.raises(AmbiguousSendError):
        client.upload([event], idempotent=False)
    assert client.retries == 0


def test_ledger_file_is_private_and_tracks_event_status(tmp_path: Any) -> None:
    store = StateStore(tmp_path / "state", "ACC/1")
    assert store.path is not None
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    store.mark_pending([("k1", "E", 1, "S"), ("k2", "E", 2, "S")])
    store.mark(["k1"], ledger.ACCEPTED)
    assert store.event_statuses(["k1", "k2", "k3"]) == {
        "k1": "accepted",
        "k2": "pending",
    }
    assert [row[0] for row in store.unsettled()] == ["k2"]
    store.forget(["k2"])
    assert store.unsettled() == []
    store.close()
    reopened = StateStore(tmp_path / "state", "ACC/1")
    assert reopened.count(ledger.ACCEPTED) == 1
    reopened.close()


def test_identity_map_resolves_who_accounts_and_conversions(tmp_path: Any) -> None:
    store = StateStore(tmp_path, "A")
    store.remember("Contact", "003A", ["SF_Contact_003A"])
    store.remember("Contact", "003B", ["SF_Contact_003B"])
    store.remember("Lead", "00QL", ["SF_Lead_00QL"])
    store.remember_account("003A", "001X")
    store.remember_account("003B", "001X")
    assert store.resolve("Who", "003A") == ["SF_Contact_003A"]
    assert store.resolve("Who", "00QL") == ["SF_Lead_00QL"]
    assert store.resolve("Account", "001X") == ["SF_Contact_003A", "SF_Contact_003B"]
    store.link("Lead", "00QL", "Contact", "003B")
    assert store.resolve("Who", "00QL") == ["SF_Contact_003B"]
    store.flush_identities()
    store.close()
    again = StateStore(tmp_path, "A")
    assert again.resolve("Lead", "00QL") == ["SF_Contact_003B"]
    assert again.resolve("Account", "001X") == ["SF_Contact_003A", "SF_Contact_003B"]
    again.close()


def test_identity_map_tells_never_seen_from_seen_with_nobody(tmp_path: Any) -> None:
    store = StateStore(tmp_path, "A")
    store.remember("Case", "500A", ["SF_Contact_003A"])
    store.remember("Opportunity", "006N", [])  # seen, names nobody
    store.remember("Task", "00TX", ["SF_Contact_003A"], cache=False)
    assert store.lookup("Case", "500A") == ["SF_Contact_003A"]
    assert store.lookup("Opportunity", "006N") == []
    assert store.lookup("Opportunity", "006UNSEEN") is None
    assert store.lookup("Task", "00TX") == ["SF_Contact_003A"]  # pending, on disk soon
    assert store.lookup("Who", "003UNSEEN") is None
    store.flush_identities()
    store.close()
    again = StateStore(tmp_path, "A")
    assert again.lookup("Opportunity", "006N") == []
    assert again.lookup("Task", "00TX") == ["SF_Contact_003A"]
    assert again.lookup("Case", "500A") == ["SF_Contact_003A"]
    again.close()


def test_tracked_values_are_kept_across_runs(tmp_path: Any) -> None:
    store = StateStore(tmp_path, "A")
    assert store.tracked("Opportunity", "006A") is None
    store.save_tracked([("Opportunity", "006A", 1704445200, {"StageName": "Won"})])
    store.close()
    again = StateStore(tmp_path, "A")
    assert again.tracked("Opportunity", "006A") == (1704445200, {"StageName": "Won"})
    again.close()


def test_identity_map_answers_from_disk_beyond_its_memory_bound(
    tmp_path: Any,
) -> None:
    store = StateStore(tmp_path, "A", cache_size=2)
    for n in range(5):
        store.remember("Contact", f"003{n}", [f"SF_Contact_003{n}"])
        store.remember_account(f"003{n}", "001X")
    store.link("Lead", "00QL", "Contact", "0031")
    store.flush_identities()
    store.remember("Contact", "0039", ["SF_Contact_0039"])
    assert store.resolve("Contact", "0030") == ["SF_Contact_0030"]  # evicted
    assert store.resolve("Lead", "00QL") == ["SF_Contact_0031"]
    assert store.resolve("Account", "001X") == [f"SF_Contact_003{n}" for n in range(5)]
    store.close()


def test_a_reference_missed_once_resolves_after_it_is_remembered(
    tmp_path: Any,
) -> None:
    # misses are remembered (a Lead's WhoId is first looked up as a Contact), so
    # a record that arrives later must clear that memory, flushed or not
    store = StateStore(tmp_path, "A", cache_size=1)
    assert store.lookup("Contact", "003LATE") is None
    store.remember("Contact", "003LATE", ["SF_Contact_003LATE"])
    assert store.lookup("Contact", "003LATE") == ["SF_Contact_003LATE"]
    store.flush_identities()
    store.remember("Contact", "0031", ["SF_Contact_0031"])  # evicts 003LATE
    assert store.lookup("Contact", "003LATE") == ["SF_Contact_003LATE"]  # from disk
    store.close()


def test_a_lead_link_missed_once_is_followed_once_made(tmp_path: Any) -> None:
    store = StateStore(tmp_path, "A", cache_size=1)
    store.link("Lead", "00Q1", "Contact", "0031")
    store.flush_identities()
    assert store._linked("Lead", "00Q2") is None
    store.link("Lead", "00Q2", "Contact", "0032")
    store.flush_identities()
    store.link("Lead", "00Q3", "Contact", "0033")  # evicts 00Q2 from the cache
    store.flush_identities()
    assert store._linked("Lead", "00Q2") == ("Contact", "0032")  # from disk
    store.close()


def test_contact_moved_to_another_account_leaves_the_old_one(tmp_path: Any) -> None:
    store = StateStore(tmp_path, "A")
    store.remember("Contact", "003A", ["SF_Contact_003A"])
    store.remember("Contact", "003B", ["SF_Contact_003B"])
    store.remember_account("003A", "001X")
    store.remember_account("003B", "001X")
    store.flush_identities()
    store.remember_account("003A", "001Y")  # pending, not yet on disk
    assert store.resolve("Account", "001X") == ["SF_Contact_003B"]
    assert store.resolve("Account", "001Y") == ["SF_Contact_003A"]
    store.remember_account("003A", "001Z")
    assert store.lookup("Account", "001Y") is None
    store.flush_identities()
    assert store.resolve("Account", "001X") == ["SF_Contact_003B"]
    assert store.resolve("Account", "001Z") == ["SF_Contact_003A"]
    store.close()


def test_dry_run_tracked_values_last_only_for_the_run(tmp_path: Any) -> None:
    store = StateStore(tmp_path, "A", dry_run=True)
    store.save_tracked([("Opportunity", "006A", 1704445200, {"StageName": "Won"})])
    assert store.tracked("Opportunity", "006A") == (1704445200, {"StageName": "Won"})
    store.close()
    again = StateStore(tmp_path, "A")
    assert again.tracked("Opportunity", "006A") is None
    again.close()


def test_ledger_is_safe_across_threads(tmp_path: Any) -> None:
    store = StateStore(tmp_path, "A")

    def work(n: int) -> None:
        keys = [(f"k{n}-{i}", "E", i, "S") for i in range(50)]
        store.mark_pending(keys)
        store.mark([k for k, *_ in keys], ledger.ACCEPTED)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count(ledger.ACCEPTED) == 400
    store.close()


def test_real_hostname_through_https_proxy_with_ca_bundle(
    make_clevertap_emulator: Any,
    tls_files: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in the sandbox (or behind a corporate TLS proxy): only env vars differ."""
    emulator = make_clevertap_emulator(tls_files=tls_files)
    address = urlsplit(emulator.base_url)
    routes = {"us1.api.clevertap.com": (address.hostname, address.port)}
    with running_proxy(routes) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.bundle))
        client = CleverTapClient(
            account_id=emulator.account_id,
            passcode=emulator.passcode,
            region="us1",
            timeout=5,
            max_tries=1,
        )
        assert client.base_url == "https://us1.api.clevertap.com"
        result = client.upload(
            [{"type": "profile", "identity": "via-proxy", "profileData": {"x": 1}}],
            idempotent=True,
        )
        client.close()
    assert result.processed == 1
    assert emulator.profiles(identity="via-proxy")


def test_private_file_helper_leaves_device_files_alone(tmp_path):
    link = tmp_path / "rejects.jsonl"
    link.symlink_to("/dev/null")
    before = stat.S_IMODE(Path("/dev/null").stat().st_mode)
    create_private_file(link)
    assert stat.S_IMODE(Path("/dev/null").stat().st_mode) == before
    regular = tmp_path / "ledger.db"
    regular.write_text("")
    regular.chmod(0o644)
    create_private_file(regular)
    assert stat.S_IMODE(regular.stat().st_mode) == 0o600
