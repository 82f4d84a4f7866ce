"""The singer-sdk standard target suite.

The suite's streams (`TestCamelcase`, `test:SpecialChars!in?attributes`, ...) have
no mapping, and no Salesforce object has their fields. The documented default for
an unmapped stream is `unmapped_streams: skip`: the SDK still parses, validates and
key-checks every message (so the invalid-schema, record-before-schema and
missing-key tests exercise real behaviour), the records are counted and nothing is
sent. No credentials are needed because nothing connects. Writing paths are
covered against the Salesforce emulator in test_emulator_*.py.
"""

from __future__ import annotations

from singer_sdk.testing import SuiteConfig, get_target_test_class
from target_salesforce.target import TargetSalesforce

TestTargetSalesforceStandard = get_target_test_class(
    TargetSalesforce,
    config={"unmapped_streams": "skip"},
    suite_config=SuiteConfig(),
    parse_env_config=False,
)
