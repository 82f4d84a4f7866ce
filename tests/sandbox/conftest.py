"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from simple_salesforce.api import Salesforce

if TYPE_CHECKING:
    from sandbox.salesforce.testing import SalesforceHandle

#: real Salesforce answers, each with its source (copied from ../shared/fixtures)
SF_RECORDINGS = Path(__file__).resolve().parents[1] / (
    "fixtures/target_salesforce/real_api_errors.json"
)


@pytest.fixture(scope="session")
def recorded_sf_errors() -> dict[str, Any]:
    """The recorded real Salesforce answers the emulator must give alike."""
    data: dict[str, Any] = json.loads(SF_RECORDINGS.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def sf(salesforce_emulator: SalesforceHandle) -> Salesforce:
    """A simple-salesforce client on the seeded emulator's access token."""
    return Salesforce(
        session_id=salesforce_emulator.access_token,
        instance_url=salesforce_emulator.base_url,
        session=salesforce_emulator.session(),
    )
