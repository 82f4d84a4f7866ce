"""Per-record validation of `/1/upload` records, with CleverTap's error codes.

Pure functions: a record goes in, either a `RecordError` or a normalised operation
comes out. Storing is done elsewhere (`upload.py`).
"""

from __future__ import annotations

import functools
import re
import time
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

MAX_KEY_BYTES = 120
MAX_VALUE_BYTES = 512
MAX_MULTI_VALUES = 100
MAX_IDENTITY_CHARS = 1024
MAX_CHARGED_ITEMS = 256
MAX_EPOCH_SECONDS = 32_503_680_000  # 3000-01-01; larger values are milliseconds
DEFAULT_MAX_EVENT_PROPERTIES = 100
# Text this short is within MAX_VALUE_BYTES whatever it holds (4 UTF-8 bytes at most).
_SHORT_TEXT_CHARS = MAX_VALUE_BYTES // 4
_PLAIN_TYPES = frozenset({int, float, bool, type(None)})

IDENTIFIER_FIELDS = ("identity", "objectId", "FBID", "GPID")

# The texts of 514-520, 523 and 525 are the ones real CleverTap answered (recorded
# in tests/fixtures/target_clevertap/real_upload_replies.json); the others follow
# the docs' api-errors list.
MESSAGES = {
    509: "Event name is mandatory.",
    512: "Invalid event structure.",
    513: "Raised a restricted system event.",
    514: "Profile data is incorrect. Gender needs to be M/F.",
    515: "Profile data is incorrect. Email is not valid.",
    516: "Profile data is incorrect. Phone number is not valid.",
    517: "Profile data is incorrect. Employed needs to be Y/N.",
    518: "Profile data is incorrect. Education needs to be School/College/Graduate..",
    519: "Profile data is incorrect. Married needs to be Y/N.",
    520: "Profile data is incorrect. Age is invalid.",
    522: "Event properties limit exceeded.",
    523: "'identity' or 'fbId' or 'gpId' or 'objectId' is necessary under 120 chars "
    "to identify the user.",
    524: "Data is neither event nor profile.",
    525: "Timestamp should be present in the Unix Epoch format.",
    526: "objectId is invalid.",
    528: "Raised a discarded event.",
    530: "Invalid objectId.",
    531: "Invalid token data.",
    532: "Token id is missing.",
    533: "Token type is missing.",
    534: "Token type is not valid for the objectId.",
    555: "Miscellaneous server error.",
}

RESTRICTED_EVENTS = frozenset(
    name.replace(" ", "").lower()
    for name in (
        "Notification Sent",
        "Notification Viewed",
        "Notification Clicked",
        "Notification Delivered",
        "Notification Replied",
        "UTM Visited",
        "App Launched",
        "App Uninstalled",
        "App Version Changed",
        "Stayed",
        "Reply Sent",
        "Experiment Rendered",
        "Reachable By",
        "Identity Reset",
        "Identity Set",
        "Identity Error",
    )
)

PLACEHOLDER_IDENTITIES = frozenset(
    {
        "undefined",
        "null",
        "na",
        "n/a",
        "0",
        "nil",
        "-1",
        "inf",
        "nan",
        "empty",
        "none",
        "xxxxxx",
    }
)

_PROHIBITED = frozenset("%><!|&.:;$'\"\\")
_PROFILE_PROHIBITED = _PROHIBITED | {"#"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_OBJECT_ID = re.compile(r"^[A-Za-z0-9_\-:=+/]{1,1024}$")
_DATE = re.compile(r"^\$D_(-?\d+)$")
_OPERATORS = frozenset({"$add", "$remove", "$set", "$incr", "$decr", "$delete"})
_TOKEN_TYPES = frozenset({"fcm", "gcm", "apns", "wns", "mpns", "chrome"})


def event_key(name: str) -> str:
    """The case- and space-insensitive key of an event name."""
    return name.replace(" ", "").lower()


class RecordError(Exception):
    """A record failed validation with a CleverTap error code."""

    def __init__(self, code: int, detail: str = "") -> None:
        """Record the code and an optional detail appended to the standard message."""
        self.code = code
        base = MESSAGES.get(code, "Record rejected.")
        self.message = f"{base} {detail}".strip() if detail else base
        super().__init__(self.message)


# Named tuples rather than frozen dataclasses: as immutable, and cheaper to build
# (one of each is built per uploaded record).
class Identifier(NamedTuple):
    """How a record names its profile: the field and its value."""

    field: str
    value: str


class ProfileOp(NamedTuple):
    """A validated profile upsert.

    `plain` is True when no property is an operator (only values, dates included),
    so the properties can be merged with one `dict.update`.
    """

    who: Identifier
    ts: int
    properties: dict[str, Any]
    plain: bool = False


class EventOp(NamedTuple):
    """A validated event."""

    who: Identifier
    ts: int
    name: str
    data: dict[str, Any]


class TokenOp(NamedTuple):
    """A validated device token."""

    object_id: str
    token_id: str
    token_type: str


Operation = ProfileOp | EventOp | TokenOp


def _over(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes in UTF-8 (4 bytes at most each)."""
    return len(text) > limit // 4 and len(text.encode("utf-8")) > limit


def _identifier(record: dict[str, Any]) -> Identifier:
    for field in IDENTIFIER_FIELDS:
        if field not in record or record[field] is None:
            continue
        value = record[field]
        if isinstance(value, bool) or not isinstance(value, str | int):
            code = 526 if field == "objectId" else 523
            raise RecordError(code, f"{field} must be a string.")
        text = str(value).strip()
        if not text:
            continue
        if len(text) >= MAX_IDENTITY_CHARS:
            code = 526 if field == "objectId" else 523
            raise RecordError(
                code, "Keep identity / fbId / gpId / objectId under 1024 chars."
            )
        if field == "objectId" and not _OBJECT_ID.match(text):
            raise RecordError(526)
        if field == "identity" and text.lower() in PLACEHOLDER_IDENTITIES:
            raise RecordError(523, f"'{text}' is a placeholder, not an identity.")
        return Identifier(field, text)
    raise RecordError(523)


def _timestamp(record: dict[str, Any], now: int) -> int:
    if "ts" not in record or record["ts"] is None:
        return now
    value = record["ts"]
    # ts 0 / non-epoch -> 525 with the recorded text (real_upload_replies.json).
    if isinstance(value, bool):
        raise RecordError(525)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    # `ts: 0` is refused (recorded: 525), not taken as 1970
    if not isinstance(value, int) or value <= 0 or value >= MAX_EPOCH_SECONDS:
        raise RecordError(525)
    return value


@functools.lru_cache(maxsize=4096)
def _key_problem(key: str, prohibited: frozenset[str]) -> str | None:
    """What is wrong with a property key, if anything (keys repeat: cached)."""
    if not key or _over(key, MAX_KEY_BYTES):
        return f"Key '{key[:40]}' is empty or over 120 bytes."
    bad = sorted(set(key) & prohibited)
    if bad:
        return f"Key '{key}' has prohibited characters {''.join(bad)}."
    return None


def _check_key(key: str, code: int, *, profile: bool) -> None:
    problem = _key_problem(key, _PROFILE_PROHIBITED if profile else _PROHIBITED)
    if problem is not None:
        raise RecordError(code, problem)


def _scalar(key: str, value: object, code: int) -> object:
    """Validate a scalar value; `$D_<epoch>` becomes `{"$date": epoch}`."""
    if isinstance(value, str):
        if _over(value, MAX_VALUE_BYTES):
            raise RecordError(code, f"Value of '{key}' is over 512 bytes.")
        if not value.startswith("$D_"):
            return value
        match = _DATE.match(value)
        if match is None:
            raise RecordError(code, f"Value of '{key}' is not a valid $D_ date.")
        return {"$date": int(match.group(1))}
    if value is None or isinstance(value, bool | int | float):
        return value
    raise RecordError(code, f"Value of '{key}' must be a string, number or boolean.")


def _multi(key: str, value: object, code: int) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise RecordError(code, f"Multi-value items of '{key}' must be strings.")
        if _over(item, MAX_VALUE_BYTES):
            raise RecordError(code, f"A multi-value item of '{key}' is over 512 bytes.")
        if item not in out:
            out.append(item)
    return out


def _one_of(*allowed: str) -> Callable[[object], bool]:
    choices = frozenset(allowed)
    return lambda value: value in choices


def _is_email(value: object) -> bool:
    return isinstance(value, str) and _EMAIL.match(value) is not None


def _is_phone(value: object) -> bool:
    return isinstance(value, str) and _PHONE.match(value) is not None


def _is_age(value: object) -> bool:
    if isinstance(value, str):
        return value.isdigit()
    return isinstance(value, int | float) and not isinstance(value, bool)


# CleverTap's reserved profile keys: the code a bad value gets, and the check.
_RESERVED: dict[str, tuple[int, Callable[[object], bool]]] = {
    "Gender": (514, _one_of("M", "F")),
    "Email": (515, _is_email),
    "Phone": (516, _is_phone),
    "Employed": (517, _one_of("Y", "N")),
    "Education": (518, _one_of("Graduate", "College", "School")),
    "Married": (519, _one_of("Y", "N")),
    "Age": (520, _is_age),
}


def _check_reserved(key: str, value: object) -> None:
    rule = _RESERVED.get(key)
    if rule is not None and not rule[1](value):
        raise RecordError(rule[0])


def _kept_as_is(value: object) -> bool:
    """A value `_scalar` returns unchanged: a number, null or short plain text.

    The common case, checked first so that it costs as little as possible.
    """
    if isinstance(value, str):
        return len(value) <= _SHORT_TEXT_CHARS and not value.startswith("$D_")
    return type(value) in _PLAIN_TYPES


def _profile_property(key: str, value: object) -> object:
    """Normalise one profileData entry to a plain value or `{"$op": operand}`."""
    _check_key(key, 512, profile=True)
    if isinstance(value, dict):
        return _profile_operator(key, value)
    if isinstance(value, list):
        return _multi(key, value, 512)[-MAX_MULTI_VALUES:]
    _check_reserved(key, value)
    return _scalar(key, value, 512)


def _profile_operator(key: str, value: dict[str, object]) -> dict[str, object]:
    """Normalise `{"$op": operand}` (the only objects a profile value may be)."""
    code = 512
    if len(value) != 1 or next(iter(value)) not in _OPERATORS:
        raise RecordError(
            code, f"'{key}' is a nested object (not enabled on this account)."
        )
    op, operand = next(iter(value.items()))
    normalised: object
    if op in {"$add", "$remove"}:
        normalised = _multi(key, operand, code)
    elif op in {"$incr", "$decr"}:
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            raise RecordError(code, f"{op} on '{key}' needs a number.")
        normalised = operand
    elif op == "$delete":
        normalised = 1
    elif isinstance(operand, list):  # $set of a multi-value
        normalised = _multi(key, operand, code)[-MAX_MULTI_VALUES:]
    else:  # $set of a scalar
        _check_reserved(key, operand)
        normalised = _scalar(key, operand, code)
    return {op: normalised}


def _event_value(key: str, value: object, *, allow_items: bool) -> object:
    if isinstance(value, list):
        if allow_items and key == "Items":
            if len(value) > MAX_CHARGED_ITEMS:
                raise RecordError(512, "Charged has more than 256 Items.")
            items = []
            for item in value:
                if not isinstance(item, dict):
                    raise RecordError(512, "Charged Items must be objects.")
                clean = {}
                for k, v in item.items():
                    _check_key(k, 512, profile=False)
                    clean[k] = _event_value(k, v, allow_items=False)
                items.append(clean)
            return items
        return _multi(key, value, 512)
    if isinstance(value, dict):
        raise RecordError(512, f"'{key}' is a nested object (not enabled).")
    return _scalar(key, value, 512)


def validate_record(
    record: object,
    *,
    max_event_properties: int = DEFAULT_MAX_EVENT_PROPERTIES,
    now: int | None = None,
) -> Operation:
    """Validate one upload record.

    Args:
        record: the record as received.
        max_event_properties: the account's cap on properties per event.
        now: the current epoch seconds (for records without `ts`).

    Returns:
        The normalised operation.

    Raises:
        RecordError: with CleverTap's code when the record is rejected.
    """
    now = int(time.time()) if now is None else now
    if not isinstance(record, dict):
        raise RecordError(524)
    kind = record.get("type")
    if kind == "event":
        fast_event = _fast_event(record, max_event_properties, now)
        if fast_event is not None:
            return fast_event
        return _validate_event(record, max_event_properties, now)
    if kind == "profile":
        fast_profile = _fast_profile(record, now)
        if fast_profile is not None:
            return fast_profile
        return _validate_profile(record, now)
    if kind == "token":
        return _validate_token(record)
    raise RecordError(524)


# -- fast paths ----------------------------------------------------------------------
# Most records are valid and plain: an identity string, property keys already seen,
# values that are short text, numbers, booleans or `$D_` dates. The `_fast_*`
# functions accept exactly those (with the result the full validation would give)
# and return None for anything else, which the full validation then handles, so
# every rejection keeps its code, message and order of checks.

# The fast paths build their named tuples with `tuple.__new__` (every field given,
# in order): it skips the Python-level `__new__` a NamedTuple class has, which
# costs about as much again per record.
_new = tuple.__new__

# Property keys found valid, learnt as records arrive (bounded, like the key cache).
_MAX_LEARNT = 4096
_GOOD_EVENT_KEYS: set[str] = set()
_GOOD_PROFILE_KEYS: set[str] = set()
# Event name -> its key, for names found valid (not restricted, allowed characters).
_GOOD_EVENT_NAMES: dict[str, str] = {}
_RESERVED_KEYS = frozenset(_RESERVED)
_SCALAR_TYPES = _PLAIN_TYPES | {str}


def _keys_known(
    keys: Iterable[str], good: set[str], prohibited: frozenset[str]
) -> bool:
    """Whether every key is valid, learning the valid keys not seen before."""
    for key in keys:
        if key not in good:
            if _key_problem(key, prohibited) is not None:
                return False
            if len(good) < _MAX_LEARNT:
                good.add(key)
    return True


def _fast_values(data: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of `data` with `$D_` dates converted (None: not plain, or invalid).

    A date is taken here only when its digits pass `str.isdecimal` (the digits
    `_DATE` matches), so it gets the value `_DATE` would give; other `$D_` text is left
    to the full validation.
    """
    clean = dict(data)
    for key, value in data.items():
        kind = type(value)
        if kind is str:
            if len(value) > _SHORT_TEXT_CHARS and _over(value, MAX_VALUE_BYTES):
                return None
            if value[:3] == "$D_":
                digits = value[3:]
                if not (
                    digits.isdecimal() or (digits[:1] == "-" and digits[1:].isdecimal())
                ):
                    return None
                clean[key] = {"$date": int(digits)}
        elif kind not in _PLAIN_TYPES:
            return None
    return clean


def _fast_identity(record: dict[str, Any]) -> Identifier | None:
    """The identifier of a record with a usable `identity` string (else None)."""
    value = record.get("identity")
    if type(value) is not str:
        return None
    text = value.strip()
    if (
        not text
        or len(text) >= MAX_IDENTITY_CHARS
        or text.lower() in PLACEHOLDER_IDENTITIES
    ):
        return None
    return _new(Identifier, ("identity", text))


def _fast_who_ts(record: dict[str, Any], now: int) -> tuple[Identifier, int] | None:
    """The identifier and time of a record the fast paths take (else None).

    `ts` absent or null is `now`; any other value must be a valid integer.
    """
    ts = record.get("ts")
    if ts is None:
        ts = now
    who = _fast_identity(record)
    if who is None or type(ts) is not int or not 0 < ts < MAX_EPOCH_SECONDS:
        return None
    return who, ts


def _good_event_name(name: object) -> TypeGuard[str]:
    """Whether `name` is a valid event name, learning the valid ones."""
    if type(name) is not str:
        return False
    if name in _GOOD_EVENT_NAMES:
        return True
    name_key = event_key(name)
    if (
        not name
        or name_key in RESTRICTED_EVENTS
        or _key_problem(name, _PROHIBITED) is not None
    ):
        return False
    if len(_GOOD_EVENT_NAMES) < _MAX_LEARNT:
        _GOOD_EVENT_NAMES[name] = name_key
    return True


def _fast_event(record: dict[str, Any], cap: int, now: int) -> EventOp | None:
    name = record.get("evtName")
    if not _good_event_name(name):
        return None
    data = record.get("evtData", {})
    if type(data) is not dict or len(data) > cap:
        return None
    found = _fast_who_ts(record, now)
    if found is None:
        return None
    who, ts = found
    if not data.keys() <= _GOOD_EVENT_KEYS and not _keys_known(
        data, _GOOD_EVENT_KEYS, _PROHIBITED
    ):
        return None
    clean = _fast_values(data)
    if clean is None:
        return None
    return _new(EventOp, (who, ts, name, clean))


def _fast_profile(record: dict[str, Any], now: int) -> ProfileOp | None:
    data = record.get("profileData")
    if type(data) is not dict:
        return None
    found = _fast_who_ts(record, now)
    if found is None:
        return None
    who, ts = found
    if not data.keys() <= _GOOD_PROFILE_KEYS and not _keys_known(
        data, _GOOD_PROFILE_KEYS, _PROFILE_PROHIBITED
    ):
        return None
    for key in _RESERVED_KEYS.intersection(data):
        value = data[key]
        if type(value) not in _SCALAR_TYPES or not _RESERVED[key][1](value):
            return None
    props = _fast_values(data)
    if props is None:
        return None
    return _new(ProfileOp, (who, ts, props, True))  # plain


def _validate_event(record: dict[str, Any], cap: int, now: int) -> EventOp:
    name = record.get("evtName")
    if name is None or name == "":
        raise RecordError(509)
    if not isinstance(name, str):
        raise RecordError(512, "evtName must be a string.")
    name_key = event_key(name)
    if name_key in RESTRICTED_EVENTS:
        raise RecordError(513)
    _check_key(name, 512, profile=False)
    data = record.get("evtData", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecordError(512, "evtData must be an object.")
    who = _identifier(record)
    ts = _timestamp(record, now)
    if len(data) > cap:
        raise RecordError(522, f"{len(data)} properties, at most {cap}.")
    charged = name_key == "charged"
    clean: dict[str, Any] = {}
    for key, value in data.items():
        _check_key(key, 512, profile=False)
        clean[key] = (
            value
            if _kept_as_is(value)
            else _event_value(key, value, allow_items=charged)
        )
    return EventOp(who=who, ts=ts, name=name, data=clean)


def _validate_profile(record: dict[str, Any], now: int) -> ProfileOp:
    who = _identifier(record)
    ts = _timestamp(record, now)
    data = record.get("profileData")
    if not isinstance(data, dict):
        raise RecordError(524, "profileData must be an object.")
    props: dict[str, Any] = {}
    for key, value in data.items():
        props[key] = (
            value
            if key not in _RESERVED
            and _kept_as_is(value)
            and _key_problem(key, _PROFILE_PROHIBITED) is None
            else _profile_property(key, value)
        )
    return ProfileOp(who=who, ts=ts, properties=props)


def _validate_token(record: dict[str, Any]) -> TokenOp:
    object_id = record.get("objectId")
    if not isinstance(object_id, str) or not _OBJECT_ID.match(object_id):
        raise RecordError(530)
    data = record.get("tokenData")
    if not isinstance(data, dict):
        raise RecordError(531)
    token_id = data.get("id")
    if not isinstance(token_id, str) or not token_id:
        raise RecordError(532)
    token_type = data.get("type")
    if not isinstance(token_type, str) or not token_type:
        raise RecordError(533)
    if token_type not in _TOKEN_TYPES:
        raise RecordError(534)
    return TokenOp(object_id=object_id, token_id=token_id, token_type=token_type)


# Checks of reserved profile keys run in this order; a record refused at one step
# is echoed with the rewrites of the steps it passed (recorded: Phone comes back
# as a number once it was found valid, profileData.identity as text before Age).
_PHONE_CHECKED_BEFORE = frozenset({517, 518, 519, 520})
_IDENTITY_TEXT_BEFORE = frozenset({520})


#: codes whose recorded message is followed by a space before "Skipped ..."
_SPACED = frozenset({523, 525})


def error_text(code: int, message: str, number: int) -> str:
    """The `error` of an unprocessed entry, spaced as CleverTap spaces it.

    Recorded: "...Email is not valid.Skipped record number : 2" but
    "...to identify the user. Skipped record number : 1" (523 and 525).
    """
    joint = " " if code in _SPACED else ""
    return f"{message}{joint}Skipped record number : {number}"


def echo(record: object, code: int) -> object:
    """The record as CleverTap echoes it in an unprocessed entry.

    Phone as a number, identity as a string: recorded in
    upload-and-send-responses.tradeo-clevertap-ruby.json (copy:
    tests/fixtures/target_clevertap/real_upload_replies.json).
    """
    if not isinstance(record, dict) or record.get("type") != "profile":
        return record
    data = record.get("profileData")
    if not isinstance(data, dict):
        return record
    rewritten = dict(data)
    phone = rewritten.get("Phone")
    if code in _PHONE_CHECKED_BEFORE and isinstance(phone, str) and _is_phone(phone):
        rewritten["Phone"] = int(phone[1:])
    ident = rewritten.get("identity")
    if code in _IDENTITY_TEXT_BEFORE and isinstance(ident, int | float):
        rewritten["identity"] = str(ident)
    return {**record, "profileData": rewritten}
