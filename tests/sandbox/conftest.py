"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from simple_salesforce.api import Salesforce

if TYPE_CHECKING:
    from sandbox.salesforce.testing import SalesforceHandle


@pytest.fixture
def sf(salesforce_emulator: SalesforceHandle) -> Salesforce:
    """A simple-salesforce client on the seeded emulator's access token."""
    return Salesforce(
        session_id=salesforce_emulator.access_token,
        instance_url=salesforce_emulator.base_url,
        session=salesforce_emulator.session(),
    )
