"""The emulated org's metadata: objects, fields and their describe output."""

from __future__ import annotations

import dataclasses
from typing import Any

from sandbox.salesforce import org_metadata

# The REST describe `type` of each field, mapped to its SOAP type.
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "picklist": "xsd:string",
    "multipicklist": "xsd:string",
    "combobox": "xsd:string",
    "textarea": "xsd:string",
    "phone": "xsd:string",
    "email": "xsd:string",
    "url": "xsd:string",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
    "anyType": "xsd:anyType",
}

SHORT_TEXT = 255
ADDRESS_PARTS = (
    ("Street", "street", "textarea"),
    ("City", "city", "string"),
    ("State", "state", "string"),
    ("PostalCode", "postalCode", "string"),
    ("Country", "country", "string"),
    ("Latitude", "latitude", "double"),
    ("Longitude", "longitude", "double"),
    ("GeocodeAccuracy", "geocodeAccuracy", "picklist"),
)
GEOCODE_ACCURACY = ("Address", "NearAddress", "Block", "Street", "ZipCode", "City")


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of an sObject, with the describe attributes clients read."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    custom: bool = False
    picklist: tuple[str, ...] = ()
    restricted_picklist: bool = False
    default_value: Any = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    precision: int = 0
    scale: int = 0
    digits: int = 0
    defaulted_on_create: bool = False
    auto_number: bool = False
    calculated: bool = False
    compound_field_name: str | None = None
    id_lookup: bool = False
    required: bool = False

    @property
    def writable(self) -> bool:
        """Whether the field can be set on create or update."""
        return self.createable or self.updateable

    def describe(self) -> dict[str, Any]:
        """The field's entry in `fields` of an sObject describe."""
        label = self.label or _label(self.name)
        return {
            "aggregatable": self.type not in {"textarea", "address", "anyType"},
            "autoNumber": self.auto_number,
            "byteLength": self.length * 3,
            "calculated": self.calculated,
            "caseSensitive": False,
            "compoundFieldName": self.compound_field_name,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default_value,
            "defaultedOnCreate": self.defaulted_on_create,
            "digits": self.digits,
            "externalId": self.external_id,
            "filterable": self.type not in {"textarea", "address"}
            or self.length <= SHORT_TEXT,
            "groupable": self.type
            in {"id", "reference", "string", "picklist", "boolean", "email", "phone"},
            "idLookup": self.id_lookup,
            "label": label,
            "length": self.length,
            "name": self.name,
            "nameField": self.name == "Name",
            "nillable": self.nillable,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default_value,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "precision": self.precision,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted_picklist,
            "scale": self.scale,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.type not in {"textarea", "multipicklist", "address"},
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


@dataclasses.dataclass(frozen=True)
class SObject:
    """An sObject type of the emulated org."""

    name: str
    label: str
    key_prefix: str
    fields: tuple[Field, ...]
    custom: bool = False
    createable: bool = True
    validation: tuple[tuple[str, float, float, str], ...] = ()

    @property
    def field_map(self) -> dict[str, Field]:
        """Fields by exact API name."""
        return {f.name: f for f in self.fields}

    def field(self, name: str) -> Field | None:
        """Find a field by API name, case-insensitively (as Salesforce does)."""
        lowered = name.lower()
        for candidate in self.fields:
            if candidate.name.lower() == lowered:
                return candidate
        return None

    def describe_global(self, version: str) -> dict[str, Any]:
        """The object's entry in `GET sobjects`."""
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "activateable": False,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deletable": self.createable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label + "s",
            "layoutable": self.createable,
            "mergeable": False,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": self.createable,
            "triggerable": self.createable,
            "undeletable": self.createable,
            "updateable": self.createable,
            "urls": {
                "rowTemplate": base + "/{ID}",
                "describe": base + "/describe",
                "sobject": base,
            },
        }

    def describe(self, version: str) -> dict[str, Any]:
        """The full `GET sobjects/{name}/describe` document."""
        result = self.describe_global(version)
        result["fields"] = [f.describe() for f in self.fields]
        result["childRelationships"] = []
        result["recordTypeInfos"] = []
        result["urls"]["uiEditTemplate"] = None
        return result


def _label(name: str) -> str:
    base = name.removesuffix("__c").removesuffix("Id") or name
    return base.replace("_", " ")


# --- field constructors -------------------------------------------------------


def _f(name: str, type_: str, **kw: Any) -> Field:
    custom = name.endswith("__c")
    return Field(name=name, type=type_, custom=custom, **kw)


def text(name: str, length: int = 255, **kw: Any) -> Field:
    """A `string` field."""
    return _f(name, "string", length=length, **kw)


def required_text(name: str, length: int = 255, **kw: Any) -> Field:
    """A required `string` field."""
    return _f(name, "string", length=length, nillable=False, required=True, **kw)


def pick(name: str, values: tuple[str, ...], **kw: Any) -> Field:
    """A `picklist` field."""
    return _f(name, "picklist", length=255, picklist=values, **kw)


def multi(name: str, values: tuple[str, ...]) -> Field:
    """A `multipicklist` field."""
    return _f(name, "multipicklist", length=4099, picklist=values)


def flag(name: str, *, default: bool = False, **kw: Any) -> Field:
    """A `boolean` field (never null)."""
    return _f(
        name,
        "boolean",
        nillable=False,
        default_value=default,
        defaulted_on_create=True,
        **kw,
    )


def number(
    name: str, type_: str = "double", precision: int = 18, scale: int = 0, **kw: Any
) -> Field:
    """A numeric field: `double`, `currency` or `percent`."""
    return _f(name, type_, precision=precision, scale=scale, **kw)


def integer(name: str, **kw: Any) -> Field:
    """An `int` field."""
    return _f(name, "int", digits=9, **kw)


def ref(name: str, *targets: str, relationship: str | None = None, **kw: Any) -> Field:
    """A `reference` (lookup) field."""
    rel = relationship
    if rel is None:
        rel = name.removesuffix("__c") + "__r" if name.endswith("__c") else name[:-2]
    return _f(
        name, "reference", length=18, reference_to=targets, relationship_name=rel, **kw
    )


def address(prefix: str) -> tuple[Field, ...]:
    """A compound address field and its component fields."""
    compound = f"{prefix}Address"
    parts: list[Field] = []
    for suffix, _key, type_ in ADDRESS_PARTS:
        name = f"{prefix}{suffix}"
        if type_ == "double":
            parts.append(
                number(name, precision=18, scale=15, compound_field_name=compound)
            )
        elif type_ == "picklist":
            parts.append(pick(name, GEOCODE_ACCURACY, compound_field_name=compound))
        else:
            length = 255 if type_ == "textarea" else 80
            parts.append(_f(name, type_, length=length, compound_field_name=compound))
    whole = _f(compound, "address", createable=False, updateable=False)
    return (*parts, whole)


def read_only(field: Field) -> Field:
    """The same field, not createable nor updateable."""
    return dataclasses.replace(
        field, createable=False, updateable=False, required=False
    )


def system_fields(*, modstamp: bool = True, modified: bool = True) -> tuple[Field, ...]:
    """Audit fields every object carries."""
    fields = [
        flag("IsDeleted", createable=False, updateable=False),
        _f(
            "CreatedDate",
            "datetime",
            createable=False,
            updateable=False,
            nillable=False,
            defaulted_on_create=True,
        ),
        ref(
            "CreatedById",
            "User",
            createable=False,
            updateable=False,
            nillable=False,
            defaulted_on_create=True,
        ),
    ]
    if modified:
        fields += [
            _f(
                "LastModifiedDate",
                "datetime",
                createable=False,
                updateable=False,
                nillable=False,
                defaulted_on_create=True,
            ),
            ref(
                "LastModifiedById",
                "User",
                createable=False,
                updateable=False,
                nillable=False,
                defaulted_on_create=True,
            ),
        ]
    if modstamp:
        fields.append(
            _f(
                "SystemModstamp",
                "datetime",
                createable=False,
                updateable=False,
                nillable=False,
                defaulted_on_create=True,
            )
        )
    return tuple(fields)


ID_FIELD = _f(
    "Id",
    "id",
    length=18,
    nillable=False,
    createable=False,
    updateable=False,
    defaulted_on_create=True,
    id_lookup=True,
    label="Record ID",
)
OWNER = ref("OwnerId", "User", relationship="Owner", defaulted_on_create=True)


def name_field(*, parts: bool = True) -> tuple[Field, ...]:
    """FirstName, LastName (required) and the computed Name."""
    if not parts:
        return (required_text("Name", 80, id_lookup=True),)
    return (
        pick("Salutation", ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")),
        text("FirstName", 40),
        required_text("LastName", 80),
        read_only(text("Name", 121, id_lookup=True, nillable=False)),
    )


# --- custom fields and rules from salesforce-org/ --------------------------------

# Metadata API field type -> REST describe type, for the simple cases.
_META_TYPES = {
    "Email": "email",
    "LongTextArea": "textarea",
    "TextArea": "textarea",
    "DateTime": "datetime",
    "Date": "date",
    "Phone": "phone",
    "Url": "url",
}
_META_NUMBERS = {"Number": "double", "Currency": "currency", "Percent": "percent"}
_EMAIL_LENGTH = 80


def from_metadata(meta: org_metadata.FieldMeta) -> Field:  # noqa: PLR0911 - one return per metadata field type
    """The emulator field for one CustomField of salesforce-org/.

    Raises:
        MetadataError: a field type the emulator does not model.
    """
    kw: dict[str, Any] = {"label": meta.label}
    if meta.required:
        kw |= {"nillable": False, "required": True}
    if meta.type == "Text":
        return text(
            meta.name,
            meta.length,
            external_id=meta.external_id,
            unique=meta.unique,
            id_lookup=meta.external_id,
            **kw,
        )
    if meta.type in _META_NUMBERS:
        return number(
            meta.name,
            _META_NUMBERS[meta.type],
            precision=meta.precision,
            scale=meta.scale,
            external_id=meta.external_id,
            **kw,
        )
    if meta.type == "Picklist":
        return pick(meta.name, meta.picklist, restricted_picklist=meta.restricted, **kw)
    if meta.type == "MultiselectPicklist":
        return dataclasses.replace(multi(meta.name, meta.picklist), **kw)
    if meta.type == "Checkbox":
        return flag(meta.name, default=meta.default_value == "true", **kw)
    if meta.type == "Lookup" and meta.reference_to:
        return ref(meta.name, meta.reference_to, **kw)
    if meta.type in _META_TYPES:
        length = _EMAIL_LENGTH if meta.type == "Email" else meta.length
        return _f(meta.name, _META_TYPES[meta.type], length=length, **kw)
    msg = f"{meta.path}: field type {meta.type} is not modelled by the emulator"
    raise org_metadata.MetadataError(msg)


def custom_fields(sobject: str) -> tuple[Field, ...]:
    """The custom fields salesforce-org/ defines on `sobject`."""
    return tuple(
        from_metadata(m) for m in org_metadata.custom_fields().get(sobject, ())
    )


def range_rules(sobject: str) -> tuple[tuple[str, float, float, str], ...]:
    """The range validation rules salesforce-org/ defines on `sobject`.

    Returns:
        (field, low, high, message) per rule.
    """
    return tuple(
        (r.field, r.low, r.high, r.message)
        for r in org_metadata.range_rules().get(sobject, ())
    )


def picklist_values(sobject: str, name: str) -> tuple[str, ...]:
    """A picklist field's values, as salesforce-org/ defines them."""
    return org_metadata.field(sobject, name).picklist


# --- the org's objects ---------------------------------------------------------

LEAD_SOURCES = (
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
    "CleverTap",
)
INDUSTRIES = (
    "Agriculture",
    "Banking",
    "Education",
    "Energy",
    "Finance",
    "Healthcare",
    "Hospitality",
    "Media",
    "Retail",
    "Technology",
    "Telecommunications",
)
CHANNELS = picklist_values("Contact", "Last_Engagement_Channel__c")
INTERESTS = picklist_values("Contact", "Interests__c")

USER = SObject(
    "User",
    "User",
    "005",
    (
        ID_FIELD,
        required_text("Username", 80, unique=True, id_lookup=True),
        *name_field()[1:],
        _f("Email", "email", length=128, nillable=False, required=True),
        required_text("Alias", 8),
        flag("IsActive", default=True),
        text("Title", 80),
        text("Department", 80),
        _f("Phone", "phone", length=40),
        pick(
            "TimeZoneSidKey",
            ("America/Los_Angeles", "Europe/London", "Asia/Kolkata"),
            nillable=False,
            required=True,
        ),
        *system_fields(),
    ),
)

ACCOUNT = SObject(
    "Account",
    "Account",
    "001",
    (
        ID_FIELD,
        *name_field(parts=False),
        text("AccountNumber", 40),
        ref("ParentId", "Account", relationship="Parent"),
        pick(
            "Type",
            ("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"),
        ),
        pick("Industry", INDUSTRIES),
        pick("Rating", ("Hot", "Warm", "Cold")),
        number("AnnualRevenue", "currency", precision=18, scale=0),
        integer("NumberOfEmployees"),
        _f("Phone", "phone", length=40),
        _f("Website", "url", length=255),
        _f("Description", "textarea", length=32000),
        *address("Billing"),
        *address("Shipping"),
        OWNER,
        *system_fields(),
    ),
)

CONTACT = SObject(
    "Contact",
    "Contact",
    "003",
    (
        ID_FIELD,
        ref("AccountId", "Account"),
        *name_field(),
        text("Title", 128),
        text("Department", 80),
        _f("Email", "email", length=80, id_lookup=True),
        _f("Phone", "phone", length=40),
        _f("MobilePhone", "phone", length=40),
        _f("Birthdate", "date"),
        *address("Mailing"),
        pick("LeadSource", LEAD_SOURCES),
        flag("HasOptedOutOfEmail"),
        flag("DoNotCall"),
        _f("Description", "textarea", length=32000),
        OWNER,
        *custom_fields("Contact"),
        *system_fields(),
    ),
    validation=range_rules("Contact"),
)

LEAD = SObject(
    "Lead",
    "Lead",
    "00Q",
    (
        ID_FIELD,
        *name_field(),
        text("Title", 128),
        required_text("Company", 255),
        _f("Email", "email", length=80, id_lookup=True),
        _f("Phone", "phone", length=40),
        _f("MobilePhone", "phone", length=40),
        _f("Website", "url", length=255),
        *address(""),
        pick(
            "Status",
            (
                "Open - Not Contacted",
                "Working - Contacted",
                "Closed - Converted",
                "Closed - Not Converted",
            ),
            nillable=False,
            restricted_picklist=True,
            default_value="Open - Not Contacted",
            defaulted_on_create=True,
        ),
        pick("LeadSource", LEAD_SOURCES),
        pick("Industry", INDUSTRIES),
        pick("Rating", ("Hot", "Warm", "Cold")),
        number("AnnualRevenue", "currency", precision=18, scale=0),
        integer("NumberOfEmployees"),
        flag("HasOptedOutOfEmail"),
        flag("DoNotCall"),
        read_only(flag("IsConverted")),
        read_only(_f("ConvertedDate", "date")),
        read_only(ref("ConvertedContactId", "Contact")),
        read_only(ref("ConvertedAccountId", "Account")),
        _f("Description", "textarea", length=32000),
        OWNER,
        *custom_fields("Lead"),
        *system_fields(),
    ),
    validation=range_rules("Lead"),
)

CAMPAIGN = SObject(
    "Campaign",
    "Campaign",
    "701",
    (
        ID_FIELD,
        *name_field(parts=False),
        pick(
            "Type", ("Email", "Webinar", "Conference", "Advertisement", "Push", "Other")
        ),
        pick("Status", ("Planned", "In Progress", "Completed", "Aborted")),
        _f("StartDate", "date"),
        _f("EndDate", "date"),
        number("BudgetedCost", "currency", precision=18, scale=0),
        number("ActualCost", "currency", precision=18, scale=0),
        number("ExpectedRevenue", "currency", precision=18, scale=0),
        number("ExpectedResponse", "percent", precision=10, scale=2),
        number("NumberSent", precision=18, scale=0),
        flag("IsActive"),
        _f("Description", "textarea", length=32000),
        ref("ParentId", "Campaign", relationship="Parent"),
        OWNER,
        *custom_fields("Campaign"),
        *system_fields(),
    ),
)

CAMPAIGN_MEMBER = SObject(
    "CampaignMember",
    "Campaign Member",
    "00v",
    (
        ID_FIELD,
        ref("CampaignId", "Campaign", nillable=False, required=True, updateable=False),
        ref("LeadId", "Lead", updateable=False),
        ref("ContactId", "Contact", updateable=False),
        pick(
            "Status",
            ("Sent", "Responded", "Opened", "Clicked"),
            default_value="Sent",
            defaulted_on_create=True,
        ),
        read_only(flag("HasResponded")),
        read_only(_f("FirstRespondedDate", "date")),
        *system_fields(),
    ),
)

OPPORTUNITY = SObject(
    "Opportunity",
    "Opportunity",
    "006",
    (
        ID_FIELD,
        ref("AccountId", "Account"),
        ref("ContactId", "Contact"),
        *name_field(parts=False),
        _f("Description", "textarea", length=32000),
        pick(
            "StageName",
            (
                "Prospecting",
                "Qualification",
                "Needs Analysis",
                "Proposal/Price Quote",
                "Negotiation/Review",
                "Closed Won",
                "Closed Lost",
            ),
            nillable=False,
            required=True,
        ),
        number("Amount", "currency", precision=18, scale=2),
        number("Probability", "percent", precision=3, scale=0),
        _f("CloseDate", "date", nillable=False, required=True),
        pick(
            "Type",
            (
                "New Customer",
                "Existing Customer - Upgrade",
                "Existing Customer - Renewal",
            ),
        ),
        text("NextStep", 255),
        pick("LeadSource", LEAD_SOURCES),
        read_only(flag("IsClosed")),
        read_only(flag("IsWon")),
        pick(
            "ForecastCategoryName",
            ("Pipeline", "Best Case", "Commit", "Omitted", "Closed"),
        ),
        ref("CampaignId", "Campaign"),
        OWNER,
        *system_fields(),
    ),
)

CASE = SObject(
    "Case",
    "Case",
    "500",
    (
        ID_FIELD,
        read_only(text("CaseNumber", 30, auto_number=True, nillable=False)),
        ref("ContactId", "Contact"),
        ref("AccountId", "Account"),
        _f("SuppliedEmail", "email", length=80),
        text("Subject", 255),
        _f("Description", "textarea", length=32000),
        pick(
            "Status",
            ("New", "Working", "Escalated", "Closed"),
            default_value="New",
            defaulted_on_create=True,
            nillable=False,
        ),
        pick(
            "Priority",
            ("High", "Medium", "Low"),
            default_value="Medium",
            defaulted_on_create=True,
        ),
        pick("Origin", ("Phone", "Email", "Web", "App")),
        pick("Type", ("Question", "Problem", "Feature Request")),
        pick(
            "Reason",
            (
                "Installation",
                "Equipment Complexity",
                "Performance",
                "Breakdown",
                "Feedback",
                "Other",
            ),
        ),
        read_only(flag("IsClosed")),
        read_only(_f("ClosedDate", "datetime")),
        flag("IsEscalated"),
        OWNER,
        *system_fields(),
    ),
)

TASK = SObject(
    "Task",
    "Task",
    "00T",
    (
        ID_FIELD,
        ref("WhoId", "Contact", "Lead", relationship="Who"),
        ref(
            "WhatId", "Account", "Opportunity", "Case", "Campaign", relationship="What"
        ),
        _f(
            "Subject",
            "combobox",
            length=255,
            picklist=("Call", "Send Letter", "Send Quote", "Other"),
        ),
        _f("ActivityDate", "date"),
        pick(
            "Status",
            (
                "Not Started",
                "In Progress",
                "Completed",
                "Waiting on someone else",
                "Deferred",
            ),
            nillable=False,
            default_value="Not Started",
            defaulted_on_create=True,
        ),
        pick(
            "Priority",
            ("High", "Normal", "Low"),
            nillable=False,
            default_value="Normal",
            defaulted_on_create=True,
        ),
        read_only(flag("IsClosed")),
        read_only(_f("CompletedDateTime", "datetime")),
        _f("Description", "textarea", length=32000),
        integer("CallDurationInSeconds"),
        pick("TaskSubtype", ("Task", "Email", "Call")),
        OWNER,
        *system_fields(),
    ),
)

EVENT = SObject(
    "Event",
    "Event",
    "00U",
    (
        ID_FIELD,
        ref("WhoId", "Contact", "Lead", relationship="Who"),
        ref("WhatId", "Account", "Opportunity", "Campaign", relationship="What"),
        _f(
            "Subject",
            "combobox",
            length=255,
            picklist=("Call", "Email", "Meeting", "Send Letter/Quote", "Other"),
        ),
        text("Location", 255),
        flag("IsAllDayEvent"),
        _f("ActivityDateTime", "datetime"),
        _f("ActivityDate", "date"),
        _f("StartDateTime", "datetime"),
        _f("EndDateTime", "datetime"),
        integer("DurationInMinutes"),
        _f("Description", "textarea", length=32000),
        pick("ShowAs", ("Busy", "OutOfOffice", "Free")),
        OWNER,
        *system_fields(),
    ),
)

OPPORTUNITY_HISTORY = SObject(
    "OpportunityHistory",
    "Opportunity History",
    "008",
    tuple(
        read_only(f)
        for f in (
            ID_FIELD,
            ref("OpportunityId", "Opportunity"),
            text("StageName", 255),
            number("Amount", "currency", precision=18, scale=2),
            number("ExpectedRevenue", "currency", precision=18, scale=2),
            _f("CloseDate", "date"),
            number("Probability", "percent", precision=3, scale=0),
            pick(
                "ForecastCategory",
                ("Omitted", "Pipeline", "BestCase", "Forecast", "Closed"),
            ),
            *system_fields(modified=False),
        )
    ),
    createable=False,
)


def field_history(
    name: str,
    label: str,
    parent: str,
    tracked: tuple[str, ...],
    data_types: tuple[str, ...],
) -> SObject:
    """A read-only field history object (key prefix 017) of `parent` records."""
    return SObject(
        name,
        label,
        "017",
        tuple(
            read_only(f)
            for f in (
                ID_FIELD,
                ref(f"{parent}Id", parent),
                pick("Field", tracked),
                pick("DataType", data_types),
                _f("OldValue", "anyType"),
                _f("NewValue", "anyType"),
                *system_fields(modstamp=False, modified=False),
            )
        ),
        createable=False,
    )


CASE_HISTORY = field_history(
    "CaseHistory",
    "Case History",
    "Case",
    ("Status", "Priority", "Owner", "created"),
    ("Text", "EntityId", "DynamicEnum"),
)
OPPORTUNITY_FIELD_HISTORY = field_history(
    "OpportunityFieldHistory",
    "Opportunity Field History",
    "Opportunity",
    ("created", "StageName", "Amount", "CloseDate", "Probability", "Owner"),
    ("Text", "EntityId", "DynamicEnum", "Currency", "Date", "Percent"),
)

# Key prefixes of the custom objects: chosen by the org at deploy time, so an
# emulator detail rather than metadata.
CUSTOM_KEY_PREFIXES = {"CleverTap_Engagement__c": "a0C"}


def custom_object(name: str) -> SObject:
    """A custom object of salesforce-org/: its name field, fields and owner."""
    meta = org_metadata.custom_objects()[name]
    auto = meta.name_field_type == "AutoNumber"
    name_field = text(
        "Name",
        80,
        auto_number=auto,
        nillable=False,
        id_lookup=True,
        label=meta.name_field_label,
    )
    return SObject(
        name,
        meta.label,
        CUSTOM_KEY_PREFIXES[name],
        (
            ID_FIELD,
            read_only(name_field) if auto else name_field,
            *custom_fields(name),
            OWNER,
            *system_fields(),
        ),
        custom=True,
        validation=range_rules(name),
    )


ENGAGEMENT = custom_object("CleverTap_Engagement__c")

# Setup object, read-only over the API; the preflight queries its active rules.
# Fields: https://developer.salesforce.com/docs/platform/object-reference/references/standard-objects/object-duplicaterule.html
DUPLICATE_RULE = SObject(
    "DuplicateRule",
    "Duplicate Rule",
    "0Bm",
    tuple(
        read_only(f)
        for f in (
            ID_FIELD,
            text("DeveloperName", 80, nillable=False, label="Object Name"),
            text("MasterLabel", 80, nillable=False, label="Rule Name"),
            flag("IsActive", label="Active"),
            pick("Language", ("en_US",), label="Master Language"),
            text("NamespacePrefix", 15),
            pick("SobjectType", ("Account", "Contact", "Lead", "Campaign")),
            pick("SobjectSubtype", ("None",), label="Object Subtype"),
            *system_fields(),
        )
    ),
    createable=False,
)

OBJECTS: dict[str, SObject] = {
    o.name: o
    for o in (
        USER,
        ACCOUNT,
        CONTACT,
        LEAD,
        OPPORTUNITY,
        CASE,
        TASK,
        EVENT,
        CAMPAIGN,
        CAMPAIGN_MEMBER,
        OPPORTUNITY_HISTORY,
        CASE_HISTORY,
        OPPORTUNITY_FIELD_HISTORY,
        ENGAGEMENT,
        DUPLICATE_RULE,
    )
}


# Fields that must be set on create, checked in addition to `required`.
def find_object(name: str) -> SObject | None:
    """Find an sObject type case-insensitively."""
    lowered = name.lower()
    for sobject in OBJECTS.values():
        if sobject.name.lower() == lowered:
            return sobject
    return None


_CHECKSUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
SHORT_ID_LENGTH = 15
LONG_ID_LENGTH = 18
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def make_id(prefix: str, number_: int) -> str:
    """A well-formed 18-character record Id: key prefix, pod, counter, checksum."""
    digits = ""
    value = number_
    for _ in range(7):
        value, rest = divmod(value, 62)
        digits = _BASE62[rest] + digits
    short = f"{prefix}5g000{digits}"
    return short + id_checksum(short)


def id_checksum(short: str) -> str:
    """The three-character suffix that turns a 15-character Id into 18."""
    suffix = ""
    for start in (0, 5, 10):
        chunk = short[start : start + 5]
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _CHECKSUM_CHARS[bits]
    return suffix


def normalise_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character Id, or None if malformed."""
    if not value.isalnum():
        return None
    if len(value) == SHORT_ID_LENGTH:
        return value + id_checksum(value)
    if len(value) == LONG_ID_LENGTH:
        short = value[:SHORT_ID_LENGTH]
        return short + id_checksum(short)
    return None
