"""Second round of CPU shortcuts (bench P1, issue 18): same results, bounded caches.

The region choice of a calling code in steps against region by region, the
phone prefix cache's bound, compiled field plans against the walked plan, and an
identity cache that holds a 100k run's people (Opportunity intake lookups
of Contacts read nothing from the database).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import phonenumbers
import pytest
from target_clevertap import phones
from target_clevertap.exprlang import compile_expression
from target_clevertap.ledger import IDENTITY_CACHE_SIZE, StateStore


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

    def counting(sql: str, params: Any = ()) -> Any:
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
    compiled = compile_expression("changed(CloseDate)")
    record = {"CloseDate": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}
    assert not compiled(record, {"CloseDate": "2024-01-02T00:00:00+00:00"})
    assert compiled(record, {"CloseDate": "2024-01-03T00:00:00+00:00"})


# ------------------------------------------------------------ compiled field plans

_PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "Id": {"type": "string"},
        "Email": {"type": ["null", "string"]},
        "Phone": {"type": ["null", "string"]},
        "Title": {"type": ["null", "string"]},
        "Birthdate": {"anyOf": [{"type": "string", "format": "date-time"}]},
        "CreatedDate": {"anyOf": [{"type": "string", "format": "date-time"}]},
        "Score__c": {"type": ["null", "number"]},
        "Flag__c": {"type": ["null", "boolean"]},
        "MailingAddress": {"type": ["null", "object"]},
        "Tags__c": {"type": ["null", "array"]},
        "Long_" + "k" * 130: {"type": ["null", "string"]},
    },
}
_PLAN_VALUES: dict[str, list[object]] = {
    "Id": ["003A", "", None],
    "Email": [" Ann@Example.com ", None, "not an email"],
    "Phone": ["(415) 555-2671", "+44 20 7946 0958", None, "12"],
    "Title": ["Boss", "x" * 300, "é" * 300, None, 7, Decimal("2.5"), True],
    "Birthdate": ["1990-05-17T00:00:00.000000Z", None, "nope"],
    "CreatedDate": ["2024-01-02T09:30:15.500000Z", None, 5],
    "Score__c": [Decimal("2.50"), 3, 10**30, -4, 2.0, None, True, {"a": 1}],
    "Flag__c": [True, False, None],
    "MailingAddress": [{"city": "Austin", "postalCode": "78758"}, None, {"x": 1}],
    "Tags__c": [["a", "b"], None],
    "Long_" + "k" * 130: ["cut key", None],
}


def _walked(
    record: dict[str, Any], spec: Any, schema: Any, out: Any, *, profile: bool
) -> dict[str, Any]:
    """The field plan walked field by field (the loop the compiled plan replaces)."""
    from target_clevertap import properties as p  # noqa: PLC0415 - its internals
    from target_clevertap import values as v  # noqa: PLC0415

    props: dict[str, Any] = {}
    send_nulls = out.opts.null_values == "send"
    for name, out_key, convert in p._plan(spec, schema, profile=profile):
        value = record.get(name)
        if not out_key or type(value) is dict:
            p._put_field(
                props, name, value, spec=spec, schema=schema, out=out, profile=profile
            )
        elif value is None:
            if send_nulls:
                props[out_key] = None
        elif convert is None and type(value) is str:
            if len(value) > v.SHORT_TEXT:
                value = v._fit(value, v.MAX_VALUE_BYTES, "value", out_key, out)
            props[out_key] = value
        elif convert is None:
            props[out_key] = v._convert(out_key, value, None, "", out)
        else:
            props[out_key] = convert(value, out)
    return props


@pytest.mark.parametrize("null_values", ["skip", "send"])
@pytest.mark.parametrize("profile", [True, False])
def test_compiled_field_plan_gives_the_walked_plan_s_values_in_order(
    null_values: str, *, profile: bool
) -> None:
    from target_clevertap import properties as p  # noqa: PLC0415 - its internals
    from target_clevertap.mapping import PropertySpec  # noqa: PLC0415
    from target_clevertap.payloads import (  # noqa: PLC0415
        PayloadOptions,
        RecordReject,
        SchemaInfo,
        _Out,
    )

    rng = random.Random(f"{null_values}{profile}")  # noqa: S311 - test data
    schema = SchemaInfo.from_schema(_PLAN_SCHEMA)
    spec = PropertySpec(
        include=tuple(_PLAN_VALUES),
        rename={"Birthdate": "DOB", "Title": "Job Title"},
        types={"Tags__c": "multi"},
    )
    opts = PayloadOptions(
        default_phone_country="US",
        null_values=null_values,  # type: ignore[arg-type]
    )
    for _ in range(400):
        record = {
            f: rng.choice(v) for f, v in _PLAN_VALUES.items() if rng.random() < 0.9
        }
        outcomes: list[tuple[str, list[Any], list[str]]] = []
        for build in (p._record_values, _walked):
            warns: list[str] = []
            try:
                props = build(record, spec, schema, _Out(opts, warns), profile=profile)
                outcomes.append(("props", list(props.items()), warns))
            except RecordReject as exc:
                outcomes.append(("reject", [exc.code, exc.field, exc.message], warns))
        assert outcomes[0] == outcomes[1], record


def test_compiled_field_plan_is_made_once_per_stream_schema() -> None:
    from target_clevertap import properties as p  # noqa: PLC0415 - its internals
    from target_clevertap.mapping import PropertySpec  # noqa: PLC0415
    from target_clevertap.payloads import SchemaInfo  # noqa: PLC0415

    spec = PropertySpec(include=("Id", "Title"))
    schema = SchemaInfo.from_schema(_PLAN_SCHEMA)
    first = p._fill(spec, schema, profile=True)
    assert p._fill(spec, schema, profile=True) is first
    assert p._fill(spec, schema, profile=False) is not first
    assert len(spec.plans) == 2  # one per (schema, profile): bounded by the streams


def _no_general(*_args: object) -> None:
    """Never called: no field of the plan takes the general path."""


def test_field_names_are_literals_in_the_compiled_plan() -> None:
    from target_clevertap.field_plans import compile_plan  # noqa: PLC0415

    odd = "x'] = 1; import os; props['y"  # a field name is data, never code
    fill = compile_plan([(odd, odd, None)], lambda *_: None)
    props: dict[str, Any] = {}
    fill({odd: "v"}.get, props, None, False, None, None)  # type: ignore[arg-type]
    assert props == {odd: "v"}


# ------------------------------------------------------------------ store layout


def test_new_stores_keep_identity_rows_in_one_b_tree(tmp_path) -> None:
    import sqlite3  # noqa: PLC0415

    store = StateStore(tmp_path, "acct")
    store.remember("Contact", "003A", ["SF_Contact_003A"])
    store.remember_account("003A", "001A")
    store.link("Lead", "00QA", "Contact", "003A")
    store.close()
    path = next(tmp_path.glob("*.sqlite"))
    with sqlite3.connect(path) as db:
        rows = dict(
            db.execute("SELECT name, sql FROM sqlite_master WHERE type='table'")
        )
    for table in ("identities", "contact_account", "links"):
        assert rows[table].rstrip().endswith("WITHOUT ROWID"), table
    reopened = StateStore(tmp_path, "acct")
    assert reopened.lookup("Lead", "00QA") == ["SF_Contact_003A"]
    assert reopened.lookup("Account", "001A") == ["SF_Contact_003A"]
    reopened.close()


def test_stores_made_before_keep_their_tables_and_answer_the_same(tmp_path) -> None:
    import sqlite3  # noqa: PLC0415

    from target_clevertap.store_sql import SCHEMA  # noqa: PLC0415

    path = tmp_path / "target-clevertap-acct.sqlite"
    with sqlite3.connect(path) as db:  # the layout of earlier releases
        db.executescript(SCHEMA.format(int="INTEGER", real="REAL", keyed=""))
    store = StateStore(tmp_path, "acct")
    store.remember("Contact", "003A", ["SF_Contact_003A"])
    store.remember_account("003A", "001A")
    store.flush_identities()
    store.close()
    reopened = StateStore(tmp_path, "acct")
    assert reopened.lookup("Account", "001A") == ["SF_Contact_003A"]
    reopened.close()
    with sqlite3.connect(path) as db:
        sql = db.execute(
            "SELECT sql FROM sqlite_master WHERE name='identities'"
        ).fetchone()[0]
    assert "WITHOUT ROWID" not in sql


def test_new_store_is_created_in_one_transaction(tmp_path) -> None:
    import sqlite3  # noqa: PLC0415

    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite3, "connect", traced)
        StateStore(tmp_path, "acct").close()
    creates = [i for i, s in enumerate(statements) if "CREATE TABLE" in s]
    begins = [i for i, s in enumerate(statements) if s.strip(" ;\n").upper() == "BEGIN"]
    assert creates
    assert any(b < creates[0] for b in begins)  # all tables in one transaction


def test_known_tells_what_memory_holds_without_a_query(tmp_path) -> None:
    store = StateStore(tmp_path, "acct")
    store.remember("Opportunity", "006A", ["SF_Contact_003A"])
    assert store.known("Opportunity", "006A") == ["SF_Contact_003A"]  # pending
    store.flush_identities()
    assert store.known("Opportunity", "006A") == ["SF_Contact_003A"]  # cached
    store.remember("Task", "00TA", ["SF_Contact_003A"], cache=False)
    store.flush_identities()
    assert store.known("Task", "00TA") is None  # on disk only: not known
    assert store.lookup("Task", "00TA") == ["SF_Contact_003A"]
    store.close()
