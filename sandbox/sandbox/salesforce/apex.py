r"""`/services/apexrest/*`: URL mappings routed to Python stand-ins for Apex classes.

A mapping works like `@RestResource(urlMapping=...)`: case-sensitive, `*` only after
a `/`, an exact mapping beats wildcards and the longest wildcard wins. Two sample
classes are registered by default:

- `/ct/nps/*`: the NPS / lead-enrichment endpoint. Body: one object or a list of
  objects `{email, npsScore | nps, leadScore, city, feedback}`. It finds the Contact
  by email (else the Lead), updates the score, city and feedback fields, and answers
  per record (a missing email or an unknown one is handled per record). Its DML is
  not caught, as in most Apex classes: a record the org refuses (a validation rule,
  a required field, a value of the wrong type) raises `System.DmlException`, the
  whole call's transaction is rolled back and the platform answers HTTP 500
  `[{"errorCode":"APEX_ERROR","message":"<exception>\n\n<stack line>"}]`, the
  shape real orgs answer (apex_rest_errors.md).
- `/ct/contacts/*`: upserts Contacts on `CleverTap_Id__c`. Body: one object or a
  list (or `{"records": [...]}`) of `{identity, name, email, score}`; answers one
  `{identity, success, id, created}` per record. Its DML is not caught either: a
  refused record answers 500 APEX_ERROR and nothing of the call is written.
- `/ct/*`: accepts any JSON and answers `{"success": true, "received": N}`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from sandbox.salesforce import schema

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


_NPS_KEYS = ("npsScore", "nps", "NPS", "nps_score")
_LEAD_KEYS = ("leadScore", "lead_score", "score")


def _first(item: dict[str, Any], keys: tuple[str, ...]) -> object:
    return next((item[k] for k in keys if k in item), None)


def nps_handler(request: ApexRequest, context: ApexContext) -> tuple[int, Any]:
    """Update the Contact (else the Lead) found by email: NPS, score, city, feedback."""
    if request.method not in {"POST", "PUT", "PATCH"}:
        return 405, [
            {
                "errorCode": "METHOD_NOT_ALLOWED",
                "message": f"HTTP Method '{request.method}' not allowed. "
                "Allowed are POST,PUT,PATCH",
            }
        ]
    body = request.json
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        body = body["records"]
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(i, dict) for i in items):
        return 400, [
            {
                "errorCode": "JSON_PARSER_ERROR",
                "message": "expected a JSON object or a list of objects",
            }
        ]
    tx = context.transaction()
    results = [_nps_one(item, tx, row) for row, item in enumerate(items)]
    tx.commit()  # an ApexException above leaves the transaction uncommitted
    if isinstance(body, list):
        return 200, results
    result = results[0]
    if result["success"]:
        return 200, result
    return (404 if result["errorCode"] == "NOT_FOUND" else 400), result


def _nps_one(item: dict[str, Any], tx: Transaction, row: int) -> dict[str, Any]:
    email = str(item.get("email") or item.get("Email") or "").strip()
    if not email:
        return {
            "email": None,
            "success": False,
            "errorCode": "REQUIRED_FIELD_MISSING",
            "message": "email is required",
        }
    target = None
    for name in ("Contact", "Lead"):
        found = tx.find(name, "Email", email)
        if found:
            target = (schema.OBJECTS[name], found[0])
            break
    if target is None:
        return {
            "email": email,
            "success": False,
            "errorCode": "NOT_FOUND",
            "message": f"No Contact or Lead with email {email}",
        }
    sobject, record = target
    changes: dict[str, Any] = {}
    nps = _first(item, _NPS_KEYS)
    if nps is not None:
        changes["NPS_Score__c"] = nps
    lead_score = _first(item, _LEAD_KEYS)
    if lead_score is not None:
        changes["Lead_Score__c"] = lead_score
    city = item.get("city")
    if city is not None:
        changes["MailingCity" if sobject.name == "Contact" else "City"] = city
    feedback = item.get("feedback") or item.get("comment")
    if feedback is not None and sobject.name == "Contact":
        changes["Last_Feedback__c"] = feedback
        changes["Last_Feedback_Date__c"] = dt.datetime.now(dt.UTC).date().isoformat()
    result = tx.update(sobject, record["Id"], changes)
    if not result.success:
        error = result.errors[0]
        fields = ", ".join(error.get("fields") or [])
        exception = "System.DmlException"
        raise ApexException(
            exception,
            f"Update failed. First exception on row {row} with id {record['Id']}; "
            f"first error: {error['statusCode']}, {error['message']}: [{fields}]",
            "Class.CtNpsResource.doPost: line 58, column 1",
        )
    return {
        "email": email,
        "success": True,
        "id": record["Id"],
        "sobject": sobject.name,
        "updatedFields": sorted(changes),
    }
