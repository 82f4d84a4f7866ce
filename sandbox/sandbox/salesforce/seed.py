"""The deterministic sample org: the same records for the same size, every time."""

from __future__ import annotations

# ruff: noqa: PLR2004 - sample-data probabilities and sizes
import datetime as dt
import itertools
import json
import random
from typing import TYPE_CHECKING, Any, TypeVar

from sandbox.salesforce import schema
from sandbox.salesforce.dml import INTEGRATION_USER_ID, derive, new_record
from sandbox.salesforce.values import UTC, format_datetime, parse_datetime

if TYPE_CHECKING:
    from sandbox.salesforce.store import Record, Store

# Records per object for each seed size.
SIZES: dict[str, dict[str, int]] = {
    "small": {
        "User": 4,
        "Account": 10,
        "Contact": 30,
        "Lead": 24,
        "Campaign": 5,
        "CampaignMember": 20,
        "Opportunity": 12,
        "Case": 10,
        "Task": 20,
        "Event": 10,
        "CleverTap_Engagement__c": 20,
    },
    "demo": {
        "User": 12,
        "Account": 150,
        "Contact": 1200,
        "Lead": 800,
        "Campaign": 24,
        "CampaignMember": 900,
        "Opportunity": 300,
        "Case": 250,
        "Task": 600,
        "Event": 300,
        "CleverTap_Engagement__c": 500,
    },
}

FIRST = (
    "Aarav",
    "Priya",
    "Rohan",
    "Ananya",
    "Vikram",
    "Meera",
    "James",
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Sofia",
    "Lucas",
    "Mia",
    "Arjun",
    "Isha",
    "Chen",
    "Yuki",
    "Omar",
    "Fatima",
    "Diego",
    "Lucia",
    "Kwame",
    "Amara",
    "Hannah",
    "Felix",
    "Zara",
    "Leo",
)
LAST = (
    "Sharma",
    "Patel",
    "Iyer",
    "Reddy",
    "Gupta",
    "Smith",
    "Johnson",
    "Garcia",
    "Müller",
    "Rossi",
    "Tanaka",
    "Kim",
    "Haddad",
    "Okafor",
    "Silva",
    "Nguyen",
    "O'Brien",
    "Dubois",
    "Kowalski",
    "Andersson",
    "Mehta",
    "Fernandes",
    "Costa",
)
COMPANIES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Wonka",
    "Massive Dynamic",
    "Oscorp",
    "Aperture",
    "Pied Piper",
    "Nakatomi",
    "Gringotts",
    "Monarch",
    "Zenith",
)
SUFFIXES = ("Corp", "Inc", "Ltd", "Pvt Ltd", "GmbH", "Group", "Labs", "Systems")
CITIES = (
    ("Mumbai", "MH", "400001", "India", 19.076, 72.8777),
    ("Bengaluru", "KA", "560001", "India", 12.9716, 77.5946),
    ("San Francisco", "CA", "94105", "United States", 37.7897, -122.3972),
    ("New York", "NY", "10001", "United States", 40.7506, -73.9972),
    ("London", "", "EC1A 1BB", "United Kingdom", 51.5201, -0.0976),
    ("Singapore", "", "018956", "Singapore", 1.2806, 103.8503),
    ("Berlin", "BE", "10115", "Germany", 52.532, 13.3849),
    ("São Paulo", "SP", "01310-100", "Brazil", -23.5614, -46.6559),
)
TITLES = (
    "VP Marketing",
    "Growth Manager",
    "CTO",
    "Product Owner",
    "Analyst",
    "Head of CRM",
    "Engineer",
    "Director of Sales",
    None,
)
EVENTS = (
    "App Launched",
    "Charged",
    "Product Viewed",
    "Added To Cart",
    "Notification Clicked",
    "Notification Viewed",
    "Survey Submitted",
)
DEALS = ("Platform", "Add-on", "Renewal")
KINDS = ("fast-growing", "established", "regional")
THEMES = ("Spring Sale", "Onboarding", "Win-back", "Diwali Offers", "Cart Recovery")
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 700 * 24 * 3600

_T = TypeVar("_T")


class _Seeder:
    def __init__(self, store: Store, size: str) -> None:
        self.store = store
        self.rng = random.Random(f"sandbox-salesforce-{size}")  # noqa: S311 - sample data, not crypto
        # Fields added later draw from their own stream, so the records and values
        # of the first version stay exactly as they were (golden files use them).
        self.extra = random.Random(f"sandbox-salesforce-{size}-v2")  # noqa: S311 - sample data
        self.counts = SIZES[size]
        self.out: list[tuple[str, Record]] = []
        self.ids: dict[str, list[str]] = {}

    def new(
        self, name: str, values: dict[str, Any], *, created: dt.datetime | None = None
    ) -> Record:
        sobject = schema.OBJECTS[name]
        record = new_record(self.store, sobject)
        if "OwnerId" in sobject.field_map:
            record["OwnerId"] = self.pick_id("User") or INTEGRATION_USER_ID
        record.update(values)
        when = created or self.when()
        modified = min(
            when + dt.timedelta(seconds=self.rng.randint(0, 90 * 86400)),
            START + dt.timedelta(seconds=SPAN_SECONDS + 86400),
        )
        record["CreatedDate"] = format_datetime(when)
        record["CreatedById"] = INTEGRATION_USER_ID
        if "LastModifiedDate" in sobject.field_map:
            record["LastModifiedDate"] = format_datetime(modified)
            record["LastModifiedById"] = INTEGRATION_USER_ID
        if "SystemModstamp" in sobject.field_map:
            record["SystemModstamp"] = format_datetime(modified)
        derive(sobject, record)
        self.out.append((name, record))
        self.ids.setdefault(name, []).append(record["Id"])
        return record

    def when(self) -> dt.datetime:
        return START + dt.timedelta(seconds=self.rng.randint(0, SPAN_SECONDS))

    def pick_id(self, name: str) -> str | None:
        ids = self.ids.get(name)
        return self.rng.choice(ids) if ids else None

    def maybe(self, value: _T, chance: float = 0.8) -> _T | None:
        return value if self.rng.random() < chance else None

    def phone(self) -> str:
        return f"+91 {self.rng.randint(70000, 99999)} {self.rng.randint(10000, 99999)}"

    def address(self, prefix: str) -> dict[str, Any]:
        city, state, postal, country, lat, lon = self.rng.choice(CITIES)
        return {
            f"{prefix}Street": f"{self.rng.randint(1, 999)} {self.rng.choice(LAST)} "
            f"Road\nSuite {self.rng.randint(1, 40)}",
            f"{prefix}City": city,
            f"{prefix}State": state or None,
            f"{prefix}PostalCode": postal,
            f"{prefix}Country": country,
            f"{prefix}Latitude": round(lat + self.rng.uniform(-0.05, 0.05), 6),
            f"{prefix}Longitude": round(lon + self.rng.uniform(-0.05, 0.05), 6),
            f"{prefix}GeocodeAccuracy": self.rng.choice(schema.GEOCODE_ACCURACY),
        }

    def person(self, index: int, domain: str) -> dict[str, Any]:
        first = self.rng.choice(FIRST)
        last = self.rng.choice(LAST)
        email_last = last.lower().replace("'", "").replace("ü", "u")
        return {
            "FirstName": first,
            "LastName": last,
            "Email": f"{first.lower()}.{email_last}{index}@{domain}",
            "Phone": self.maybe(self.phone()),
            "MobilePhone": self.maybe(self.phone(), 0.6),
            "Title": self.rng.choice(TITLES),
        }

    def run(self) -> list[tuple[str, Record]]:
        """Every object in dependency order, then the later fields (own stream)."""
        self._users()
        self._accounts()
        self._contacts()
        self._leads()
        self._campaigns()
        self._campaign_members()
        self._opportunities()
        self._cases()
        self._tasks()
        self._events()
        self._engagements()
        self.rng = self.extra
        self.finish()
        self._duplicate_rules()
        return self.out

    def _duplicate_rules(self) -> None:
        """The standard rules a new org ships with, active on Account, Contact, Lead.

        Last, so the sample records before them keep their values.
        """
        for sobject in ("Account", "Contact", "Lead"):
            self.new(
                "DuplicateRule",
                {
                    "DeveloperName": f"Standard_{sobject}_Duplicate_Rule",
                    "MasterLabel": f"Standard {sobject} Duplicate Rule",
                    "IsActive": True,
                    "Language": "en_US",
                    "SobjectType": sobject,
                },
                created=START,
            )

    def _users(self) -> None:
        rng = self.rng
        n = self.counts
        self.new(
            "User",
            {
                "Username": "integration@sandbox.example.com",
                "FirstName": "Integration",
                "LastName": "User",
                "Email": "integration@sandbox.example.com",
                "Alias": "integ",
                "IsActive": True,
                "Title": "API integration",
                "Department": "IT",
                "TimeZoneSidKey": "Europe/London",
            },
            created=START,
        )
        for i in range(1, n["User"]):
            person = self.person(i, "sandbox.example.com")
            self.new(
                "User",
                {
                    "Username": f"user{i}@sandbox.example.com",
                    "FirstName": person["FirstName"],
                    "LastName": person["LastName"],
                    "Email": person["Email"],
                    "Alias": f"u{i}",
                    "IsActive": i % 5 != 4,
                    "Title": person["Title"],
                    "Department": rng.choice(("Sales", "Support", "Marketing")),
                    "Phone": person["Phone"],
                    "TimeZoneSidKey": rng.choice(
                        ("Asia/Kolkata", "America/Los_Angeles")
                    ),
                },
                created=START,
            )

    def _accounts(self) -> None:
        rng = self.rng
        n = self.counts
        for i in range(n["Account"]):
            company = f"{COMPANIES[i % len(COMPANIES)]} {rng.choice(SUFFIXES)}"
            if i >= len(COMPANIES):
                company += f" {i // len(COMPANIES) + 1}"
            slug = company.lower().replace(" ", "")
            self.new(
                "Account",
                {
                    "Name": company,
                    "AccountNumber": f"ACC-{10000 + i}",
                    "ParentId": self.pick_id("Account")
                    if i > 5 and i % 7 == 0
                    else None,
                    "Type": rng.choice(schema.ACCOUNT.field_map["Type"].picklist),
                    "Industry": rng.choice(schema.INDUSTRIES),
                    "Rating": self.maybe(rng.choice(("Hot", "Warm", "Cold"))),
                    "AnnualRevenue": float(rng.randint(5, 5000) * 100000),
                    "NumberOfEmployees": rng.randint(5, 20000),
                    "Phone": self.phone(),
                    "Website": f"https://www.{slug}.example.com",
                    "Description": self.maybe(
                        f"{company} is a {rng.choice(KINDS)} "
                        "customer.\nKey contact: see Contacts."
                    ),
                    **self.address("Billing"),
                    **(self.address("Shipping") if rng.random() < 0.5 else {}),
                },
            )

    def _contacts(self) -> None:
        rng = self.rng
        n = self.counts
        for i in range(n["Contact"]):
            person = self.person(i, "example.com")
            has_ct = rng.random() < 0.85
            nps = rng.randint(0, 10) if rng.random() < 0.5 else None
            self.new(
                "Contact",
                {
                    **person,
                    "AccountId": self.pick_id("Account"),
                    "Salutation": self.maybe(rng.choice(("Mr.", "Ms.", "Dr."))),
                    "Department": self.maybe(
                        rng.choice(("Marketing", "Engineering", "Finance"))
                    ),
                    "Birthdate": self.maybe(
                        (
                            dt.date(1960, 1, 1)
                            + dt.timedelta(days=rng.randint(0, 15000))
                        ).isoformat(),
                        0.6,
                    ),
                    **self.address("Mailing"),
                    "LeadSource": rng.choice(schema.LEAD_SOURCES),
                    "HasOptedOutOfEmail": rng.random() < 0.1,
                    "DoNotCall": rng.random() < 0.05,
                    "Description": self.maybe(
                        'Met at "Growth Summit", likes push.', 0.2
                    ),
                    "CleverTap_Id__c": f"ct-{i:06d}" if has_ct else None,
                    "NPS_Score__c": float(nps) if nps is not None else None,
                    "Last_Engagement_Date__c": format_datetime(self.when())
                    if has_ct
                    else None,
                    "Last_Engagement_Channel__c": rng.choice(schema.CHANNELS)
                    if has_ct
                    else None,
                    "Last_Engagement_Event__c": rng.choice(EVENTS) if has_ct else None,
                    "Last_Feedback__c": "Great app, but notifications come too often."
                    if nps is not None and nps < 7
                    else None,
                    "Last_Feedback_Date__c": self.when().date().isoformat()
                    if nps is not None
                    else None,
                    "Engagement_Score__c": round(rng.uniform(0, 100), 2),
                    "Lifetime_Value__c": round(rng.uniform(0, 25000), 2),
                    "Interests__c": ";".join(
                        sorted(rng.sample(schema.INTERESTS, rng.randint(0, 3)))
                    )
                    or None,
                    "Push_Opt_In__c": rng.random() < 0.7,
                },
            )

    def _leads(self) -> None:
        rng = self.rng
        n = self.counts
        statuses = schema.LEAD.field_map["Status"].picklist
        for i in range(n["Lead"]):
            person = self.person(i, "prospect.example.org")
            company = f"{rng.choice(COMPANIES)} {rng.choice(SUFFIXES)}"
            # Two leads share a CleverTap Id: upserts on it answer 300.
            ct_id = f"ct-lead-{i:06d}" if i != 1 else "ct-lead-000000"
            self.new(
                "Lead",
                {
                    **person,
                    "Company": company,
                    "Status": rng.choice(statuses),
                    "Website": self.maybe(
                        f"https://{company.split(maxsplit=1)[0].lower()}.example"
                    ),
                    **self.address(""),
                    "LeadSource": rng.choice(schema.LEAD_SOURCES),
                    "Industry": rng.choice(schema.INDUSTRIES),
                    "Rating": rng.choice(("Hot", "Warm", "Cold")),
                    "AnnualRevenue": float(rng.randint(1, 900) * 10000),
                    "NumberOfEmployees": rng.randint(1, 5000),
                    "HasOptedOutOfEmail": rng.random() < 0.1,
                    "CleverTap_Id__c": ct_id if rng.random() < 0.9 or i < 2 else None,
                    "Lead_Score__c": float(rng.randint(0, 100)),
                    "Last_Engagement_Date__c": format_datetime(self.when()),
                },
            )

    def _campaigns(self) -> None:
        rng = self.rng
        n = self.counts
        for i in range(n["Campaign"]):
            sent = rng.randint(1000, 200000)
            delivered = int(sent * rng.uniform(0.85, 0.99))
            clicked = int(delivered * rng.uniform(0.01, 0.15))
            start = (START + dt.timedelta(days=rng.randint(0, 600))).date()
            channel = rng.choice(schema.CHANNELS)
            self.new(
                "Campaign",
                {
                    "Name": f"{channel} - {rng.choice(THEMES)} {i + 1}",
                    "Type": "Push" if channel == "Push" else "Email",
                    "Status": rng.choice(("Planned", "In Progress", "Completed")),
                    "StartDate": start.isoformat(),
                    "EndDate": (
                        start + dt.timedelta(days=rng.randint(7, 60))
                    ).isoformat(),
                    "BudgetedCost": float(rng.randint(1, 50) * 1000),
                    "ActualCost": float(rng.randint(1, 50) * 1000),
                    "ExpectedRevenue": float(rng.randint(10, 500) * 1000),
                    "ExpectedResponse": round(rng.uniform(1, 20), 2),
                    "NumberSent": float(sent),
                    "IsActive": rng.random() < 0.5,
                    "CleverTap_Campaign_Id__c": f"{1700000000 + i * 7919}",
                    "CleverTap_Channel__c": channel,
                    "CleverTap_Sent__c": float(sent),
                    "CleverTap_Delivered__c": float(delivered),
                    "CleverTap_Viewed__c": float(int(delivered * 0.4)),
                    "CleverTap_Clicked__c": float(clicked),
                    "CleverTap_Converted__c": float(int(clicked * 0.2)),
                    "CleverTap_Click_Rate__c": round(100 * clicked / delivered, 2),
                    "CleverTap_Last_Synced__c": format_datetime(self.when()),
                },
            )

    def _campaign_members(self) -> None:
        rng = self.rng
        n = self.counts
        members: set[tuple[str, str]] = set()
        for _ in range(n["CampaignMember"]):
            campaign = self.pick_id("Campaign") or ""
            use_contact = rng.random() < 0.6
            who = self.pick_id("Contact" if use_contact else "Lead") or ""
            if (campaign, who) in members:
                continue
            members.add((campaign, who))
            status = rng.choice(("Sent", "Responded", "Opened", "Clicked"))
            self.new(
                "CampaignMember",
                {
                    "CampaignId": campaign,
                    "ContactId": who if use_contact else None,
                    "LeadId": None if use_contact else who,
                    "Status": status,
                    "FirstRespondedDate": self.when().date().isoformat()
                    if status in {"Responded", "Clicked"}
                    else None,
                },
            )

    def _opportunities(self) -> None:
        rng = self.rng
        n = self.counts
        stages = schema.OPPORTUNITY.field_map["StageName"].picklist
        for i in range(n["Opportunity"]):
            stage = rng.choice(stages)
            created = self.when()
            amount = float(rng.randint(10, 900) * 500)
            opp = self.new(
                "Opportunity",
                {
                    "AccountId": self.pick_id("Account"),
                    "Name": f"Deal {i + 1}: {rng.choice(DEALS)}",
                    "StageName": stage,
                    "Amount": amount,
                    "Probability": float(rng.choice((10, 20, 40, 60, 80, 100, 0))),
                    "CloseDate": (created + dt.timedelta(days=rng.randint(10, 120)))
                    .date()
                    .isoformat(),
                    "Type": rng.choice(schema.OPPORTUNITY.field_map["Type"].picklist),
                    "NextStep": self.maybe("Send proposal", 0.5),
                    "LeadSource": rng.choice(schema.LEAD_SOURCES),
                    "ForecastCategoryName": rng.choice(
                        ("Pipeline", "Best Case", "Commit")
                    ),
                    "CampaignId": self.maybe(self.pick_id("Campaign"), 0.3),
                },
                created=created,
            )
            for step in range(rng.randint(1, 3)):
                self.new(
                    "OpportunityHistory",
                    {
                        "OpportunityId": opp["Id"],
                        "StageName": stages[min(step * 2, 6)],
                        "Amount": amount,
                        "ExpectedRevenue": amount * 0.2 * (step + 1),
                        "CloseDate": opp["CloseDate"],
                        "Probability": float(10 + 20 * step),
                        "ForecastCategory": "Pipeline",
                    },
                    created=created + dt.timedelta(days=step * 3),
                )

    def _cases(self) -> None:
        rng = self.rng
        n = self.counts
        case_statuses = ("New", "Working", "Escalated", "Closed")
        for i in range(n["Case"]):
            created = self.when()
            status = rng.choice(case_statuses)
            contact = self.pick_id("Contact")
            case = self.new(
                "Case",
                {
                    "ContactId": contact,
                    "AccountId": self.pick_id("Account"),
                    "SuppliedEmail": f"customer{i}@example.com",
                    "Subject": rng.choice(
                        (
                            "App crashes on login",
                            "Refund request",
                            "Push not received",
                            "Update billing",
                        )
                    ),
                    "Description": self.maybe("Steps:\n1. open app\n2. tap 'Pay'", 0.6),
                    "Status": status,
                    "Priority": rng.choice(("High", "Medium", "Low")),
                    "Origin": rng.choice(("Phone", "Email", "Web", "App")),
                    "Type": rng.choice(("Question", "Problem", "Feature Request")),
                    "Reason": rng.choice(("Performance", "Feedback", "Other")),
                    "ClosedDate": format_datetime(created + dt.timedelta(days=2))
                    if status == "Closed"
                    else None,
                    "IsEscalated": status == "Escalated",
                },
                created=created,
            )
            self.new(
                "CaseHistory",
                {
                    "CaseId": case["Id"],
                    "Field": "created",
                    "DataType": "Text",
                    "OldValue": None,
                    "NewValue": None,
                },
                created=created,
            )
            if status != "New":
                self.new(
                    "CaseHistory",
                    {
                        "CaseId": case["Id"],
                        "Field": "Status",
                        "DataType": "DynamicEnum",
                        "OldValue": "New",
                        "NewValue": status,
                    },
                    created=created + dt.timedelta(hours=5),
                )

    def _tasks(self) -> None:
        rng = self.rng
        n = self.counts
        for _ in range(n["Task"]):
            self.new(
                "Task",
                {
                    "WhoId": self.pick_id(rng.choice(("Contact", "Lead"))),
                    "WhatId": self.maybe(self.pick_id("Opportunity"), 0.5),
                    "Subject": rng.choice(("Call", "Send Quote", "Follow up on NPS")),
                    "ActivityDate": self.when().date().isoformat(),
                    "Status": rng.choice(("Not Started", "In Progress", "Completed")),
                    "Priority": rng.choice(("High", "Normal", "Low")),
                    "Description": self.maybe(
                        "Discuss renewal; customer asked about SMS.", 0.4
                    ),
                    "CallDurationInSeconds": rng.randint(30, 1800)
                    if rng.random() < 0.5
                    else None,
                    "TaskSubtype": rng.choice(("Task", "Email", "Call")),
                },
            )

    def _events(self) -> None:
        rng = self.rng
        n = self.counts
        for _ in range(n["Event"]):
            start = self.when().replace(minute=0, second=0)
            minutes = rng.choice((30, 60, 90))
            self.new(
                "Event",
                {
                    "WhoId": self.pick_id(rng.choice(("Contact", "Lead"))),
                    "WhatId": self.maybe(self.pick_id("Account"), 0.5),
                    "Subject": rng.choice(("Meeting", "Call", "Demo")),
                    "Location": rng.choice(("Zoom", "Office", "Customer site")),
                    "IsAllDayEvent": False,
                    "ActivityDateTime": format_datetime(start),
                    "ActivityDate": start.date().isoformat(),
                    "StartDateTime": format_datetime(start),
                    "EndDateTime": format_datetime(
                        start + dt.timedelta(minutes=minutes)
                    ),
                    "DurationInMinutes": minutes,
                    "ShowAs": "Busy",
                },
            )

    def _engagements(self) -> None:
        rng = self.rng
        n = self.counts
        contacts = [r for name, r in self.out if name == "Contact"]
        for i in range(n["CleverTap_Engagement__c"]):
            source = rng.choice(contacts)
            event = rng.choice(EVENTS)
            props: dict[str, Any] = {
                "platform": rng.choice(("Android", "iOS", "Web")),
                "app_version": f"5.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
            }
            if event == "Charged":
                props["amount"] = round(rng.uniform(5, 500), 2)
            self.new(
                "CleverTap_Engagement__c",
                {
                    "CleverTap_Event_Id__c": f"evt-{i:08d}",
                    "CleverTap_Id__c": source["CleverTap_Id__c"],
                    "Email__c": source["Email"],
                    "Event_Name__c": event,
                    "Event_Timestamp__c": format_datetime(self.when()),
                    "Channel__c": rng.choice(schema.CHANNELS),
                    "CleverTap_Campaign_Id__c": None,
                    "Properties__c": json.dumps(props, sort_keys=True),
                    "Value__c": props.get("amount"),
                    "Contact__c": source["Id"],
                },
            )

    # --- fields and records added after the first version (own random stream) ---

    def rows(self, name: str) -> list[Record]:
        return [record for kind, record in self.out if kind == name]

    def finish(self) -> None:
        """Lead.DoNotCall, Task.CompletedDateTime, Opportunity.ContactId, field history.

        Also makes sure the org has a won and a lost deal on accounts with contacts,
        and converted leads (with the Account and Contact the conversion made).
        """
        rng = self.extra
        for lead in self.rows("Lead"):
            lead["DoNotCall"] = rng.random() < 0.08
        for task in self.rows("Task"):
            if task["Status"] == "Completed":
                created = parse_datetime(task["CreatedDate"])
                modified = parse_datetime(task["LastModifiedDate"])
                done = created + (modified - created) * rng.uniform(0.3, 1.0)
                task["CompletedDateTime"] = format_datetime(done.replace(microsecond=0))
            else:
                task["CompletedDateTime"] = None
        self.convert_leads()
        by_account: dict[str, list[str]] = {}
        for contact in self.rows("Contact"):
            if contact["AccountId"]:
                by_account.setdefault(contact["AccountId"], []).append(contact["Id"])
        opportunities = self.rows("Opportunity")
        for opp in opportunities:
            staff = by_account.get(opp["AccountId"] or "", [])
            chance = 1.0 if opp["IsClosed"] else 0.8
            opp["ContactId"] = (
                rng.choice(staff) if staff and rng.random() < chance else None
            )
        staffed = [o for o in opportunities if o["ContactId"]]
        for stage, won in (("Closed Won", True), ("Closed Lost", False)):
            if any(o["IsClosed"] and o["IsWon"] is won for o in staffed):
                continue
            # Close the most recently listed open deal (never the first open one).
            open_deals = [o for o in staffed if not o["IsClosed"]]
            if len(open_deals) > 1:
                self.close_deal(open_deals[-1], stage)
        self.field_history()

    def close_deal(self, opp: Record, stage: str) -> None:
        won = stage == "Closed Won"
        history = [
            h
            for h in self.rows("OpportunityHistory")
            if h["OpportunityId"] == opp["Id"]
        ]
        last = max(parse_datetime(h["CreatedDate"]) for h in history)
        when = last + dt.timedelta(days=self.extra.randint(2, 20), hours=3)
        opp.update(
            {
                "StageName": stage,
                "Probability": 100.0 if won else 0.0,
                "ForecastCategoryName": "Closed" if won else "Omitted",
                "NextStep": None,
            }
        )
        derive(schema.OPPORTUNITY, opp)
        stamp = max(parse_datetime(opp["LastModifiedDate"]), when)
        opp["LastModifiedDate"] = opp["SystemModstamp"] = format_datetime(stamp)
        amount = opp["Amount"]
        self.new(
            "OpportunityHistory",
            {
                "OpportunityId": opp["Id"],
                "StageName": stage,
                "Amount": amount,
                "ExpectedRevenue": amount if won else 0.0,
                "CloseDate": opp["CloseDate"],
                "Probability": opp["Probability"],
                "ForecastCategory": "Closed" if won else "Omitted",
            },
            created=when,
        )

    def convert_leads(self) -> None:
        """Every `Closed - Converted` lead became one of the seeded Contacts.

        The lead keeps the person's name, email and phones as they were when it was
        converted; the Contact (and its Account) are the ones the conversion made,
        so the lead's dates are moved before the Contact's creation.
        """
        leads = self.rows("Lead")
        converted = [lead for lead in leads if lead["Status"] == "Closed - Converted"]
        if not converted and leads:
            converted = [leads[-1]]
        accounts = {a["Id"]: a for a in self.rows("Account")}
        candidates = [c for c in self.rows("Contact") if c["AccountId"] in accounts]
        chosen = self.extra.sample(candidates, min(len(candidates), len(converted)))
        for lead, contact in zip(converted, chosen, strict=False):
            made = parse_datetime(contact["CreatedDate"])
            created = min(
                parse_datetime(lead["CreatedDate"]),
                made - dt.timedelta(days=self.extra.randint(3, 60)),
            )
            account = accounts[contact["AccountId"]]
            lead.update(
                {
                    name: contact[name]
                    for name in (
                        "Salutation",
                        "FirstName",
                        "LastName",
                        "Title",
                        "Email",
                        "Phone",
                        "MobilePhone",
                        "HasOptedOutOfEmail",
                        "DoNotCall",
                    )
                }
            )
            lead.update(
                {
                    "Company": account["Name"],
                    "Industry": account["Industry"],
                    "Status": "Closed - Converted",
                    "IsConverted": True,
                    "ConvertedDate": made.date().isoformat(),
                    "ConvertedAccountId": account["Id"],
                    "ConvertedContactId": contact["Id"],
                    "CreatedDate": format_datetime(created),
                }
            )
            derive(schema.LEAD, lead)
            stamp = max(parse_datetime(lead["LastModifiedDate"]), made)
            lead["LastModifiedDate"] = lead["SystemModstamp"] = format_datetime(stamp)

    def field_history(self) -> None:
        """OpportunityFieldHistory: `created`, then each stage change of the deal."""
        history: dict[str, list[Record]] = {}
        for row in self.rows("OpportunityHistory"):
            history.setdefault(row["OpportunityId"], []).append(row)
        for opp in self.rows("Opportunity"):
            self.new(
                "OpportunityFieldHistory",
                {
                    "OpportunityId": opp["Id"],
                    "Field": "created",
                    "DataType": "Text",
                    "OldValue": None,
                    "NewValue": None,
                },
                created=parse_datetime(opp["CreatedDate"]),
            )
            rows = sorted(history.get(opp["Id"], []), key=lambda h: h["CreatedDate"])
            for before, after in itertools.pairwise(rows):
                if before["StageName"] == after["StageName"]:
                    continue
                self.new(
                    "OpportunityFieldHistory",
                    {
                        "OpportunityId": opp["Id"],
                        "Field": "StageName",
                        "DataType": "DynamicEnum",
                        "OldValue": before["StageName"],
                        "NewValue": after["StageName"],
                    },
                    created=parse_datetime(after["CreatedDate"]),
                )


def seed(store: Store, size: str) -> int:
    """Add the sample org of the given size ("small" or "demo") to the store.

    Returns:
        The number of records written.

    Raises:
        ValueError: an unknown size.
    """
    if size not in SIZES:
        msg = f"unknown seed size {size!r}; use one of {sorted(SIZES)}"
        raise ValueError(msg)
    records = _Seeder(store, size).run()
    store.put_many(records)
    return len(records)


def people_emails(size: str) -> list[tuple[str, str]]:
    """The (object, Email) of every Contact and Lead of the sample org, in seed order.

    Built in memory, as `seed` would build them (the same records every time), so
    another emulator can be seeded with people the org also has.

    Raises:
        ValueError: an unknown size.
    """
    if size not in SIZES:
        msg = f"unknown seed size {size!r}; use one of {sorted(SIZES)}"
        raise ValueError(msg)
    from sandbox.salesforce.store import Store  # noqa: PLC0415 - types-only import above

    store = Store(None)
    try:
        records = _Seeder(store, size).run()
    finally:
        store.close()
    found = {
        str(record["Email"]): name
        for name, record in records
        if name in {"Contact", "Lead"} and record.get("Email")
    }
    return [(name, email) for email, name in found.items()]
