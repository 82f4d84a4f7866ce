"""E.164 phone numbers: a quick path for plainly written ones, else phonenumbers.

`phonenumbers.parse` plus `is_valid_number` cost about 50 µs per number, which
dominated the target's CPU on CRM data (one or more phones per Contact and
Lead). Most CRM phones are written plainly: digits with spaces, dashes, dots
and brackets, maybe a leading `+`. For those, this module follows the steps
`phonenumbers` takes (country code, national prefix, region choice among the
regions sharing a calling code, validity against each number type) with the
library's own metadata, compiled once per region, and only answers when the
number is valid and every step it skipped is certain to be a no-op there.
Anything else (letters, extensions, IDD or national prefixes, invalid numbers,
non-geographic calling codes) returns None and the caller asks phonenumbers.
`tests/target_clevertap/test_phones.py` checks the two agree on a large set of
generated numbers.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

#: digits with the separators people type; `+` only first
_PLAIN = re.compile(r"\+?[0-9 ().\-]+")
_SEPARATOR_BYTES = b"+ ().-"
_MAX_COUNTRY_CODE_DIGITS = 3
_MIN_DIGITS = 3  # fewer may not be a viable number for phonenumbers
_MAX_TEXT = 64
_MIN_NSN, _MAX_NSN = 2, 17
_NON_GEO = "001"
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@dataclass(frozen=True)
class _Desc:
    """One number description: allowed lengths (empty: any) and pattern."""

    lengths: frozenset[int]
    pattern: str


@dataclass(frozen=True)
class _Region:
    """What validation and parsing need from one region's metadata."""

    country_code: int
    #: the calling code as digits (a number starting with them has no `+`)
    code_text: str
    #: per national number length: the general description (a lookahead) and
    #: every number type of that length, as one pattern
    by_length: dict[int, re.Pattern[str]]
    leading_digits: re.Pattern[str] | None
    international_prefix: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None

    def valid(self, nsn: str) -> bool:
        """Whether the number has a known type here (phonenumbers' validity).

        Args:
            nsn: the national significant number.

        Returns:
            True when valid for this region.
        """
        pattern = self.by_length.get(len(nsn))
        return pattern is not None and pattern.fullmatch(nsn) is not None


def _desc(desc: object) -> _Desc | None:
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        return None
    lengths = getattr(desc, "possible_length", None) or ()
    return _Desc(frozenset(lengths), pattern)


def _by_length(general: _Desc | None, types: list[_Desc]) -> dict[int, re.Pattern[str]]:
    """One pattern per length: the general description and any type of that length.

    phonenumbers checks a description's lengths before its pattern, and a number
    is valid when it matches the general description and at least one type.
    """
    if general is None:
        return {}
    out: dict[int, re.Pattern[str]] = {}
    for size in range(_MIN_NSN, _MAX_NSN + 1):
        if general.lengths and size not in general.lengths:
            continue
        fitting = [d.pattern for d in types if not d.lengths or size in d.lengths]
        if fitting:
            alternatives = "|".join(f"(?:{p})" for p in fitting)
            out[size] = re.compile(f"(?=(?:{general.pattern})\\Z)(?:{alternatives})")
    return out


def _pattern(text: str | None) -> re.Pattern[str] | None:
    return re.compile(text) if text else None


@functools.cache
def _region(code: str) -> _Region | None:
    meta = PhoneMetadata.metadata_for_region(code, None)
    if meta is None or meta.country_code is None:
        return None
    types = [d for d in (_desc(getattr(meta, name, None)) for name in _TYPES) if d]
    return _Region(
        country_code=int(meta.country_code),
        code_text=str(int(meta.country_code)),
        by_length=_by_length(_desc(meta.general_desc), types),
        leading_digits=_pattern(meta.leading_digits),
        international_prefix=_pattern(meta.international_prefix),
        national_prefix=_pattern(meta.national_prefix_for_parsing),
    )


@functools.cache
def _calling_code(country_code: int) -> tuple[_Region | None, ...] | None:
    """The regions sharing a geographic calling code, in phonenumbers' order."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions or _NON_GEO in regions:
        return None
    return tuple(_region(code) for code in regions)


#: one step of the region choice: a combined leading-digits pattern whose
#: matching group names the region, or None and the one region without them
_Step = tuple[re.Pattern[str] | None, tuple[_Region, ...]]


def _steps(regions: tuple[_Region | None, ...]) -> tuple[_Step, ...]:
    """The region choice of a calling code as steps, in phonenumbers' order.

    Consecutive regions with leading digits become one pattern whose first
    matching alternative (a regular expression tries them in order) is the
    first of those regions whose leading digits match; a region without them
    is a step of its own (valid there: the number is valid).
    """
    steps: list[_Step] = []
    run: list[_Region] = []

    def close_run() -> None:
        if run:
            alternatives = "|".join(
                f"(?:{r.leading_digits.pattern})(?P<_r{i}>)"  # type: ignore[union-attr]
                for i, r in enumerate(run)
            )
            steps.append((re.compile(alternatives), tuple(run)))
            run.clear()

    for region in regions:
        if region is None:
            continue
        if region.leading_digits is None:
            close_run()
            steps.append((None, (region,)))
        else:
            run.append(region)
    close_run()
    return tuple(steps)


@functools.cache
def _choice(country_code: int) -> tuple[_Step, ...] | None:
    """The region-choice steps of a geographic calling code (None: not one)."""
    regions = _calling_code(country_code)
    return None if regions is None else _steps(regions)


def _is_valid(country_code: int, nsn: str) -> bool:
    """The result of phonenumbers' `is_valid_number` for a geographic calling code.

    The region is the first of the code's regions whose leading digits match,
    or (without leading digits) for which the number has a type.

    Returns:
        True when valid.
    """
    steps = _choice(country_code)
    if steps is None:
        return False
    for leading, regions in steps:
        if leading is None:
            if regions[0].valid(nsn):
                return True
            continue
        found = leading.match(nsn)
        if found is not None:
            return regions[int(str(found.lastgroup)[2:])].valid(nsn)
    return False


def _is_valid_by_region(country_code: int, nsn: str) -> bool:
    """`_is_valid` region by region (kept to check the steps against)."""
    regions = _calling_code(country_code)
    if regions is None:
        return False
    chosen: _Region | None = None
    for region in regions:
        if region is None:
            continue
        if region.leading_digits is not None:
            if region.leading_digits.match(nsn):
                chosen = region
                break
        elif len(regions) == 1:
            chosen = region
            break
        elif region.valid(nsn):
            return True
    return chosen is not None and chosen.valid(nsn)


def _split_with_plus(digits: str) -> tuple[int, str] | None:
    """(calling code, national number) of digits written after a `+`."""
    if digits.startswith("0"):
        return None
    for size in range(1, _MAX_COUNTRY_CODE_DIGITS + 1):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code, digits[size:]
    return None


@functools.lru_cache(maxsize=1024)
def _prefixed(first_digits: str) -> tuple[int, int, _Region | None] | None:
    """Digits written after a `+`, by their first three digits (all that decide).

    Returns:
        (calling code, its length, main region), or None without a calling code.
    """
    split = _split_with_plus(first_digits)
    if split is None:
        return None
    code = split[0]
    region = _region(phonenumbers.region_code_for_country_code(code))
    return code, len(first_digits) - len(split[1]), region


def _split(
    text: str, digits: str, default_region: str | None
) -> tuple[int, str, _Region | None] | None:
    """(calling code, national number, region) when no prefix handling applies."""
    if text.startswith("+"):
        found = _prefixed(digits[:_MAX_COUNTRY_CODE_DIGITS])
        if found is None:
            return None
        code, size, region = found
        return code, digits[size:], region
    default = _region(default_region) if default_region else None
    if default is None:
        return None
    idd = default.international_prefix
    if (idd is not None and idd.match(digits)) or digits.startswith(default.code_text):
        return None  # an IDD prefix or a country code without `+`
    return default.country_code, digits, default


def _national(text: str, default_region: str | None) -> tuple[int, str] | None:
    """(calling code, national number) when no prefix handling can apply."""
    # bytes.translate deletes faster than str.translate; only ASCII bytes go,
    # so the UTF-8 stays whole
    digits = text.encode().translate(None, _SEPARATOR_BYTES).decode()
    if len(digits) < _MIN_DIGITS:
        return None
    found = _split(text, digits, default_region)
    if found is None:
        return None
    code, nsn, region = found
    if region is None or not _MIN_NSN <= len(nsn) <= _MAX_NSN:
        return None
    if region.national_prefix is not None and region.national_prefix.match(nsn):
        return None  # a national prefix may be stripped: phonenumbers decides
    return code, nsn


def quick_e164(text: str, default_region: str | None) -> str | None:
    """The E.164 form of a plainly written, valid number; None to ask phonenumbers.

    Args:
        text: the number as entered (stripped).
        default_region: ISO country for numbers without `+` (upper case).

    Returns:
        `+<country code><national number>`, or None when this path cannot
        decide (the caller then uses phonenumbers, which also rejects).
    """
    if len(text) > _MAX_TEXT or not _PLAIN.fullmatch(text):
        return None
    split = _national(text, default_region)
    if split is None:
        return None
    country_code, nsn = split
    if int(nsn) == 0 or not _is_valid(country_code, nsn):
        return None
    return f"+{country_code}{nsn}"
