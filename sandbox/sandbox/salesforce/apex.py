r"""`/services/apexrest/*`: URL mappings routed to Python stand-ins for Apex classes.

A mapping works like `@RestResource(urlMapping=...)`: case-sensitive, `*` only after
a `/`, an exact mapping beats wildcards and the longest wildcard wins. Two sample
classes are registered by default:

- `/ct/nps/*`: CleverTapNpsService, the class admins deploy
  (salesforce-org/force-app/main/default/classes/CleverTapNpsService.cls), whose
  header is the contract. Body: one object, a list, or `{"records": [...]}` of
  `{email, npsScore, leadScore, city, feedback}` (the class's key aliases; the first
  non-empty value wins). It finds the Contact by email (else the open Lead), merges
  several objects for the same person (later values win) and saves each person once
  with partial-success DML (`Database.update(records, false)`): a list answers 200
  with one result per object, a refused save giving `{"email", "success": false,
  "errorCode": <DML status code>, "message", "id"}`; one object answers 200, 404
  NOT_FOUND or 400 with its result. Its DML errors never escape as APEX_ERROR.
- `/ct/contacts/*`: upserts Contacts on `CleverTap_Id__c`. Body: one object or a
  list (or `{"records": [...]}`) of `{identity, name, email, score}`; answers one
  `{identity, success, id, created}` per record. Its DML is not caught, as in many
  Apex classes: a refused record (a validation rule, a required field) raises
  `System.DmlException`, the whole call's transaction is rolled back and the
  platform answers HTTP 500
  `[{"errorCode":"APEX_ERROR","message":"<exception>\n\n<stack line>"}]`, the
  shape real orgs answer (apex_rest_errors.md).
- `/ct/*`: accepts any JSON and answers `{"success": true, "received": N}`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import re
import zoneinfo
from typing import TYPE_CHECKING, Any

from sandbox.salesforce import schema
from sandbox.salesforce.dml import INTEGRATION_USER_ID

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandbox.salesforce.dml import Transaction
    from sandbox.salesforce.store import Store


APEX_ERROR_STATUS = 500


class ApexException(Exception):  # noqa: N818 - named after Apex's exceptions
    """An unhandled Apex exception: HTTP 500 APEX_ERROR, the transaction rolled back.

    The body is what real orgs answer: a list of one error whose message is the
    exception type and text, a blank line, then the stack line.
    """

    def __init__(self, exception: str, message: str, stack: str) -> None:
        """Keep the exception type (`System.DmlException`), text and stack line."""
        super().__init__(f"{exception}: {message}")
        self.exception = exception
        self.message = message
        self.stack = stack

    def body(self) -> list[dict[str, Any]]:
        """`[{"errorCode": "APEX_ERROR", "message": ...}]`."""
        text = f"{self.exception}: {self.message}\n\n{self.stack}"
        return [{"errorCode": "APEX_ERROR", "message": text}]


@dataclasses.dataclass
class ApexRequest:
    """What an Apex class sees in `RestContext.request`."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclasses.dataclass
class ApexContext:
    """What a handler may use: a transaction factory over the org's records."""

    store: Store
    transaction: Callable[[], Transaction]


class ApexRegistry:
    """URL mappings to handlers."""

    def __init__(self) -> None:
        """Start with the sample handlers."""
        self._handlers: dict[
            str, Callable[[ApexRequest, ApexContext], tuple[int, Any]]
        ] = {}
        self.register("/ct/nps/*", nps_handler)
        self.register("/ct/contacts/*", contacts_handler)
        self.register("/ct/*", echo_handler)

    def register(
        self,
        mapping: str,
        handler: Callable[[ApexRequest, ApexContext], tuple[int, Any]],
    ) -> None:
        """Route a URL mapping such as `/ct/nps/*` to a handler.

        Raises:
            ValueError: the mapping does not start with `/` or misplaces `*`.
        """
        if not mapping.startswith("/") or (
            "*" in mapping and not mapping.endswith("/*")
        ):
            msg = f"bad urlMapping {mapping!r}"
            raise ValueError(msg)
        self._handlers[mapping] = handler

    def unregister(self, mapping: str) -> None:
        """Remove a URL mapping (as if its class were not deployed)."""
        self._handlers.pop(mapping, None)

    def mappings(self) -> list[str]:
        """The registered URL mappings."""
        return sorted(self._handlers)

    def resolve(
        self, path: str
    ) -> tuple[str, Callable[[ApexRequest, ApexContext], tuple[int, Any]]] | None:
        """The mapping and handler for a request path, or None."""
        if path in self._handlers:
            return path, self._handlers[path]
        best: str | None = None
        for mapping in self._handlers:
            if not mapping.endswith("/*"):
                continue
            base = mapping[:-2]
            if (path == base or path.startswith(base + "/")) and (
                best is None or len(mapping) > len(best)
            ):
                best = mapping
        return (best, self._handlers[best]) if best else None


def echo_handler(request: ApexRequest, context: ApexContext) -> tuple[int, Any]:
    """Accept any payload and say how many items arrived."""
    del context
    body = request.json
    count = len(body) if isinstance(body, list) else (0 if body is None else 1)
    return 200, {"success": True, "received": count}


def _items(body: object) -> list[Any] | None:
    """A body's records: one object, a list, or `{"records": [...]}`."""
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        body = body["records"]
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    return items


def contacts_handler(request: ApexRequest, context: ApexContext) -> tuple[int, Any]:
    """Upsert Contacts on CleverTap_Id__c; a refused record fails the whole call.

    Raises:
        ApexException: a record the org refuses (System.DmlException).
    """
    items = _items(request.json)
    if items is None:
        return 400, [
            {
                "errorCode": "JSON_PARSER_ERROR",
                "message": "expected a JSON object or a list of objects",
            }
        ]
    contact = schema.OBJECTS["Contact"]
    key = contact.field_map["CleverTap_Id__c"]
    tx = context.transaction()
    results = []
    for row, item in enumerate(items):
        body = {
            "LastName": item.get("name"),
            "Email": item.get("email"),
            "NPS_Score__c": item.get("score"),
        }
        result = tx.upsert(contact, key, item.get("identity"), body)
        if not result.success:
            error = result.errors[0]
            fields = ", ".join(error.get("fields") or [])
            exception = "System.DmlException"
            raise ApexException(
                exception,
                f"Upsert failed. First exception on row {row}; first error: "
                f"{error['statusCode']}, {error['message']}: [{fields}]",
                "Class.CtContactsResource.doPost: line 31, column 1",
            )
        results.append(
            {
                "identity": item.get("identity"),
                "success": True,
                "id": result.id,
                "created": bool(result.created),
            }
        )
    tx.commit()
    single = isinstance(request.json, dict) and "records" not in request.json
    return 200, results[0] if single else results


# The key lists of CleverTapNpsService.cls (the first non-empty value wins).
_EMAIL_KEYS = ("email", "Email")
_NPS_KEYS = ("npsScore", "nps", "NPS", "nps_score")
_LEAD_KEYS = ("leadScore", "lead_score", "score")
_CITY_KEYS = ("city",)
_FEEDBACK_KEYS = ("feedback", "comment")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _apex_text(value: object) -> str:
    """`String.valueOf(value)` for a value of `JSON.deserializeUntyped`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "(" + ", ".join(_apex_text(v) for v in value) + ")"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}={_apex_text(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return "null" if value is None else str(value)


def _first(item: dict[str, Any], keys: tuple[str, ...]) -> object:
    """The class's `first()`: the first key whose value is not null nor ''."""
    return next(
        (
            item[k]
            for k in keys
            if k in item and item[k] is not None and _apex_text(item[k]) != ""
        ),
        None,
    )


def _to_decimal(value: object) -> float | int:
    """The class's `toDecimal()`: a JSON number, else `Decimal.valueOf(text)`.

    Raises:
        ValueError: not a number (Apex throws System.TypeException; the message
            is the platform's wording for `Decimal.valueOf`, not recorded here).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = _apex_text(value).strip()
    if not _DECIMAL.fullmatch(text):
        msg = f"Invalid decimal: {text}"
        raise ValueError(msg)
    number = decimal.Decimal(text)
    return int(number) if number == number.to_integral_value() else float(number)


def _today(tx: Transaction) -> str:
    """`Date.today()`: the date in the running (integration) user's time zone."""
    user = tx.get(INTEGRATION_USER_ID)
    zone_name = (user[1].get("TimeZoneSidKey") if user else None) or "UTC"
    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return dt.datetime.now(zone).date().isoformat()


def _json_parser_error(message: str) -> tuple[int, Any]:
    return 400, [{"errorCode": "JSON_PARSER_ERROR", "message": message}]


def nps_handler(request: ApexRequest, context: ApexContext) -> tuple[int, Any]:
    """CleverTapNpsService: update the Contact (else the open Lead) found by email.

    Mirrors `handle()` of the shipped class: per-object results with
    partial-success DML, so a list answers 200 whatever its objects' outcomes
    and one object answers 200, 404 NOT_FOUND or 400.
    """
    if request.method not in {"POST", "PUT", "PATCH"}:
        # the platform answers before any Apex runs (no @HttpGet/@HttpDelete)
        return 405, [
            {
                "errorCode": "METHOD_NOT_ALLOWED",
                "message": f"HTTP Method '{request.method}' not allowed. "
                "Allowed are POST,PUT,PATCH",
            }
        ]
    try:
        body = json.loads(request.body.decode("utf-8") if request.body else "")
    except ValueError as exc:
        return _json_parser_error(f"body is not JSON: {exc}")
    as_list = True
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        items = body["records"]
    elif isinstance(body, list):
        items = body
    else:
        items, as_list = [body], False
    if not items or not all(isinstance(i, dict) for i in items):
        return _json_parser_error("expected a JSON object or a list of objects")
    tx = context.transaction()
    results = _nps_process(items, tx)
    tx.commit()
    if as_list:
        return 200, results
    result = results[0]
    if result["success"] is True:
        return 200, result
    return (404 if result["errorCode"] == "NOT_FOUND" else 400), result


def _nps_find(tx: Transaction, emails: set[str]) -> dict[str, tuple[str, str]]:
    """Lower-cased email -> (sObject, Id): open Leads, then Contacts over them."""
    found: dict[str, tuple[str, str]] = {}
    for name in ("Lead", "Contact"):
        for email in sorted(emails):
            rows = [
                r
                for r in tx.find(name, "Email", email)
                if name != "Lead" or not r.get("IsConverted")
            ]
            if rows:  # the class keeps one record per email (SOQL order)
                found[email] = (name, rows[0]["Id"])
    return found


def _nps_process(items: list[dict[str, Any]], tx: Transaction) -> list[dict[str, Any]]:
    """The class's `process()`: one result per object; each person saved once."""
    email_of = []
    for item in items:
        value = _first(item, _EMAIL_KEYS)
        email_of.append("" if value is None else _apex_text(value).strip())
    by_email = _nps_find(tx, {e.lower() for e in email_of if e})
    results: list[dict[str, Any]] = []
    changes: dict[str, tuple[str, dict[str, Any]]] = {}  # Id -> (sObject, values)
    target_of: list[str | None] = []
    for item, email in zip(items, email_of, strict=True):
        result: dict[str, Any] = {"email": email or None, "success": False}
        results.append(result)
        target_of.append(None)
        if not email:
            result.update(
                errorCode="REQUIRED_FIELD_MISSING", message="email is required"
            )
            continue
        found = by_email.get(email.lower())
        if found is None:
            result.update(
                errorCode="NOT_FOUND", message=f"No Contact or Lead with email {email}"
            )
            continue
        name, record_id = found
        target_of[-1] = record_id
        values = changes.setdefault(record_id, (name, {}))[1]
        try:
            _nps_apply(item, name, values, tx)
        except ValueError as exc:  # a put before the failure stays, as in Apex
            result.update(
                errorCode="INVALID_TYPE_ON_FIELD_IN_RECORD",
                message=str(exc),
                id=record_id,
            )
            target_of[-1] = None
    # Database.update(records, false): each record saved or refused on its own
    saved = {
        record_id: tx.update(schema.OBJECTS[name], record_id, values)
        for record_id, (name, values) in changes.items()
    }
    for result, target in zip(results, target_of, strict=True):
        if target is None:
            continue
        outcome = saved[target]
        result["id"] = target
        if outcome.success:
            name, values = changes[target]
            result.update(success=True, sobject=name, updatedFields=sorted(values))
        else:
            error = outcome.errors[0]
            result.update(errorCode=error["statusCode"], message=error["message"])
    return results


def _nps_apply(
    item: dict[str, Any], name: str, values: dict[str, Any], tx: Transaction
) -> None:
    """The class's `apply()`: put each field the object carries, in order.

    Raises:
        ValueError: a score that is not a number.
    """
    nps = _first(item, _NPS_KEYS)
    if nps is not None:
        values["NPS_Score__c"] = _to_decimal(nps)
    lead_score = _first(item, _LEAD_KEYS)
    if lead_score is not None:
        values["Lead_Score__c"] = _to_decimal(lead_score)
    city = _first(item, _CITY_KEYS)
    if city is not None:
        values["MailingCity" if name == "Contact" else "City"] = _apex_text(city)
    feedback = _first(item, _FEEDBACK_KEYS)
    if feedback is not None and name == "Contact":
        values["Last_Feedback__c"] = _apex_text(feedback)
        values["Last_Feedback_Date__c"] = _today(tx)
