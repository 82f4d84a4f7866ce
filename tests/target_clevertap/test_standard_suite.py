"""The singer-sdk standard target tests, run against the CleverTap emulator."""

from __future__ import annotations

import importlib.resources
from typing import Any

import pytest
from singer_sdk.testing import SuiteConfig, TargetTestRunner, get_target_test_class
from target_clevertap.target import TargetCleverTap

_KEYS = {
    "test_array_data": "id",
    "TestCamelcase": "Id",
    "ForecastingTypeToCategory": "Id",
    "test_duplicate_records": "id",
    "test_strings": "id",
    "test_strings_in_arrays": "id",
    "test_strings_in_objects": "id",
    "test_optional_attributes": "id",
    "example_stream": "id",
    "record_missing_fields": "id",
    "test_schema_updates": "id",
    "test:SpecialChars!in?attributes": "_id",
    "test_locations": "id",
    "test_users": "id",
    "test_user_in_location": "id",
}
# Every suite stream that has a key becomes profiles, so the suite really uploads.
MAPPINGS = {
    stream: {"profile": {"identity": {"template": f"std_{{{key}}}"}}}
    for stream, key in _KEYS.items()
}

# Placeholder config: each test's runner (below) points at its own emulator.
_StandardTests = get_target_test_class(
    TargetCleverTap,
    config={"account_id": "x", "passcode": "y", "dry_run": True},
    suite_config=SuiteConfig(),
    parse_env_config=False,
)


# get_target_test_class builds the base class at run time, which mypy cannot see.
class TestTargetCleverTapStandard(_StandardTests):  # type: ignore[misc,valid-type]
    """Every default test; none is skipped.

    Left out, as in the SDK's own default suite: TargetMultipleStateMessages (the SDK
    writes STATE only at full drains) and TargetRecordMissingRequiredProperty (here
    such a record becomes a reject with a reason instead of an exception; see
    test_schema_invalid_record_is_a_reject_not_a_crash).
    """

    @pytest.fixture
    def runner(self, clevertap_emulator: Any, tmp_path: Any) -> TargetTestRunner:
        config = {
            **clevertap_emulator.plugin_config(),
            "state_dir": str(tmp_path / "state"),
            "rejects_path": str(tmp_path / "rejects.jsonl"),
            "mappings": MAPPINGS,
        }
        return TargetTestRunner(
            target_class=TargetCleverTap,
            config=config,
            suite_config=SuiteConfig(),
            parse_env_config=False,
        )


def test_standard_streams_land_as_profiles_with_safe_keys(
    clevertap_emulator: Any, tmp_path: Any
) -> None:
    source = importlib.resources.files("singer_sdk.testing") / "target_test_streams"
    path = source / "special_chars_in_attributes.singer"
    runner = TargetTestRunner(
        target_class=TargetCleverTap,
        config={
            **clevertap_emulator.plugin_config(),
            "state_dir": str(tmp_path / "state"),
            "rejects_path": str(tmp_path / "rejects.jsonl"),
            "mappings": MAPPINGS,
        },
        input_filepath=path,
        parse_env_config=False,
    )
    runner.sync_all()
    profiles = clevertap_emulator.profiles()
    assert [p["identity"] for p in profiles] == ["std_a2e98886"]
    assert profiles[0]["profileData"]["d"] == (
        '{"env":"prod","agent:type":"desktop","agent:os:version":"10.13.1"}'
    )
