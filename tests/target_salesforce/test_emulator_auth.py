"""Each login flow through the real login hostnames (CONNECT proxy, test CA)."""

from __future__ import annotations

from typing import Any

import certifi
import pytest


@pytest.mark.parametrize("flow", ["jwt", "client_credentials", "refresh_token"])
def test_login_flow_then_upsert(login_harness: Any, flow: str) -> None:
    config = login_harness.login_config(flow)
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert login_harness.contact("ct-test-1") is not None
    tokens = [
        r for r in login_harness.handle.requests_log() if "oauth2/token" in r["path"]
    ]
    assert len(tokens) == 1
    assert run.target.run.client.logins == 1


@pytest.mark.parametrize("oauth_grant", [False, True], ids=["soap", "oauth"])
def test_legacy_password_login_warns_about_the_2027_cutoff(
    login_harness: Any, caplog: pytest.LogCaptureFixture, oauth_grant: bool
) -> None:
    config = login_harness.login_config("password")
    if oauth_grant:
        config.update(
            client_id=login_harness.handle.client_id,
            client_secret=login_harness.handle.client_secret,
        )
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert login_harness.contact("ct-test-2") is not None
    warning = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert warning
    assert "2027-02-20" in warning[0].getMessage()
    assert login_harness.handle.password not in caplog.text


def test_soap_login_disabled_in_the_org_stops_with_salesforces_words_and_the_way_out(
    login_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # new orgs have "Enable SOAP API login()" off (help.salesforce.com 005132110)
    login_harness.handle.emulator.auth.soap_login_enabled = False
    config = login_harness.login_config("password")
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    error = str(run.error)
    assert "INVALID_OPERATION: SOAP API login() is disabled by default" in error
    assert "Use an OAuth flow: JWT bearer" in error
    assert run.states == []
    assert login_harness.contact("ct-test-2") is None
    assert login_harness.handle.password not in error + caplog.text


def test_blocked_oauth_password_flow_stops_with_the_causes_and_the_way_out(
    login_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # orgs created since Summer '23 block the OAuth username-password flow
    login_harness.handle.emulator.auth.oauth_password_flow_enabled = False
    config = login_harness.login_config("password")
    config.update(
        client_id=login_harness.handle.client_id,
        client_secret=login_harness.handle.client_secret,
    )
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    error = str(run.error)
    assert "invalid_grant: authentication failure" in error
    assert "Allow OAuth Username-Password Flows" in error
    assert "Use an OAuth flow: JWT bearer" in error
    assert run.states == []
    secrets = (login_harness.handle.password, login_harness.handle.client_secret)
    assert not any(secret in error + caplog.text for secret in secrets)


def test_client_credentials_on_login_domain_is_refused_clearly(
    login_harness: Any,
) -> None:
    config = login_harness.login_config("client_credentials", domain="login")
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert "My Domain" in str(run.error)
    assert run.states == []


def test_wrong_secret_fails_without_leaking_it(
    login_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = login_harness.login_config(
        "refresh_token",
        client_secret="s3cr3t-wrong",  # noqa: S106 - a deliberately wrong test secret
    )
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert "refresh-token login failed" in str(run.error)
    assert "s3cr3t-wrong" not in str(run.error)
    assert "s3cr3t-wrong" not in caplog.text
    assert login_harness.handle.refresh_token not in str(run.error)


def test_ca_bundle_setting_is_used_without_environment(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    config = harness.config(ca_bundle=harness.handle.ca_bundle)
    run = harness.run(config, harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert harness.contact("ct-test-1") is not None


def test_ca_bundle_setting_wins_over_a_wrong_environment_bundle(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A machine-wide bundle that does not hold the emulator's CA: requests'
    # environment merge would let it replace the configured bundle.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    config = harness.config(ca_bundle=harness.handle.ca_bundle)
    run = harness.run(config, harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert harness.contact("ct-test-2") is not None


def test_environment_bundle_applies_when_no_ca_bundle_is_set(harness: Any) -> None:
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert harness.contact("ct-test-1") is not None


def test_missing_ca_bundle_file_stops_with_a_clear_message(harness: Any) -> None:
    missing = str(harness.tmp_path / "no-such-bundle.pem")
    run = harness.run(
        harness.config(ca_bundle=missing), harness.fixture("nps_upsert_create.singer")
    )
    assert "ca_bundle" in str(run.error)
    assert missing in str(run.error)
    assert run.states == []


def test_without_any_trusted_ca_the_run_fails_tls(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert run.error is not None
    assert harness.contact("ct-test-1") is None
