"""The quick E.164 path agrees with phonenumbers wherever it answers."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from target_clevertap.payloads import RecordReject, normalise_phone
from target_clevertap.phones import quick_e164

_FORMATS = (
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
)


def _library(text: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _samples(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Numbers of every region in several spellings, plus random digit strings."""
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    types = list(phonenumbers.PhoneNumberType.values())
    out: list[tuple[str, str]] = []
    while len(out) < count:
        region = rng.choice([*regions, *["US"] * 40, *["GB", "DE", "IN", "CA"] * 5])
        default = rng.choice([region, "US", "GB", "DE", "IN"])
        if rng.random() < 0.6:
            example = phonenumbers.example_number_for_type(region, rng.choice(types))
            if example is None:
                continue
            digits = str(example.national_number)
            tail = "".join(rng.choice("0123456789") for _ in range(min(4, len(digits))))
            example.national_number = int(digits[: -len(tail)] + tail)
            text = phonenumbers.format_number(example, rng.choice(_FORMATS))
            if rng.random() < 0.2:
                text = text.replace(" ", rng.choice(["-", ".", ""]))
        else:
            size = rng.randrange(2, 18)
            text = "".join(rng.choice("0123456789") for _ in range(size))
            if rng.random() < 0.5:
                text = "+" + text
            if rng.random() < 0.3:
                text = f"({text[:3]}) {text[3:6]}-{text[6:]}"
        out.append((text, default))
    return out


def test_quick_path_agrees_with_phonenumbers_on_generated_numbers() -> None:
    rng = random.Random(20261129)  # noqa: S311 - reproducible test data, not secrets
    answered = 0
    for text, region in _samples(rng, 15_000):
        quick = quick_e164(text, region)
        if quick is None:
            continue
        answered += 1
        assert quick == _library(text, region), (text, region)
    # the path must actually be taken for most valid, plainly written numbers
    assert answered > 4_000


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("(212) 618-5588", "US", "+12126185588"),
        ("212.618.5588", "US", "+12126185588"),
        ("416-385-1179", "US", "+14163851179"),  # Canada, shares +1
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("+91 98686 30527", None, "+919868630527"),
        ("030 6856471", "DE", None),  # national prefix: left to phonenumbers
        ("1-212-618-5588", "US", None),  # country code without +: phonenumbers
        ("011 44 20 7946 0958", "US", None),  # IDD prefix: phonenumbers
        ("212-618-5588 x12", "US", None),  # extension
        ("1-800-FLOWERS", "US", None),  # letters
        ("+800 1234 5678", None, None),  # non-geographic calling code
        ("(212) 123-4567", "US", None),  # invalid: phonenumbers rejects
        ("12", "US", None),
    ],
)
def test_quick_path_answers_only_plain_valid_numbers(
    text: str, region: str | None, expected: str | None
) -> None:
    assert quick_e164(text, region) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("030 6856471", "+49306856471"),
        ("1-212-618-5588", "+12126185588"),
        ("011 44 20 7946 0958", "+442079460958"),
    ],
)
def test_numbers_off_the_quick_path_still_normalise(text: str, expected: str) -> None:
    region = "DE" if text.startswith("030") else "US"
    assert normalise_phone(text, region) == expected


def test_invalid_number_is_rejected_naming_the_field() -> None:
    with pytest.raises(RecordReject) as caught:
        normalise_phone("(212) 123-4567", "US")
    assert caught.value.code == "invalid_phone"
    assert caught.value.field == "Phone"
