"""Deterministic Salesforce-shaped Singer input, as tap-salesforce 2.8.1 emits it.

The message sequence per stream follows the tap's REST mode on a first INCREMENTAL
sync: a STATE naming the current stream, the SCHEMA (with `anyOf` date-time shapes and
nullable types built the way the tap builds them from describe), an ACTIVATE_VERSION,
then each RECORD (with `version` and `time_extracted`) followed by one STATE carrying
the SystemModstamp bookmark and the stream versions, and one more STATE when the stream
ends. A last STATE clears `current_stream`. Dates and datetimes are written as
`2024-01-05T00:00:00.000000Z`; numbers are JSON numbers; messages use the tap's JSON
separators. Records are ordered by SystemModstamp, as the tap's SOQL orders them.

Run directly: `python bench/generate.py --n 1000 --out input.singer`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import random
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

GENERATOR_VERSION = 5
STREAMS = ("Contact", "Lead", "Opportunity", "Task")
DEFAULT_MIX = {"Contact": 0.4, "Lead": 0.25, "Opportunity": 0.15, "Task": 0.2}
STREAM_VERSION = 1732838400000  # fixed, so the output is byte-for-byte reproducible
EXTRACTED = dt.datetime(2024, 11, 29, tzinfo=dt.UTC)
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

# Salesforce type names, mapped to JSON schema as the tap maps them.
_STRING = {"id", "string", "picklist", "textarea", "phone", "url", "reference"}
_STRING |= {"multipicklist", "combobox", "email"}
_NUMBER = {"double", "currency", "percent"}
_DATE = {"date", "datetime"}

# (field, Salesforce type) in describe order.
# (field, Salesforce type) in describe order: the fields a typical Meltano `select`
# of these objects keeps (the builders below produce a few more, which are dropped).
_AUDIT = [
    ("CreatedDate", "datetime"),
    ("LastModifiedDate", "datetime"),
    ("SystemModstamp", "datetime"),
]
WIDE_FIELDS: dict[str, list[tuple[str, str]]] = {
    "Contact": [
        ("Id", "id"),
        ("IsDeleted", "boolean"),
        ("AccountId", "reference"),
        ("LastName", "string"),
        ("FirstName", "string"),
        ("Salutation", "picklist"),
        ("Name", "string"),
        ("MailingStreet", "textarea"),
        ("MailingCity", "string"),
        ("MailingState", "string"),
        ("MailingPostalCode", "string"),
        ("MailingCountry", "string"),
        ("MailingLatitude", "double"),
        ("MailingLongitude", "double"),
        ("MailingAddress", "address"),
        ("Phone", "phone"),
        ("MobilePhone", "phone"),
        ("Email", "email"),
        ("Title", "string"),
        ("Department", "string"),
        ("LeadSource", "picklist"),
        ("Birthdate", "date"),
        ("OwnerId", "reference"),
        ("HasOptedOutOfEmail", "boolean"),
        ("DoNotCall", "boolean"),
        *_AUDIT,
        ("LastActivityDate", "date"),
        ("Level__c", "picklist"),
        ("Interests__c", "multipicklist"),
        ("Lifetime_Value__c", "currency"),
    ],
    "Lead": [
        ("Id", "id"),
        ("IsDeleted", "boolean"),
        ("LastName", "string"),
        ("FirstName", "string"),
        ("Salutation", "picklist"),
        ("Name", "string"),
        ("Title", "string"),
        ("Company", "string"),
        ("Street", "textarea"),
        ("City", "string"),
        ("State", "string"),
        ("PostalCode", "string"),
        ("Country", "string"),
        ("Latitude", "double"),
        ("Longitude", "double"),
        ("Address", "address"),
        ("Phone", "phone"),
        ("MobilePhone", "phone"),
        ("Email", "email"),
        ("Website", "url"),
        ("LeadSource", "picklist"),
        ("Status", "picklist"),
        ("Industry", "picklist"),
        ("Rating", "picklist"),
        ("AnnualRevenue", "currency"),
        ("NumberOfEmployees", "int"),
        ("OwnerId", "reference"),
        ("HasOptedOutOfEmail", "boolean"),
        ("IsConverted", "boolean"),
        ("ConvertedDate", "date"),
        ("ConvertedAccountId", "reference"),
        ("ConvertedContactId", "reference"),
        *_AUDIT,
        ("DoNotCall", "boolean"),
        ("ProductInterest__c", "multipicklist"),
    ],
    "Opportunity": [
        ("Id", "id"),
        ("IsDeleted", "boolean"),
        ("AccountId", "reference"),
        ("Name", "string"),
        ("StageName", "picklist"),
        ("Amount", "currency"),
        ("Probability", "percent"),
        ("ExpectedRevenue", "currency"),
        ("CloseDate", "date"),
        ("Type", "picklist"),
        ("LeadSource", "picklist"),
        ("IsClosed", "boolean"),
        ("IsWon", "boolean"),
        ("ForecastCategoryName", "picklist"),
        ("CampaignId", "reference"),
        ("OwnerId", "reference"),
        ("ContactId", "reference"),
        *_AUDIT,
        ("FiscalQuarter", "int"),
        ("FiscalYear", "int"),
        ("Competitors__c", "multipicklist"),
    ],
    "Task": [
        ("Id", "id"),
        ("WhoId", "reference"),
        ("WhatId", "reference"),
        ("Subject", "combobox"),
        ("ActivityDate", "date"),
        ("Status", "picklist"),
        ("Priority", "picklist"),
        ("OwnerId", "reference"),
        ("Description", "textarea"),
        ("IsDeleted", "boolean"),
        ("AccountId", "reference"),
        ("IsClosed", "boolean"),
        *_AUDIT,
        ("CallDurationInSeconds", "int"),
        ("CallType", "picklist"),
        ("TaskSubtype", "picklist"),
        ("CompletedDateTime", "datetime"),
    ],
}

# The default selection: what a Meltano `select` for the import preset
# (transforms/salesforce_to_clevertap.yml) keeps, plus a few common fields. Every
# value shape is there: names, emails, phones, address objects and their flat parts,
# multi-picklists, decimals, integers, booleans, dates and datetimes.
_NARROW = {
    "Contact": "Id IsDeleted AccountId LastName FirstName Name MailingStreet "
    "MailingCity MailingState MailingPostalCode MailingCountry MailingAddress Phone "
    "Email Title LeadSource Birthdate OwnerId HasOptedOutOfEmail DoNotCall "
    "CreatedDate LastModifiedDate SystemModstamp Interests__c Lifetime_Value__c",
    "Lead": "Id IsDeleted LastName FirstName Name Title Company Street City State "
    "PostalCode Country Address Phone Email LeadSource Status Industry Rating "
    "AnnualRevenue NumberOfEmployees OwnerId HasOptedOutOfEmail IsConverted "
    "ConvertedContactId CreatedDate LastModifiedDate SystemModstamp DoNotCall "
    "ProductInterest__c",
    "Opportunity": "Id IsDeleted AccountId Name StageName Amount Probability "
    "CloseDate Type IsClosed IsWon ContactId CreatedDate LastModifiedDate "
    "SystemModstamp Competitors__c",
    "Task": "Id WhoId WhatId Subject ActivityDate Status Priority IsDeleted IsClosed "
    "CreatedDate LastModifiedDate SystemModstamp CallDurationInSeconds TaskSubtype "
    "CompletedDateTime",
}
FIELDS: dict[str, list[tuple[str, str]]] = {
    stream: [(n, t) for n, t in WIDE_FIELDS[stream] if n in _NARROW[stream].split()]
    for stream in WIDE_FIELDS
}

KEY_PREFIX = {
    "Contact": "003",
    "Lead": "00Q",
    "Opportunity": "006",
    "Task": "00T",
    "Account": "001",
    "User": "005",
    "Campaign": "701",
}

FIRST = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Priya",
    "Arjun",
    "Ananya",
    "Rahul",
    "Mei",
    "Wei",
    "Hiroshi",
    "Yuki",
    "Sofia",
    "Mateo",
    "Lucia",
    "Hugo",
    "Chloe",
    "Lukas",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Amara",
    "Kwame",
    "Fatima",
    "Omar",
    "Zoe",
    "Ines",
    "Jose",
    "Renee",
    "Bjorn",
    "Siobhan",
)
LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Patel",
    "Sharma",
    "Iyer",
    "Nakamura",
    "Tanaka",
    "Chen",
    "Wang",
    "Muller",
    "Schmidt",
    "Rossi",
    "Dubois",
    "Silva",
    "Okafor",
    "Mensah",
    "Haddad",
    "Kowalski",
    "Novak",
    "O'Brien",
    "Nguyen",
    "Kim",
    "Van der Berg",
)
COMPANIES = (
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli",
    "Vandelay Imports",
    "Pied Piper",
    "Soylent Foods",
    "Tyrell Systems",
    "Cyberdyne Labs",
    "Wonka Confectionery",
    "Oceanic Airlines",
    "Massive Dynamic",
    "Gringotts Finance",
)
EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net", "corp.example.io")
TITLES = (
    "CEO",
    "VP Sales",
    "Marketing Manager",
    "Head of Growth",
    "CTO",
    "Procurement Lead",
    "Account Executive",
    "Operations Director",
    None,
)
DEPARTMENTS = ("Sales", "Marketing", "Engineering", "Finance", "Operations", None)
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
INDUSTRIES = ("Technology", "Healthcare", "Finance", "Retail", "Manufacturing", None)
INTERESTS = ("Golf", "Tennis", "Wine", "Travel", "Cooking", "Cycling", "Music", "Art")
PRODUCTS = ("GC1000 series", "GC5000 series", "SLA: Gold", "SLA: Platinum", "Install")
COMPETITORS = ("Contoso", "Northwind", "Fabrikam", "Litware", "Adatum")
STAGES = (
    ("Prospecting", 10.0, False, False, "Pipeline"),
    ("Qualification", 10.0, False, False, "Pipeline"),
    ("Needs Analysis", 20.0, False, False, "Pipeline"),
    ("Proposal/Price Quote", 75.0, False, False, "Pipeline"),
    ("Negotiation/Review", 90.0, False, False, "Commit"),
    ("Closed Won", 100.0, True, True, "Closed"),
    ("Closed Lost", 0.0, True, False, "Omitted"),
)
TASK_SUBJECTS = ("Call", "Send Letter", "Send Quote", "Email", "Follow up", "Demo")

# (city, state, postal code prefix, country, lat, lon, phone formatter)
PLACES: tuple[tuple[str, str | None, str, str, float, float, str], ...] = (
    ("San Francisco", "CA", "941", "United States", 37.7749, -122.4194, "us"),
    ("New York", "NY", "100", "United States", 40.7128, -74.006, "us"),
    ("Austin", "TX", "787", "United States", 30.2672, -97.7431, "us"),
    ("Chicago", "IL", "606", "United States", 41.8781, -87.6298, "us"),
    ("Seattle", "WA", "981", "United States", 47.6062, -122.3321, "us"),
    ("Boston", "MA", "021", "United States", 42.3601, -71.0589, "us"),
    ("London", None, "EC1", "United Kingdom", 51.5074, -0.1278, "gb"),
    ("Bengaluru", "KA", "560", "India", 12.9716, 77.5946, "in"),
    ("Berlin", None, "101", "Germany", 52.52, 13.405, "de"),
    ("Toronto", "ON", "M5V", "Canada", 43.6532, -79.3832, "us"),
)
US_AREA = {
    "San Francisco": "415",
    "New York": "212",
    "Austin": "512",
    "Chicago": "312",
    "Seattle": "206",
    "Boston": "617",
    "Toronto": "416",
}
STREETS = ("Main St", "Market St", "Oak Ave", "Park Rd", "High St", "Elm St", "1st Ave")


@functools.cache
def _checksum(base: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in range(3):
        bits = 0
        for pos, char in enumerate(base[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << pos
        suffix += alphabet[bits]
    return suffix


def _sf_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce id with its case-safe checksum suffix."""
    base = f"{prefix}5g0{number:09d}"
    # only the prefix can hold capitals here, so the suffix depends on it alone
    return base + _checksum(f"{prefix}5g0000000000")


@functools.cache
def _day_text(day: dt.date) -> str:
    return day.isoformat()


def _ts(moment: dt.datetime) -> str:
    """`2024-01-05T13:45:10.000000Z` (the tap's format; whole seconds here)."""
    return (
        f"{_day_text(moment.date())}T{moment.hour:02d}:{moment.minute:02d}:"
        f"{moment.second:02d}.000000Z"
    )


def _day(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00.000000Z"


def property_schema(name: str, sf_type: str) -> dict[str, Any]:
    """The JSON schema the tap writes for one field of the given Salesforce type.

    Args:
        name: the field name.
        sf_type: the Salesforce field type from describe.

    Returns:
        The property schema.
    """
    if sf_type in _DATE:
        date_type = {"type": "string", "format": "date-time"}
        return {"anyOf": [date_type, {"type": ["string", "null"]}]}
    schema: dict[str, Any]
    if sf_type in _STRING:
        schema = {"type": "string"}
    elif sf_type == "boolean":
        schema = {"type": "boolean"}
    elif sf_type in _NUMBER:
        schema = {"type": "number"}
    elif sf_type == "int":
        schema = {"type": "integer"}
    elif sf_type == "address":
        parts = ("street", "state", "postalCode", "city", "country")
        props: dict[str, Any] = {p: {"type": ["null", "string"]} for p in parts}
        props["longitude"] = {"type": ["null", "number"]}
        props["latitude"] = {"type": ["null", "number"]}
        props["geocodeAccuracy"] = {"type": ["null", "string"]}
        schema = {"type": "object", "properties": props}
    else:
        msg = f"unsupported Salesforce type {sf_type}"
        raise ValueError(msg)
    if name != "Id":
        schema["type"] = ["null", schema["type"]]
    return schema


def stream_schema(stream: str, *, wide: bool = False) -> dict[str, Any]:
    """The SCHEMA message body for a stream.

    Args:
        stream: one of STREAMS.
        wide: use the wide field selection.

    Returns:
        The JSON schema.
    """
    fields = (WIDE_FIELDS if wide else FIELDS)[stream]
    props = {name: property_schema(name, t) for name, t in fields}
    return {"type": "object", "additionalProperties": False, "properties": props}


def _phone(rng: random.Random, style: str, city: str) -> str:
    foreign = {
        "gb": lambda: f"+44 20 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}",
        "in": lambda: f"+91 98{rng.randint(100, 999)} {rng.randint(10000, 99999)}",
        "de": lambda: f"+49 30 {rng.randint(2000000, 8999999)}",
    }
    if style in foreign:
        return foreign[style]()
    area = US_AREA.get(city, "415")
    exchange = rng.randint(201, 989)
    line = rng.randint(1000, 9999)
    forms = (
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"+1 {area} {exchange} {line}",
        f"{area}.{exchange}.{line}",
    )
    return forms[rng.randrange(len(forms))]


class _FastRandom(random.Random):
    """Reproducible draws, cheaper than the default for small ranges.

    Not for secrets: this only makes deterministic test data.
    """

    def _randbelow(self, n: int) -> int:
        return int(self.random() * n)


class _Org:
    """Shared state across streams: the ids that references point at."""

    def __init__(self, rng: random.Random, counts: dict[str, int]) -> None:
        self.rng = rng
        self.counts = counts
        self.users = [_sf_id(KEY_PREFIX["User"], i) for i in range(1, 26)]
        # about four contacts per account, as in a typical B2B org
        n_accounts = max(20, counts.get("Contact", 0) // 4)
        self.accounts = [
            _sf_id(KEY_PREFIX["Account"], i) for i in range(1, n_accounts + 1)
        ]
        self.campaigns = [_sf_id(KEY_PREFIX["Campaign"], i) for i in range(1, 21)]

    def ref(self, stream: str) -> str | None:
        count = self.counts.get(stream, 0)
        if count == 0:
            return None
        return _sf_id(KEY_PREFIX[stream], self.rng.randint(1, count))


def _audit(
    rng: random.Random, org: _Org, modstamp: dt.datetime, rec: dict[str, Any]
) -> None:
    created = modstamp - dt.timedelta(
        days=rng.randint(0, 400), seconds=rng.randint(0, 86399)
    )
    rec["CreatedDate"] = _ts(created)
    rec["CreatedById"] = rng.choice(org.users)
    rec["LastModifiedDate"] = _ts(modstamp)
    rec["LastModifiedById"] = rng.choice(org.users)
    rec["SystemModstamp"] = _ts(modstamp)


def _person(rng: random.Random) -> tuple[str, str, str, str]:
    first = rng.choice(FIRST)
    last = rng.choice(LAST)
    salutation = rng.choice(("Mr.", "Ms.", "Mrs.", "Dr.", "Prof."))
    domain = rng.choice(EMAIL_DOMAINS)
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    email = f"{local}{rng.randint(1, 99999)}@{domain}"
    return first, last, salutation, email


def _address(
    rng: random.Random,
) -> tuple[dict[str, Any], str, str]:
    city, state, postal, country, lat, lon, style = rng.choice(PLACES)
    street = f"{rng.randint(1, 9999)} {rng.choice(STREETS)}"
    if rng.random() < 0.1:
        street += f"\nSuite {rng.randint(100, 999)}"
    postal_code = postal + (f"{rng.randint(0, 99):02d}" if postal.isdigit() else " 1AB")
    accuracy = rng.choice(("Address", "Street", "Zip", None))
    jitter_lat = round(lat + rng.uniform(-0.05, 0.05), 6)
    jitter_lon = round(lon + rng.uniform(-0.05, 0.05), 6)
    addr = {
        "street": street,
        "state": state,
        "postalCode": postal_code,
        "city": city,
        "country": country,
        "longitude": jitter_lon,
        "latitude": jitter_lat,
        "geocodeAccuracy": accuracy,
    }
    return addr, style, city


def _multi(rng: random.Random, values: tuple[str, ...]) -> str | None:
    k = rng.randint(0, 3)
    if k == 0:
        return None
    return ";".join(rng.sample(values, k))


def _contact(rng: random.Random, org: _Org, i: int, mod: dt.datetime) -> dict[str, Any]:
    first, last, salutation, email = _person(rng)
    addr, style, city = _address(rng)
    rec: dict[str, Any] = {
        "Id": _sf_id(KEY_PREFIX["Contact"], i),
        "IsDeleted": rng.random() < 0.005,
        "MasterRecordId": None,
        "AccountId": rng.choice(org.accounts),
        "LastName": last,
        "FirstName": first,
        "Salutation": salutation,
        "Name": f"{first} {last}",
        "MailingStreet": addr["street"],
        "MailingCity": addr["city"],
        "MailingState": addr["state"],
        "MailingPostalCode": addr["postalCode"],
        "MailingCountry": addr["country"],
        "MailingLatitude": addr["latitude"],
        "MailingLongitude": addr["longitude"],
        "MailingGeocodeAccuracy": addr["geocodeAccuracy"],
        "MailingAddress": addr,
        "Phone": _phone(rng, style, city),
        "MobilePhone": _phone(rng, style, city) if rng.random() < 0.6 else None,
        "Email": email if rng.random() < 0.97 else None,
        "Title": rng.choice(TITLES),
        "Department": rng.choice(DEPARTMENTS),
        "LeadSource": rng.choice(LEAD_SOURCES),
        "Birthdate": _day(
            dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 18000))
        )
        if rng.random() < 0.5
        else None,
        "OwnerId": rng.choice(org.users),
        "HasOptedOutOfEmail": rng.random() < 0.1,
        "DoNotCall": rng.random() < 0.05,
    }
    _audit(rng, org, mod, rec)
    rec["LastActivityDate"] = _day(mod.date()) if rng.random() < 0.4 else None
    rec["EmailBouncedReason"] = None
    rec["Level__c"] = rng.choice(("Primary", "Secondary", "Tertiary", None))
    rec["Languages__c"] = rng.choice(("English", "English;Spanish", "Hindi", None))
    rec["Interests__c"] = _multi(rng, INTERESTS)
    rec["Lifetime_Value__c"] = round(rng.uniform(0, 250000), 2)
    return rec


def _lead(rng: random.Random, org: _Org, i: int, mod: dt.datetime) -> dict[str, Any]:
    first, last, salutation, email = _person(rng)
    addr, style, city = _address(rng)
    converted = rng.random() < 0.15
    rec: dict[str, Any] = {
        "Id": _sf_id(KEY_PREFIX["Lead"], i),
        "IsDeleted": rng.random() < 0.005,
        "LastName": last,
        "FirstName": first,
        "Salutation": salutation,
        "Name": f"{first} {last}",
        "Title": rng.choice(TITLES),
        "Company": rng.choice(COMPANIES),
        "Street": addr["street"],
        "City": addr["city"],
        "State": addr["state"],
        "PostalCode": addr["postalCode"],
        "Country": addr["country"],
        "Latitude": addr["latitude"],
        "Longitude": addr["longitude"],
        "GeocodeAccuracy": addr["geocodeAccuracy"],
        "Address": addr,
        "Phone": _phone(rng, style, city),
        "MobilePhone": _phone(rng, style, city) if rng.random() < 0.5 else None,
        "Email": email if rng.random() < 0.95 else None,
        "Website": f"https://www.{rng.choice(EMAIL_DOMAINS)}",
        "LeadSource": rng.choice(LEAD_SOURCES),
        "Status": rng.choice(
            ("Open - Not Contacted", "Working - Contacted", "Closed - Converted")
        ),
        "Industry": rng.choice(INDUSTRIES),
        "Rating": rng.choice(("Hot", "Warm", "Cold", None)),
        "AnnualRevenue": float(rng.randint(1, 5000) * 10000),
        "NumberOfEmployees": rng.randint(1, 20000),
        "OwnerId": rng.choice(org.users),
        "HasOptedOutOfEmail": rng.random() < 0.1,
        "IsConverted": converted,
        "ConvertedDate": _day(mod.date()) if converted else None,
        "ConvertedAccountId": rng.choice(org.accounts) if converted else None,
        "ConvertedContactId": org.ref("Contact") if converted else None,
        "ConvertedOpportunityId": org.ref("Opportunity") if converted else None,
        "IsUnreadByOwner": rng.random() < 0.3,
    }
    _audit(rng, org, mod, rec)
    rec["LastActivityDate"] = _day(mod.date()) if rng.random() < 0.4 else None
    rec["DoNotCall"] = rng.random() < 0.05
    rec["ProductInterest__c"] = _multi(rng, PRODUCTS)
    rec["NumberofLocations__c"] = float(rng.randint(1, 300))
    return rec


def _opportunity(
    rng: random.Random, org: _Org, i: int, mod: dt.datetime
) -> dict[str, Any]:
    stage, probability, closed, won, forecast = rng.choice(STAGES)
    amount = round(rng.uniform(500, 500000), 2)
    close = mod.date() + dt.timedelta(days=rng.randint(-60, 120))
    quarter = (close.month - 1) // 3 + 1
    rec: dict[str, Any] = {
        "Id": _sf_id(KEY_PREFIX["Opportunity"], i),
        "IsDeleted": rng.random() < 0.005,
        "AccountId": rng.choice(org.accounts),
        "IsPrivate": False,
        "Name": f"{rng.choice(COMPANIES)} - {rng.choice(PRODUCTS)}",
        "Description": rng.choice((None, "Renewal of annual contract.", "Upsell.")),
        "StageName": stage,
        "Amount": amount,
        "Probability": probability,
        "ExpectedRevenue": round(amount * probability / 100, 2),
        "TotalOpportunityQuantity": float(rng.randint(1, 50)),
        "CloseDate": _day(close),
        "Type": rng.choice(("New Customer", "Existing Customer - Upgrade", None)),
        "NextStep": rng.choice((None, "Send proposal", "Schedule demo")),
        "LeadSource": rng.choice(LEAD_SOURCES),
        "IsClosed": closed,
        "IsWon": won,
        "ForecastCategory": forecast,
        "ForecastCategoryName": forecast,
        "CampaignId": rng.choice(org.campaigns) if rng.random() < 0.3 else None,
        "HasOpportunityLineItem": rng.random() < 0.5,
        "OwnerId": rng.choice(org.users),
        "ContactId": org.ref("Contact"),
    }
    _audit(rng, org, mod, rec)
    rec["LastActivityDate"] = _day(mod.date()) if rng.random() < 0.4 else None
    rec["FiscalQuarter"] = quarter
    rec["FiscalYear"] = close.year
    rec["Fiscal"] = f"{close.year} {quarter}"
    rec["Competitors__c"] = _multi(rng, COMPETITORS)
    return rec


def _task(rng: random.Random, org: _Org, i: int, mod: dt.datetime) -> dict[str, Any]:
    who_stream = "Contact" if rng.random() < 0.7 else "Lead"
    closed = rng.random() < 0.6
    call = rng.random() < 0.3
    rec: dict[str, Any] = {
        "Id": _sf_id(KEY_PREFIX["Task"], i),
        "WhoId": org.ref(who_stream),
        "WhatId": org.ref("Opportunity") if rng.random() < 0.4 else None,
        "Subject": rng.choice(TASK_SUBJECTS),
        "ActivityDate": _day(mod.date() + dt.timedelta(days=rng.randint(0, 14))),
        "Status": "Completed" if closed else rng.choice(("Not Started", "In Progress")),
        "Priority": rng.choice(("High", "Normal", "Low")),
        "IsHighPriority": False,
        "OwnerId": rng.choice(org.users),
        "Description": rng.choice((None, "Left a voicemail.", "Discussed pricing.")),
        "IsDeleted": rng.random() < 0.005,
        "AccountId": rng.choice(org.accounts),
        "IsClosed": closed,
    }
    rec["IsHighPriority"] = rec["Priority"] == "High"
    _audit(rng, org, mod, rec)
    rec["IsArchived"] = False
    rec["CallDurationInSeconds"] = rng.randint(10, 3600) if call else None
    rec["CallType"] = rng.choice(("Inbound", "Outbound")) if call else None
    rec["CallDisposition"] = rng.choice(("Connected", "No answer")) if call else None
    reminder = rng.random() < 0.2
    rec["ReminderDateTime"] = _ts(mod + dt.timedelta(days=1)) if reminder else None
    rec["IsReminderSet"] = reminder
    rec["TaskSubtype"] = "Call" if call else rng.choice(("Task", "Email"))
    rec["CompletedDateTime"] = _ts(mod) if closed else None
    return rec


_BUILDERS: dict[str, Callable[[random.Random, _Org, int, dt.datetime], dict[str, Any]]]
_BUILDERS = {
    "Contact": _contact,
    "Lead": _lead,
    "Opportunity": _opportunity,
    "Task": _task,
}


def split_counts(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Split n records across streams by the mix weights (largest remainder).

    Args:
        n: total number of records.
        mix: weight per stream.

    Returns:
        The record count per stream, summing to n.
    """
    total = sum(mix.values())
    raw = {s: n * w / total for s, w in mix.items()}
    counts = {s: int(v) for s, v in raw.items()}
    left = n - sum(counts.values())
    for s in sorted(raw, key=lambda s: raw[s] - counts[s], reverse=True)[:left]:
        counts[s] += 1
    return counts


def messages(
    n: int, mix: dict[str, float] | None = None, seed: int = 8, *, wide: bool = False
) -> Iterator[str]:
    """Yield the Singer lines (without newline) for n records.

    Args:
        n: total number of RECORD messages.
        mix: weight per stream (default DEFAULT_MIX); streams come in STREAMS order.
        seed: the random seed.
        wide: select the wide field list (about 15% more bytes) instead of the
            default (about 1.2 KB per record with its STATE).

    Yields:
        One serialised Singer message per item.
    """
    counts = split_counts(n, mix or DEFAULT_MIX)
    rng = _FastRandom(seed)
    org = _Org(rng, counts)
    dumps = json.dumps
    # A first sync: the tap starts from an empty state, names the current stream,
    # then keeps the stream version under "versions" and the bookmark under
    # "bookmarks" (in that key order, as singer-python's state helpers build it).
    state: dict[str, Any] = {}
    extracted = _ts(EXTRACTED)
    for stream in STREAMS:
        count = counts.get(stream, 0)
        if count == 0:
            continue
        state["current_stream"] = stream
        yield dumps({"type": "STATE", "value": state})
        yield dumps(
            {
                "type": "SCHEMA",
                "stream": stream,
                "schema": stream_schema(stream, wide=wide),
                "key_properties": ["Id"],
                "bookmark_properties": ["SystemModstamp"],
            }
        )
        yield dumps(
            {"type": "ACTIVATE_VERSION", "stream": stream, "version": STREAM_VERSION}
        )
        bookmark: dict[str, Any] = {}
        state.setdefault("bookmarks", {})[stream] = bookmark
        state.setdefault("versions", {})[stream] = STREAM_VERSION
        build = _BUILDERS[stream]
        names = [name for name, _ in (WIDE_FIELDS if wide else FIELDS)[stream]]
        moment = START
        for i in range(1, count + 1):
            moment += dt.timedelta(seconds=rng.randint(1, 120))
            full = build(rng, org, i, moment)
            rec = {name: full[name] for name in names}
            yield dumps(
                {
                    "type": "RECORD",
                    "stream": stream,
                    "record": rec,
                    "version": STREAM_VERSION,
                    "time_extracted": extracted,
                }
            )
            bookmark["SystemModstamp"] = rec["SystemModstamp"]
            yield dumps({"type": "STATE", "value": state})
        yield dumps({"type": "STATE", "value": state})  # the tap's end-of-stream STATE
    state["current_stream"] = None
    yield dumps({"type": "STATE", "value": state})


def write(
    path: Path,
    n: int,
    mix: dict[str, float] | None = None,
    seed: int = 8,
    *,
    wide: bool = False,
) -> int:
    """Write the input file, streaming, and return its size in bytes.

    Args:
        path: where to write.
        n: total number of records.
        mix: weight per stream.
        seed: the random seed.
        wide: select the wide field list.

    Returns:
        The file size in bytes.
    """
    tmp = path.with_suffix(path.suffix + ".part")
    with tmp.open("w", encoding="utf-8") as out:
        _write_lines(out, messages(n, mix, seed, wide=wide))
    tmp.replace(path)
    return path.stat().st_size


def _write_lines(out: IO[str], lines: Iterator[str]) -> None:
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if len(buffer) >= 2000:
            out.write("\n".join(buffer) + "\n")
            buffer.clear()
    if buffer:
        out.write("\n".join(buffer) + "\n")


def parse_mix(text: str) -> dict[str, float]:
    """Parse `Contact=4,Lead=1` (or `Contact`) into mix weights.

    Args:
        text: comma-separated stream names, each optionally `=weight`.

    Returns:
        The weights.

    Raises:
        ValueError: on an unknown stream.
    """
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        if name not in STREAMS:
            msg = f"unknown stream {name!r}; choose from {', '.join(STREAMS)}"
            raise ValueError(msg)
        mix[name] = float(weight) if weight else 1.0
    return mix


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: the arguments.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--mix", default=None, help="e.g. Contact=4,Lead=2,Task=1")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", default="-", help="file path, or - for stdout")
    parser.add_argument("--wide", action="store_true", help="select more fields")
    args = parser.parse_args(argv)
    mix = parse_mix(args.mix) if args.mix else None
    if args.out == "-":
        _write_lines(sys.stdout, messages(args.n, mix, args.seed, wide=args.wide))
    else:
        write(Path(args.out), args.n, mix, args.seed, wide=args.wide)
    return 0


if __name__ == "__main__":
    sys.exit(main())
