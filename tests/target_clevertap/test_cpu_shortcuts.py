"""Second round of CPU shortcuts (bench P1, issue 18): same results, bounded caches.

Compiled `when:` conditions against the expression evaluator, the region choice of
a calling code in steps against region by region, the phone prefix cache's bound,
and an identity cache that holds a 100k run's people (Opportunity intake lookups
of Contacts read nothing from the database).
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from decimal import Decimal
from typing import Any

import phonenumbers
import pytest
from target_clevertap import phones
from target_clevertap.conditions import Condition, compile_condition
from target_clevertap.exprlang import ExpressionError, compile_expression
from target_clevertap.ledger import IDENTITY_CACHE_SIZE, StateStore

CONDITIONS = [
    # the preset's
    "ContactId is not None",
    "IsClosed == True and IsWon == True and ContactId is not None",
    "IsClosed == True and IsWon == False and ContactId is not None",
    "changed(StageName)",
    "IsClosed == True and ClosedDate is not None",
    "Field == 'Status'",
    "HasResponded == True and ContactId is None and LeadId is not None",
    # more of the language: chains, or/not, numbers, dates, lists, calls, records
    "Amount > 1000 or not IsWon",
    "0 < Amount <= 5000",
    "Amount == '12'",
    "CloseDate >= '2024-01-15'",
    "StageName in ['Won', 'Closed Won'] and previous(StageName) != StageName",
    "StageName not in ('Lost',)",
    "Amount + 1 > 2",
    "-Amount < 0",
    "coalesce(Amount, 0) > 10",
    "record.get('Amount') is not None",
    "_['StageName'] == 'Won'",
    "StageName.lower() == 'won'",
    "Address.city == 'Austin'",
    "config.get('flag') == True",
    "IsWon",
    "not (IsWon or IsClosed)",
    "Amount is None",
]

_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    1,
    12,
    Decimal("12.00"),
    2.5,
    "12",
    "abc",
    "",
    "Won",
    "won",
    "Status",
    "2024-01-15",
    "2024-01-16T10:00:00Z",
    {"city": "Austin"},
    [1, 2],
]
_FIELDS = [
    "ContactId",
    "LeadId",
    "IsClosed",
    "IsWon",
    "HasResponded",
    "ClosedDate",
    "Field",
    "Amount",
    "CloseDate",
    "StageName",
    "Address",
]


def _records(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(count):
        record = {f: rng.choice(_VALUES) for f in _FIELDS if rng.random() < 0.85}
        out.append(record)
    return out


def _outcome(func: Any, *args: Any) -> tuple[str, object]:  # noqa: ANN401 - any value
    try:
        return ("value", func(*args))
    except ExpressionError as exc:
        return ("error", str(exc))
    except AttributeError as exc:  # a method of a value of the wrong type
        return ("attribute error", str(exc))


@pytest.mark.parametrize("text", CONDITIONS)
def test_compiled_condition_gives_the_evaluator_s_values_and_errors(text: str) -> None:
    rng = random.Random(text)  # noqa: S311 - reproducible test data, not secrets
    general = compile_expression(text)
    compiled = compile_condition(compile_expression(text))
    assert isinstance(compiled, Condition)
    assert (compiled.text, compiled.names, compiled.fields, compiled.tracked) == (
        general.text,
        general.names,
        general.fields,
        general.tracked,
    )
    previous_values: list[dict[str, Any] | None] = [
        None,
        {},
        {"StageName": "Won"},
        {"StageName": "Lost", "Amount": 12},
    ]
    configs: list[dict[str, Any] | None] = [None, {"flag": True}]
    for record, previous, config in itertools.product(
        _records(rng, 150), previous_values, configs
    ):
        expected = _outcome(general.value, record, previous, config)
        got = _outcome(compiled.value, record, previous, config)
        assert got == expected, (text, record, previous, config)
        assert type(got[1]) is type(expected[1]), (text, record)
        if expected[0] == "value":
            assert compiled(record, previous, config) is bool(expected[1])


def _numbers(code: int, rng: random.Random) -> list[str]:
    """National numbers of a calling code: examples, edited examples, random."""
    out = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]:
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            digits = str(example.national_number)
            out.append(digits)
            for _ in range(3):
                tail = "".join(rng.choice("0123456789") for _ in range(4))
                out.append(digits[:-4] + tail)
    out += ["".join(rng.choice("0123456789") for _ in range(10)) for _ in range(30)]
    return out


def test_region_choice_in_steps_chooses_as_region_by_region() -> None:
    rng = random.Random(1812)  # noqa: S311 - reproducible test data, not secrets
    checked = 0
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for nsn in _numbers(code, rng):
            expected = phones._is_valid_by_region(code, nsn)
            assert phones._is_valid(code, nsn) is expected, (code, nsn)
            checked += 1
    assert checked > 5_000


def test_north_american_numbers_choose_their_own_region() -> None:
    # +1 is shared by 25 regions: Canada after the US, the Caribbean by area code
    assert phones.quick_e164("416-385-1179", "US") == "+14163851179"
    assert phones.quick_e164("+1 876 927 1234", None) == "+18769271234"  # Jamaica
    assert phones.quick_e164("(212) 618-5588", "US") == "+12126185588"


def test_phone_prefix_cache_is_bounded() -> None:
    assert phones._prefixed.cache_info().maxsize == 1024
    # keys are the first three digits: at most 1000 of them
    for prefix in range(1000):
        phones._prefixed(f"{prefix:03d}")
    assert phones._prefixed.cache_info().currsize <= 1000


def test_identity_cache_holds_a_100k_run_s_people(tmp_path) -> None:
    # the bench's 100k input: 40k Contacts then 25k Leads, then Opportunities
    # that look their Contact up at read time (each used to be a database read)
    store = StateStore(tmp_path, "acct")
    contacts = [f"003{i:015d}" for i in range(40_000)]
    for rec_id in contacts:
        store.remember("Contact", rec_id, [f"SF_Contact_{rec_id}"])
    store.flush_identities()
    for i in range(25_000):
        store.remember("Lead", f"00Q{i:015d}", [f"SF_Lead_00Q{i:015d}"])
    store.flush_identities()
    reads = []
    execute = store._sql.execute

    def counting(sql: str, params: Any = ()) -> Any:  # noqa: ANN401 - a cursor
        reads.append(sql)
        return execute(sql, params)

    store._sql.execute = counting  # type: ignore[method-assign]
    assert all(
        store.lookup("Contact", rec_id) == [f"SF_Contact_{rec_id}"]
        for rec_id in contacts
    )
    assert reads == []
    store.close()


def test_identity_cache_stays_bounded(tmp_path) -> None:
    store = StateStore(tmp_path, "acct", cache_size=3)
    for i in range(10):
        store.remember("Contact", str(i), [f"SF_Contact_{i}"])
    assert len(store._ident_cache) == 3
    assert IDENTITY_CACHE_SIZE <= 100_000  # P3: memory bounded by a fixed count
    store.close()


def test_changed_compares_tracked_values_by_value() -> None:
    compiled = compile_condition(compile_expression("changed(CloseDate)"))
    record = {"CloseDate": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}
    assert not compiled(record, {"CloseDate": "2024-01-02T00:00:00+00:00"})
    assert compiled(record, {"CloseDate": "2024-01-03T00:00:00+00:00"})
