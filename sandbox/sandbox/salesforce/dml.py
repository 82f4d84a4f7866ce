"""Writes: create, update, upsert and delete with Salesforce's checks and results.

Every write API (REST, Collections, Bulk 2.0, Bulk 1.0, Apex handlers) goes through a
`Transaction`: each operation validates fully, then stages its change; `commit()`
stores the staged records, and dropping the transaction rolls them back (allOrNone).
"""

from __future__ import annotations

# ruff: noqa: ANN401 - record values are arbitrary JSON
# ruff: noqa: EM101 - Salesforce error codes and messages are the exception data
import contextvars
import copy
import dataclasses
from typing import TYPE_CHECKING, Any

from sandbox.salesforce import schema
from sandbox.salesforce.errors import record_error
from sandbox.salesforce.values import FieldValueError, coerce, now_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sandbox.salesforce.schema import Field, SObject
    from sandbox.salesforce.store import Record, Store

INTEGRATION_USER_ID = schema.make_id("005", 1)

# True while a REST request that carries `Sforce-Duplicate-Rule-Header:
# allowSave=true` is served; Bulk API jobs never set it (they cannot bypass
# duplicate rules).
ALLOW_DUPLICATE_SAVE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "allow_duplicate_save", default=False
)
# The API version of the request being served (record URLs in match results).
API_VERSION: contextvars.ContextVar[str] = contextvars.ContextVar(
    "api_version", default="62.0"
)
# The org's active duplicate rules: object -> (matched field, rule, matching
# rule). Action on create: allow with an alert, which the API reports as
# DUPLICATES_DETECTED unless the request allows the save. The rules are an
# emulator choice (seeded); the error shape is the one quoted in
# tests/fixtures/target_salesforce/real_api_errors.json (duplicates_detected_*:
# a v54 create reply and the REST guide's composite allOrNone Case 4), held by
# test_duplicates_detected_has_the_recorded_shape.
DUPLICATE_RULES: dict[str, tuple[str, str, str]] = {
    "Contact": ("Email", "Contact_Email_Duplicate_Rule", "Contact_Email_Match_Rule"),
    "Lead": ("Email", "Lead_Email_Duplicate_Rule", "Lead_Email_Match_Rule"),
}
DUPLICATE_MESSAGE = (
    "You're creating a duplicate record. We recommend you use an existing record "
    "instead."
)
ROLLED_BACK = record_error(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
)


@dataclasses.dataclass
class Result:
    """The outcome of one record operation (SaveResult / UpsertResult)."""

    id: str | None
    success: bool
    errors: list[dict[str, Any]]
    created: bool | None = None
    matches: list[str] = dataclasses.field(default_factory=list)

    def as_json(self, *, with_created: bool = False) -> dict[str, Any]:
        """The result as the REST APIs serve it.

        A failed item without a record has no `id` key, and a failed upsert
        item no `created` key: the REST API guide's sObject Collections
        examples (create, update, delete and upsert, "Some Items Failed")
        show `{"success": false, "errors": [...]}`, plus `id` only for a record
        that exists (tests/fixtures/real_api_salesforce/collections_docs.json).
        """
        body: dict[str, Any] = {}
        if self.id is not None:
            body["id"] = self.id
        body["success"] = self.success
        body["errors"] = self.errors
        if with_created and self.success:
            body["created"] = bool(self.created)
        return body

    @classmethod
    def failure(
        cls,
        code: str,
        message: str,
        fields: list[str] | None = None,
        *,
        created: bool | None = None,
        record_id: str | None = None,
    ) -> Result:
        """A failed result with one error item."""
        return cls(
            record_id,
            success=False,
            created=created,
            errors=[record_error(code, message, fields)],
        )


class RecordFailure(Exception):  # noqa: N818 - a per-record outcome, not a crash
    """One record failed; carries the per-record error items."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        """Keep the per-record errors."""
        super().__init__(errors[0]["message"] if errors else "failed")
        self.errors = errors


def _fail(code: str, message: str, fields: list[str] | None = None) -> RecordFailure:
    return RecordFailure([record_error(code, message, fields)])


def new_record(store: Store, sobject: SObject) -> Record:
    """A fresh record: a new Id, defaults, auto-numbers, the integration user as owner.

    Args:
        store: where the Id and auto-number counters live.
        sobject: the record's type.

    Returns:
        The record, not yet stored.
    """
    number = store.next_value(f"id:{sobject.key_prefix}")
    record: Record = {"Id": schema.make_id(sobject.key_prefix, number)}
    for field in sobject.fields:
        if field.type == "address" or field.name == "Id":
            continue
        record[field.name] = field.default_value if field.defaulted_on_create else None
        if field.auto_number:
            seq = store.next_value(f"auto:{sobject.name}.{field.name}")
            record[field.name] = (
                f"CTE-{seq:06d}" if sobject.custom else f"{1000 + seq:08d}"
            )
    if "OwnerId" in sobject.field_map:
        record["OwnerId"] = INTEGRATION_USER_ID
    return record


class Transaction:
    """Staged record writes over the store, committed together."""

    def __init__(
        self,
        store: Store,
        *,
        lock_fault: Callable[[], bool] | None = None,
    ) -> None:
        """Start a transaction; `lock_fault()` True makes the next write fail."""
        self.store = store
        self.staged: dict[str, tuple[str, Record]] = {}
        self._lock_fault = lock_fault
        # (sObject, field) -> normalised value -> Ids, built on first lookup.
        self._indexes: dict[tuple[str, str], dict[Any, set[str]]] = {}

    # --- reads through the staged overlay --------------------------------------

    def get(self, record_id: str) -> tuple[str, Record] | None:
        """A live (not deleted) record by Id."""
        found = self.staged.get(record_id) or self.store.get(record_id)
        if found is None or found[1].get("IsDeleted"):
            return None
        return found

    def rows(self, sobject: str) -> Iterable[Record]:
        """Live records of one type, staged changes applied."""
        seen = set()
        for record in self.store.rows(sobject):
            staged = self.staged.get(record["Id"])
            seen.add(record["Id"])
            current = staged[1] if staged else record
            if not current.get("IsDeleted"):
                yield current
        for record_id, (kind, record) in self.staged.items():
            if (
                kind == sobject
                and record_id not in seen
                and not record.get("IsDeleted")
            ):
                yield record

    def find(self, sobject: str, field: str, value: Any) -> list[Record]:
        """Live records whose `field` equals `value` (text: case-insensitively)."""
        wanted = _norm(value)
        index = self._index(sobject, field)
        found = []
        for record_id in sorted(index.get(wanted, ())):
            current = self.get(record_id)
            if (
                current
                and current[0] == sobject
                and _norm(current[1].get(field)) == wanted
            ):
                found.append(current[1])
        return found

    def _index(self, sobject: str, field: str) -> dict[Any, set[str]]:
        index = self._indexes.get((sobject, field))
        if index is None:
            index = {}
            for record in self.rows(sobject):
                key = _norm(record.get(field))
                if key is not None:
                    index.setdefault(key, set()).add(record["Id"])
            self._indexes[(sobject, field)] = index
        return index

    def _stage(self, sobject: str, record: Record) -> None:
        """Stage a record and keep the lookup indexes current."""
        for (kind, field), index in self._indexes.items():
            if kind != sobject:
                continue
            key = _norm(record.get(field))
            if key is not None:
                index.setdefault(key, set()).add(record["Id"])
        self.staged[record["Id"]] = (sobject, record)

    def commit(self) -> None:
        """Store every staged record."""
        if self.staged:
            self.store.put_many(list(self.staged.values()))
        self.staged.clear()

    # --- operations -------------------------------------------------------------

    def create(self, sobject: SObject, body: dict[str, Any]) -> Result:
        """Insert one record."""
        try:
            if not sobject.createable:
                raise _fail(
                    "INVALID_TYPE",
                    f"entity type {sobject.name} does not support insert",
                )
            self._check_lock(None)
            values = self._coerce_body(sobject, body, creating=True)
            record = self._new_record(sobject)
            record.update(values)
            self._finish(sobject, record, creating=True)
            check_duplicate_rule(self, sobject, record)
        except RecordFailure as failure:
            return Result(None, success=False, errors=failure.errors, created=False)
        self._stage(sobject.name, record)
        return Result(record["Id"], success=True, errors=[], created=True)

    def update(
        self, sobject: SObject, record_id: str | None, body: dict[str, Any]
    ) -> Result:
        """Update one record by Id."""
        try:
            current = self._existing(sobject, record_id)
            if sobject.name == "Lead" and current.get("IsConverted"):
                # A converted Lead is read-only: the real API answers this code and
                # text (simple-salesforce issue #341; gravityplus/Gravity-Forms-
                # Salesforce issue #342 quotes the same statusCode and message).
                raise _fail(
                    "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"
                )
            self._check_lock(current["Id"])
            values = self._coerce_body(sobject, body, creating=False)
            record = copy.deepcopy(current)
            record.update(values)
            self._finish(sobject, record, creating=False)
        except RecordFailure as failure:
            # A malformed Id names no record: the result has no `id` (REST API
            # guide, Collections update/delete examples, MALFORMED_ID item).
            normal = schema.normalise_id(record_id or "")
            ours = bool(normal and normal.startswith(sobject.key_prefix))
            known = record_id if ours else None
            return Result(known, success=False, errors=failure.errors, created=False)
        self._stage(sobject.name, record)
        return Result(record["Id"], success=True, errors=[], created=False)

    def upsert(
        self, sobject: SObject, ext_field: Field, value: Any, body: dict[str, Any]
    ) -> Result:
        """Insert or update one record matched on an external Id value."""
        if value in (None, ""):
            return Result.failure(
                "MISSING_ARGUMENT",
                f"{ext_field.name} not specified",
                [ext_field.name],
                created=False,
            )
        if ext_field.name == "Id":
            matches = [r for r in [self.get(str(value))] if r] if value else []
            ids = [r[1]["Id"] for r in matches]
        else:
            try:
                key = coerce(ext_field, value)
            except FieldValueError as exc:
                return Result.failure(
                    exc.code, exc.message, [ext_field.name], created=False
                )
            ids = [r["Id"] for r in self.find(sobject.name, ext_field.name, key)]
        body = {k: v for k, v in body.items() if k.lower() != ext_field.name.lower()}
        if len(ids) > 1:
            return Result(
                None,
                success=False,
                created=False,
                matches=ids,
                errors=[
                    record_error(
                        "DUPLICATE_EXTERNAL_ID",
                        # the field's label, as recorded (misc_real_errors.md)
                        f"{ext_field.label or ext_field.name}: more than one record "
                        f"found for external id field: {ids}",
                        [ext_field.name],
                    )
                ],
            )
        if ids:
            result = self.update(sobject, ids[0], body)
            result.created = False
            return result
        if ext_field.name != "Id":
            body = {**body, ext_field.name: value}
        return self.create(sobject, body)

    def delete(self, record_id: str, sobject: SObject | None = None) -> Result:
        """Soft-delete one record (queryAll still returns it)."""
        normal = schema.normalise_id(record_id or "")
        if normal is None:
            return Result(
                None,
                success=False,
                errors=[record_error("MALFORMED_ID", f"malformed id {record_id}")],
            )
        found = self.staged.get(normal) or self.store.get(normal)
        if found is None or (sobject is not None and found[0] != sobject.name):
            return Result(
                record_id,
                success=False,
                errors=[
                    record_error(
                        "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"
                    )
                ],
            )
        kind, current = found
        if current.get("IsDeleted"):
            return Result(
                normal,
                success=False,
                errors=[record_error("ENTITY_IS_DELETED", "entity is deleted")],
            )
        if not schema.OBJECTS[kind].createable:
            return Result(
                normal,
                success=False,
                errors=[
                    record_error(
                        "INVALID_TYPE", f"entity type {kind} does not support delete"
                    )
                ],
            )
        try:
            self._check_lock(normal)
        except RecordFailure as failure:
            return Result(normal, success=False, errors=failure.errors)
        record = copy.deepcopy(current)
        record["IsDeleted"] = True
        self._stamp(schema.OBJECTS[kind], record, creating=False)
        self._stage(kind, record)
        return Result(normal, success=True, errors=[])

    # --- helpers ------------------------------------------------------------------

    def _check_lock(self, record_id: str | None) -> None:
        if self._lock_fault is not None and self._lock_fault():
            shown = record_id or "new record"
            raise _fail(
                "UNABLE_TO_LOCK_ROW",
                "unable to obtain exclusive access to this record or 1 records: "
                + shown,
            )

    def _existing(self, sobject: SObject, record_id: str | None) -> Record:
        normal = schema.normalise_id(record_id or "")
        if normal is None or not normal.startswith(sobject.key_prefix):
            # Another object's Id is refused the same way as a malformed one:
            # "Contact ID: id value of incorrect type: 001xx..." (REST API guide,
            # Collections update example; collections_docs.json).
            raise _fail(
                "MALFORMED_ID",
                f"{sobject.name} ID: id value of incorrect type: {record_id}",
                ["Id"],
            )
        found = self.get(normal)
        if found is None or found[0] != sobject.name:
            raise _fail(
                "ENTITY_IS_DELETED"
                if self.store.get(normal)
                else "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id"
                if not self.store.get(normal)
                else "entity is deleted",
            )
        if not sobject.createable:
            raise _fail(
                "INVALID_TYPE", f"entity type {sobject.name} does not support update"
            )
        return found[1]

    def _new_record(self, sobject: SObject) -> Record:
        return new_record(self.store, sobject)

    def _coerce_body(
        self, sobject: SObject, body: dict[str, Any], *, creating: bool
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for key, raw in body.items():
            if key == "attributes" or (key.lower() == "id" and not creating):
                continue
            field = sobject.field(key)
            if field is None:
                resolved = self._resolve_relationship(sobject, key, raw)
                values.update(resolved)
                continue
            if not (field.createable if creating else field.updateable):
                errors.append(
                    record_error(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {field.name}. Please check "
                        "the security settings of this field and verify that it is "
                        "read/write "
                        "for your profile or permission set.",
                        [field.name],
                    )
                )
                continue
            try:
                value = coerce(field, raw)
                if field.type == "reference" and value is not None:
                    value = self._check_reference(field, value)
            except FieldValueError as exc:
                errors.append(record_error(exc.code, exc.message, [field.name]))
                continue
            except RecordFailure as failure:
                errors.extend(failure.errors)
                continue
            values[field.name] = value
        if errors:
            raise RecordFailure(errors)
        return values

    def _resolve_relationship(
        self, sobject: SObject, key: str, raw: Any
    ) -> dict[str, Any]:
        rel_name, _, ext_name = key.partition(".")
        # Bulk CSV names a polymorphic parent's type in the header:
        # `Lead:Who.Email` (ObjectType:RelationshipName.IndexedFieldName).
        typed, _, rel_name = rel_name.rpartition(":")
        field = next(
            (
                f
                for f in sobject.fields
                if f.relationship_name
                and f.relationship_name.lower() == rel_name.lower()
            ),
            None,
        )
        if field is None or not (ext_name or isinstance(raw, dict)):
            raise _fail(
                "INVALID_FIELD",
                f"No such column '{key}' on sobject of type {sobject.name}",
                [key],
            )
        if isinstance(raw, dict):
            pairs = {k: v for k, v in raw.items() if k != "attributes"}
            target_name = str((raw.get("attributes") or {}).get("type") or "")
            if len(pairs) != 1:
                raise _fail("INVALID_FIELD", f"bad foreign key for {key}", [key])
            ext_name, value = next(iter(pairs.items()))
        else:
            target_name, value = typed, raw
        if not target_name and len(field.reference_to) > 1:
            raise _fail(
                "INVALID_FIELD",
                f"Polymorphic foreign key {key} needs the parent's type "
                '(attributes.type in JSON, "Type:" in a Bulk CSV header)',
                [key],
            )
        if target_name and target_name not in field.reference_to:
            raise _fail(
                "INVALID_FIELD",
                f"{target_name} is not a valid type for {field.name}",
                [key],
            )
        target = schema.find_object(target_name or field.reference_to[0])
        if value in (None, "") or target is None:
            return {field.name: None} if value in (None, "") else {}
        ext = target.field(ext_name)
        # any indexed field identifies the parent: an External ID, or a standard
        # field whose describe has idLookup (Email, Name, ...). Docs: Bulk API 2.0
        # "Relationship Fields in a Header Row (2.0)" (RelationshipName.
        # IndexedFieldName, e.g. ReportsTo.Email); no recording.
        if ext is None or not (ext.external_id or ext.id_lookup or ext.name == "Id"):
            raise _fail(
                "INVALID_FIELD",
                f"Foreign key external ID: {ext_name} is not an external id field of "
                f"{target.name}",
                [key],
            )
        matches = self.find(target.name, ext.name, value)
        if len(matches) != 1:
            raise _fail(
                "INVALID_FIELD",
                f"Foreign key external ID: {value} not found for field {ext.name} in "
                f"entity {target.name}",
                [key],
            )
        return {field.name: matches[0]["Id"]}

    def _check_reference(self, field: Field, value: str) -> str:
        normal = schema.normalise_id(value)
        if normal is None:
            raise _fail(
                "MALFORMED_ID",
                f"{field.label or field.name}: id value of incorrect type: {value}",
                [field.name],
            )
        found = self.get(normal)
        if found is None or found[0] not in field.reference_to:
            raise _fail(
                "INVALID_CROSS_REFERENCE_KEY",
                f"invalid cross reference id: {value}",
                [field.name],
            )
        return normal

    def _finish(self, sobject: SObject, record: Record, *, creating: bool) -> None:
        missing = [
            f.name
            for f in sobject.fields
            if f.required and record.get(f.name) in (None, "")
        ]
        if missing:
            raise _fail(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        if sobject.name == "CampaignMember" and not (
            record.get("LeadId") or record.get("ContactId")
        ):
            raise _fail(
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [LeadId or ContactId]",
                ["LeadId", "ContactId"],
            )
        for name, low, high, message in sobject.validation:
            value = record.get(name)
            if value is not None and not low <= value <= high:
                raise _fail("FIELD_CUSTOM_VALIDATION_EXCEPTION", message, [name])
        for field in sobject.fields:
            value = record.get(field.name)
            if not field.unique or value in (None, ""):
                continue
            clash = [
                r["Id"]
                for r in self.find(sobject.name, field.name, value)
                if r["Id"] != record["Id"]
            ]
            if clash:
                raise _fail(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {field.name} duplicates value on record "
                    f"with id: {clash[0]}",
                    [field.name],
                )
        derive(sobject, record)
        self._stamp(sobject, record, creating=creating)

    @staticmethod
    def _stamp(sobject: SObject, record: Record, *, creating: bool) -> None:
        now = now_text()
        fields = sobject.field_map
        if creating:
            record["CreatedDate"] = now
            record["CreatedById"] = INTEGRATION_USER_ID
        if "LastModifiedDate" in fields:
            record["LastModifiedDate"] = now
            record["LastModifiedById"] = INTEGRATION_USER_ID
        if "SystemModstamp" in fields:
            record["SystemModstamp"] = now


def check_duplicate_rule(tx: Transaction, sobject: SObject, record: Record) -> None:
    """Refuse a create that an active duplicate rule matches (unless allowed).

    The error item carries `duplicateResult` with the matched record Ids at
    `matchResults[].matchRecords[].record.Id`, shaped like real answers
    (a v54 Contact reply quoted in a public C# client; the SOAP API's
    DuplicateResult, MatchResult and MatchRecord objects).

    Raises:
        RecordFailure: DUPLICATES_DETECTED.
    """
    rule = DUPLICATE_RULES.get(sobject.name)
    if rule is None or ALLOW_DUPLICATE_SAVE.get():
        return
    field, rule_name, match_rule = rule
    value = record.get(field)
    if value in (None, ""):
        return
    matched = [
        r["Id"] for r in tx.find(sobject.name, field, value) if r["Id"] != record["Id"]
    ]
    if not matched:
        return
    version = API_VERSION.get()
    match_records = [
        {
            "additionalInformation": [],
            "fieldDiffs": [],
            "matchConfidence": 100.0,
            "record": {
                "attributes": {
                    "type": sobject.name,
                    "url": f"/services/data/v{version}/sobjects/"
                    f"{sobject.name}/{record_id}",
                },
                "Id": record_id,
            },
        }
        for record_id in matched
    ]
    error = record_error("DUPLICATES_DETECTED", DUPLICATE_MESSAGE)
    error["duplicateResult"] = {
        "allowSave": True,
        "duplicateRule": rule_name,
        "duplicateRuleEntityType": sobject.name,
        "errorMessage": DUPLICATE_MESSAGE,
        "matchResults": [
            {
                "entityType": sobject.name,
                "errors": [],
                "matchEngine": "ExactMatchEngine",
                "matchRecords": match_records,
                "rule": match_rule,
                "size": len(match_records),
                "success": True,
            }
        ],
    }
    raise RecordFailure([error])


def _norm(value: Any) -> Any:
    """A lookup key: text compares case-insensitively."""
    if isinstance(value, str):
        return value.lower() if value else None
    return value


_CLOSED_STAGES = {"Closed Won": True, "Closed Lost": False}


def derive(sobject: SObject, record: Record) -> None:
    """Recompute the formula-like fields Salesforce maintains itself."""
    if "FirstName" in sobject.field_map and "Name" in sobject.field_map:
        first = record.get("FirstName") or ""
        record["Name"] = f"{first} {record.get('LastName') or ''}".strip()
    if sobject.name == "Opportunity":
        stage = record.get("StageName")
        record["IsClosed"] = stage in _CLOSED_STAGES
        record["IsWon"] = _CLOSED_STAGES.get(stage or "", False)
    elif sobject.name == "Task":
        record["IsClosed"] = record.get("Status") in {"Completed", "Deferred"}
        if record.get("Status") != "Completed":
            record["CompletedDateTime"] = None
        elif not record.get("CompletedDateTime"):
            record["CompletedDateTime"] = now_text()
    elif sobject.name == "Case":
        closed = record.get("Status") == "Closed"
        if closed and not record.get("IsClosed"):
            record["ClosedDate"] = record.get("ClosedDate") or now_text()
        record["IsClosed"] = closed
    elif sobject.name == "CampaignMember":
        record["HasResponded"] = record.get("Status") in {"Responded", "Clicked"}


def render(
    sobject: SObject, record: Record, fields: Iterable[str] | None = None
) -> dict[str, Any]:
    """A record as the REST API serves it, compound address fields included."""
    names = list(fields) if fields is not None else [f.name for f in sobject.fields]
    field_map = sobject.field_map
    out: dict[str, Any] = {}
    for name in names:
        field = field_map.get(name) or sobject.field(name)
        if field is None:
            continue
        if field.type == "address":
            prefix = field.name.removesuffix("Address")
            parts = {
                key: record.get(prefix + suffix)
                for suffix, key, _ in schema.ADDRESS_PARTS
            }
            out[field.name] = (
                parts if any(v is not None for v in parts.values()) else None
            )
        else:
            out[field.name] = record.get(field.name)
    return out
