"""The Starlette app: Salesforce's REST, Bulk, OAuth and Apex REST endpoints.

API paths are dispatched by this module's own route table (regular expressions,
case-sensitive like Salesforce, trailing slash optional), so that a POST to
`sobjects/Contact/` is never redirected. `/_sandbox/*` holds inspection and fault
injection.
"""

from __future__ import annotations

# ruff: noqa: ANN401 - record values are arbitrary JSON
import asyncio
import base64
import contextlib
import json
import re
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.salesforce import apex as apex_module
from sandbox.salesforce import bulk, dml, schema, soql
from sandbox.salesforce.auth import ORG_ID, OAuthError
from sandbox.salesforce.dml import ROLLED_BACK, Result, render
from sandbox.salesforce.emulator import Emulator, Options
from sandbox.salesforce.errors import (
    ApiError,
    JsonTypeError,
    MultipleChoices,
    bad_type,
    invalid_session,
    not_found,
    request_limit,
)
from sandbox.salesforce.values import FieldValueError, coerce
from sandbox.server import abort_connection

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from starlette.requests import Request

    from sandbox.salesforce.faults import Fault

    Handler = Callable[["Call"], Awaitable[Response] | Response]

API_VERSIONS = tuple(f"{major}.0" for major in range(31, 67))
COLLECTION_LIMIT = 200
NO_CONTENT = 204
# From API v46.0 on, an upsert that updates answers 200 with a body (before: 204).
UPSERT_BODY_VERSION = 46
_RID = r"(?P<id>[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?)"
_LOG_BODY_LIMIT = 16 * 1024
_SECRET_PATHS = ("/services/oauth2/", "/services/Soap/")
_LOGGED_HEADERS = (
    "content-type",
    "accept",
    "user-agent",
    "sforce-query-options",
    "sforce-disable-batch-retry",
    "sforce-enable-pkchunking",
    "sforce-auto-assign",
    "sforce-duplicate-rule-header",
    "x-prettyprint",
)


class Call:
    """One API request, with its parsed parts."""

    def __init__(self, request: Request, body: bytes, match: re.Match[str]) -> None:
        """Keep the request, body and path match."""
        self.request = request
        self.body = body
        self.match = match
        self.params = dict(request.query_params)

    def group(self, name: str) -> str:
        """A path parameter."""
        return self.match.group(name)

    @property
    def version(self) -> str:
        """The API version in the path (`61.0`)."""
        return self.match.groupdict().get("v") or "61.0"

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ApiError: JSON_PARSER_ERROR.
        """
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(
                400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}"
            ) from exc


def _json(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def _xml(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="application/xml")


class SalesforceApp:
    """Route table and handlers over one `Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        """Build the route table."""
        self.emulator = emulator
        data = r"/services/data/v(?P<v>\d+\.\d)"
        ingest = data + r"/jobs/ingest"
        asyn = r"/services/async/(?P<v>\d+\.\d)"
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        table: list[tuple[str, str, Handler]] = [
            ("GET", data + r"/sobjects", self.describe_global),
            ("GET", data + r"/sobjects/(?P<o>\w+)/describe", self.describe),
            ("GET", data + r"/sobjects/(?P<o>\w+)", self.sobject_info),
            ("POST", data + r"/sobjects/(?P<o>\w+)", self.create),
            ("POST", data + r"/sobjects/(?P<o>\w+)/Id", self.create),
            ("GET", data + r"/sobjects/(?P<o>\w+)/" + _RID, self.get_record),
            ("PATCH", data + r"/sobjects/(?P<o>\w+)/" + _RID, self.update),
            ("DELETE", data + r"/sobjects/(?P<o>\w+)/" + _RID, self.delete),
            (
                "GET",
                data + r"/sobjects/(?P<o>\w+)/(?P<f>\w+)/(?P<val>.+)",
                self.get_by_ext,
            ),
            (
                "PATCH",
                data + r"/sobjects/(?P<o>\w+)/(?P<f>\w+)/(?P<val>.+)",
                self.upsert,
            ),
            (
                "POST",
                data + r"/sobjects/(?P<o>\w+)/(?P<f>\w+)/(?P<val>.+)",
                self.upsert,
            ),
            (
                "DELETE",
                data + r"/sobjects/(?P<o>\w+)/(?P<f>\w+)/(?P<val>.+)",
                self.delete_by_ext,
            ),
            ("GET", data + r"/(?P<kind>query|queryAll)", self.query),
            (
                "GET",
                data + r"/(?P<kind>query|queryAll)/(?P<cursor>01g\w+)-(?P<off>\d+)",
                self.query_more,
            ),
            ("GET", data + r"/limits", self.limits),
            ("GET", data, self.resources),
            ("POST", data + r"/composite/sobjects", self.collection_create),
            ("PATCH", data + r"/composite/sobjects", self.collection_update),
            ("DELETE", data + r"/composite/sobjects", self.collection_delete),
            ("GET", data + r"/composite/sobjects/(?P<o>\w+)", self.collection_get),
            ("POST", data + r"/composite/sobjects/(?P<o>\w+)", self.collection_get),
            (
                "PATCH",
                data + r"/composite/sobjects/(?P<o>\w+)/(?P<f>\w+)",
                self.collection_upsert,
            ),
            ("POST", ingest, self.ingest_create),
            ("GET", ingest, self.ingest_list),
            ("GET", ingest + r"/(?P<id>\w+)", self.ingest_get),
            ("PATCH", ingest + r"/(?P<id>\w+)", self.ingest_patch),
            ("DELETE", ingest + r"/(?P<id>\w+)", self.ingest_delete),
            ("PUT", ingest + r"/(?P<id>\w+)/batches", self.ingest_upload),
            (
                "GET",
                ingest + r"/(?P<id>\w+)/(?i:(?P<which>successfulResults|"
                r"failedResults|unprocessedRecords))",
                self.ingest_results,
            ),
            ("POST", asyn + r"/job", self.v1_create),
            ("GET", asyn + r"/job/(?P<id>\w+)", self.v1_job),
            ("POST", asyn + r"/job/(?P<id>\w+)", self.v1_close),
            ("POST", asyn + r"/job/(?P<id>\w+)/batch", self.v1_add_batch),
            ("GET", asyn + r"/job/(?P<id>\w+)/batch", self.v1_batches),
            ("GET", asyn + r"/job/(?P<id>\w+)/batch/(?P<b>\w+)", self.v1_batch),
            (
                "GET",
                asyn + r"/job/(?P<id>\w+)/batch/(?P<b>\w+)/request",
                self.v1_request,
            ),
            (
                "GET",
                asyn + r"/job/(?P<id>\w+)/batch/(?P<b>\w+)/result",
                self.v1_results,
            ),
            (
                "GET",
                asyn + r"/job/(?P<id>\w+)/batch/(?P<b>\w+)/result/(?P<r>\w+)",
                self.v1_result,
            ),
        ]
        for method, pattern, handler in table:
            self.routes.append((method, re.compile(pattern + "/?$"), handler))

    # --- the request pipeline -------------------------------------------------------

    async def api(self, request: Request) -> Response:
        """Faults, authentication, API usage, dispatch, headers and the request log."""
        path = request.url.path
        method = request.method
        body = await request.body()
        started = time.time()
        faults = self.emulator.faults
        is_async = path.startswith("/services/async/")
        latency = faults.take("latency", method, path)
        if latency is not None:
            await asyncio.sleep(float(latency.params.get("seconds", 1.0)))
        reset = faults.take("reset", method, path)
        if reset is not None and not reset.params.get("after_processing"):
            self._log(request, body, 0, started, note="connection reset")
            return _reset_connection(request)
        response = self._refusal(request, is_async=is_async)
        if response is None:
            allow = _allows_duplicate_save(request) and "/jobs/" not in path
            version = re.search(r"/v?(\d+\.\d)/", path)
            tokens = (
                dml.ALLOW_DUPLICATE_SAVE.set(allow and not is_async),
                dml.API_VERSION.set(version.group(1) if version else "62.0"),
            )
            try:
                response = await self._guarded_dispatch(
                    request, body, is_async=is_async
                )
            finally:
                dml.ALLOW_DUPLICATE_SAVE.reset(tokens[0])
                dml.API_VERSION.reset(tokens[1])
        if not is_async:
            used, limit = self.emulator.api_usage()
            response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
        self._log(request, body, response.status_code, started)
        if reset is not None:
            return _reset_connection(request)
        return response

    def _refusal(self, request: Request, *, is_async: bool) -> Response | None:
        """A status fault, a session or limit error, or None to go on (counts calls)."""
        path = request.url.path
        method = request.method
        faults = self.emulator.faults
        status_fault = faults.take("status", method, path)
        if status_fault is not None:
            return _status_fault(status_fault)
        if (
            not self._authorised(request, is_async=is_async)
            or faults.take("invalid_session", method, path) is not None
        ):
            return self._error(invalid_session(), is_async=is_async)
        if faults.take("request_limit", method, path) is not None:
            return self._error(request_limit(), is_async=is_async)
        concurrent = faults.take("concurrent_limit", method, path)
        if concurrent is not None:
            which = str(concurrent.params.get("which", "concurrent"))
            return self._error(request_limit(which), is_async=is_async)
        used, limit = self.emulator.count_api_call()
        if used > limit:
            return self._error(request_limit(), is_async=is_async)
        return None

    async def _guarded_dispatch(
        self, request: Request, body: bytes, *, is_async: bool
    ) -> Response:
        """The handler's response, with its errors rendered the Salesforce way."""
        path = request.url.path
        is_apex = path.startswith("/services/apexrest/")
        try:
            return await self._dispatch(request, body, path, is_apex=is_apex)
        except ApiError as exc:
            return self._error(exc, is_async=is_async)
        except JsonTypeError as exc:
            return self._error(exc.api_error(), is_async=is_async)
        except MultipleChoices as exc:
            return _json(exc.urls, 300)
        except Exception as exc:  # noqa: BLE001 - an emulator bug answers 500 the Salesforce way
            error = ApiError(500, "UNKNOWN_EXCEPTION", f"emulator error: {exc!r}")
            return self._error(error, is_async=is_async)

    def _authorised(self, request: Request, *, is_async: bool) -> bool:
        header = request.headers.get("authorization", "")
        token = None
        if header.lower().startswith(("bearer ", "oauth ")):
            token = header.split(" ", 1)[1].strip()
        if is_async and not token:
            token = request.headers.get("x-sfdc-session")
        return self.emulator.auth.valid(token)

    @staticmethod
    def _error(exc: ApiError, *, is_async: bool) -> Response:
        if is_async:
            code = {
                "INVALID_SESSION_ID": "InvalidSessionId",
                "REQUEST_LIMIT_EXCEEDED": "ExceededQuota",
            }.get(exc.code, exc.code)
            return _json(
                {"exceptionCode": code, "exceptionMessage": exc.message}, exc.status
            )
        return _json(exc.body(), exc.status)

    async def _dispatch(
        self, request: Request, body: bytes, path: str, *, is_apex: bool
    ) -> Response:
        if is_apex:
            return self.apexrest(request, body, path.removeprefix("/services/apexrest"))
        allowed = []
        for method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            version = match.groupdict().get("v")
            if version and version not in API_VERSIONS:
                raise ApiError(
                    404, "NOT_FOUND", "The requested resource does not exist"
                )
            result = handler(Call(request, body, match))
            if asyncio.iscoroutine(result):
                result = await result
            return result  # type: ignore[return-value]
        if allowed:
            raise ApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are "
                + ",".join(sorted(set(allowed))),
            )
        raise not_found()

    def _log(
        self,
        request: Request,
        body: bytes,
        status: int,
        started: float,
        note: str | None = None,
    ) -> None:
        path = request.url.path
        secret = path.startswith(_SECRET_PATHS)
        text = body[:_LOG_BODY_LIMIT].decode("utf-8", "replace")
        entry = {
            "time": started,
            "method": request.method,
            "path": path,
            # OAuth clients may send credentials in the query string too.
            "query": "<redacted>"
            if secret and request.url.query
            else request.url.query,
            "status": status,
            "headers": {
                k: v for k, v in request.headers.items() if k in _LOGGED_HEADERS
            },
            "body": "<redacted>" if secret and body else text,
            "bytes": len(body),
        }
        if note:
            entry["note"] = note
        self.emulator.store.append("requests", entry)

    # --- auth -----------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        """`POST /services/oauth2/token`."""
        body = await request.body()
        started = time.time()
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        basic = None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            with contextlib.suppress(ValueError):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                basic = (unquote(user), unquote(password))
        host = request.headers.get("host", "")
        fault = self.emulator.faults.take("status", request.method, request.url.path)
        if fault is not None:
            response = _status_fault(fault)
        else:
            try:
                token = self.emulator.auth.grant(form, basic, host)
                response = _json(
                    self.emulator.auth.token_response(
                        token,
                        self.instance_url(request),
                        host.split(":")[0] or "login.salesforce.com",
                    )
                )
            except OAuthError as exc:
                response = _json(
                    {"error": exc.error, "error_description": exc.description},
                    exc.status,
                )
        self._log(request, body, response.status_code, started)
        return response

    async def soap(self, request: Request) -> Response:
        """`POST /services/Soap/u/{V}`: the SOAP `login` call only."""
        body = await request.body()
        started = time.time()
        version = request.path_params.get("v", "61.0")
        refused = None
        if _soap_login_retired(version):
            refused = _soap_retired_message(version)
        elif not self.emulator.auth.soap_login_enabled:
            refused = SOAP_LOGIN_DISABLED
        if refused is not None:
            self._log(request, body, 500, started)
            return Response(
                _soap_envelope(_soap_operation_fault(refused)),
                500,
                media_type="text/xml",
            )
        try:
            root = ET.fromstring(body)  # noqa: S314 - local emulator, trusted test clients
            username = next(
                (e.text or "" for e in root.iter() if e.tag.endswith("username")), ""
            )
            password = next(
                (e.text or "" for e in root.iter() if e.tag.endswith("password")), ""
            )
            self.emulator.auth.check_soap_login(username, password)
        except (ET.ParseError, OAuthError):
            fault = (
                "<soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>"
                "INVALID_LOGIN: Invalid username, password, security token; or user "
                "locked out.</faultstring><detail><sf:LoginFault xsi:type="
                '"sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>'
                "<sf:exceptionMessage>Invalid username, password, security token; or "
                "user locked out.</sf:exceptionMessage></sf:LoginFault></detail>"
                "</soapenv:Fault>"
            )
            self._log(request, body, 500, started)
            return Response(_soap_envelope(fault), 500, media_type="text/xml")
        token = self.emulator.auth.issue()
        instance = self.instance_url(request)
        server = f"{instance}/services/Soap/u/{version}/{ORG_ID}"
        result = (
            "<loginResponse><result>"
            f"<metadataServerUrl>{escape(instance)}/services/Soap/m/{version}/{ORG_ID}"
            "</metadataServerUrl><passwordExpired>false</passwordExpired>"
            f"<sandbox>false</sandbox><serverUrl>{escape(server)}</serverUrl>"
            f"<sessionId>{escape(token)}</sessionId><userId>005</userId>"
            f"<userInfo><organizationId>{ORG_ID}</organizationId>"
            f"<userName>{escape(username)}</userName></userInfo>"
            "</result></loginResponse>"
        )
        self._log(request, body, 200, started)
        return Response(_soap_envelope(result), 200, media_type="text/xml")

    def instance_url(self, request: Request) -> str:
        """The `instance_url` to hand out: the option, else this server's base URL."""
        if self.emulator.options.instance_url:
            return self.emulator.options.instance_url.rstrip("/")
        return (
            f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        )

    # --- metadata -----------------------------------------------------------------

    def resources(self, call: Call) -> Response:
        """`GET /services/data/vXX.X`."""
        base = f"/services/data/v{call.version}"
        names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
        return _json({name: f"{base}/{name}" for name in names})

    def describe_global(self, call: Call) -> Response:
        """`GET sobjects`."""
        return _json(
            {
                "encoding": "UTF-8",
                "maxBatchSize": COLLECTION_LIMIT,
                "sobjects": [
                    o.describe_global(call.version) for o in schema.OBJECTS.values()
                ],
            }
        )

    def describe(self, call: Call) -> Response:
        """`GET sobjects/{O}/describe`."""
        return _json(_sobject(call.group("o")).describe(call.version))

    def sobject_info(self, call: Call) -> Response:
        """`GET sobjects/{O}`: basic info and recent items."""
        sobject = _sobject(call.group("o"))
        return _json(
            {"objectDescribe": sobject.describe_global(call.version), "recentItems": []}
        )

    def limits(self, call: Call) -> Response:
        """`GET limits`."""
        del call
        used, limit = self.emulator.api_usage()
        bulk_used = self.emulator.bulk_batches_used()
        bulk_max = self.emulator.options.bulk_batch_limit
        return _json(
            {
                "DailyApiRequests": {"Max": limit, "Remaining": max(limit - used, 0)},
                "DailyBulkApiBatches": {
                    "Max": bulk_max,
                    "Remaining": max(bulk_max - bulk_used, 0),
                },
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
                "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
                "DataStorageMB": {"Max": 5, "Remaining": 5},
                "HourlyODataCallout": {"Max": 20000, "Remaining": 20000},
            }
        )

    # --- records --------------------------------------------------------------------

    def _url(self, call: Call, sobject: str, record_id: str) -> str:
        return f"/services/data/v{call.version}/sobjects/{sobject}/{record_id}"

    def _attrs(self, call: Call, sobject: str, record_id: str) -> dict[str, str]:
        return {"type": sobject, "url": self._url(call, sobject, record_id)}

    def _body(self, call: Call) -> dict[str, Any]:
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "expected a JSON object")
        return body

    def _record_body(self, call: Call, sobject: schema.SObject) -> dict[str, Any]:
        """The body of a single-record write, refused whole as Salesforce does."""
        body = self._body(call)
        check_deserializable(sobject, body, call.body)
        return body

    def create(self, call: Call) -> Response:
        """`POST sobjects/{O}/`."""
        sobject = _sobject(call.group("o"))
        tx = self.emulator.transaction()
        result = tx.create(sobject, self._record_body(call, sobject))
        return self._single(tx, result, 201)

    def update(self, call: Call) -> Response:
        """`PATCH sobjects/{O}/{id}`: 204."""
        sobject = _sobject(call.group("o"))
        tx = self.emulator.transaction()
        if tx.get(schema.normalise_id(call.group("id")) or "") is None:
            raise _inaccessible_ext_field(call.group("id"))
        result = tx.update(sobject, call.group("id"), self._record_body(call, sobject))
        return self._single(tx, result, 204)

    def delete(self, call: Call) -> Response:
        """`DELETE sobjects/{O}/{id}`: 204."""
        sobject = _sobject(call.group("o"))
        tx = self.emulator.transaction()
        record_id = schema.normalise_id(call.group("id")) or ""
        found = tx.get(record_id)
        if found is None or found[0] != sobject.name:
            raise not_found()
        return self._single(tx, tx.delete(record_id, sobject), 204)

    @staticmethod
    def _single(
        tx: Any, result: Result, status: int, *, upsert: bool = False
    ) -> Response:
        if not result.success:
            error = result.errors[0]
            if error["statusCode"] == "DUPLICATE_EXTERNAL_ID" and result.matches:
                raise MultipleChoices(result.matches)
            if "duplicateResult" in error:
                # the single-record REST reply spells it `duplicateResut`, as
                # real orgs answer (a v54 Contact reply quoted in a public client)
                raise ApiError(
                    400,
                    error["statusCode"],
                    error["message"],
                    extra={"duplicateResut": error["duplicateResult"]},
                )
            raise ApiError(400, error["statusCode"], error["message"], error["fields"])
        tx.commit()
        if status == NO_CONTENT:
            return Response(status_code=204)
        return _json(result.as_json(with_created=upsert), status)

    def get_record(self, call: Call) -> Response:
        """`GET sobjects/{O}/{id}[?fields=a,b]`."""
        sobject = _sobject(call.group("o"))
        record_id = schema.normalise_id(call.group("id")) or ""
        found = self.emulator.transaction().get(record_id)
        if found is None or found[0] != sobject.name:
            raise not_found()
        return _json(self._render(call, sobject, found[1]))

    def _render(
        self, call: Call, sobject: schema.SObject, record: dict[str, Any]
    ) -> dict[str, Any]:
        fields = None
        if call.params.get("fields"):
            fields = [f.strip() for f in call.params["fields"].split(",") if f.strip()]
            for name in fields:
                if sobject.field(name) is None:
                    raise ApiError(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name}' on entity '{sobject.name}'.",
                    )
            fields = ["Id", *[sobject.field(n).name for n in fields]]  # type: ignore[union-attr]
        return {
            "attributes": self._attrs(call, sobject.name, record["Id"]),
            **render(sobject, record, fields),
        }

    def _ext_field(self, sobject: schema.SObject, name: str) -> schema.Field:
        field = sobject.field(name)
        if field is None or not (
            field.external_id or field.name == "Id" or field.id_lookup
        ):
            raise not_found(
                "Provided external ID field does not exist or is not accessible: "
                + name
            )
        return field

    def get_by_ext(self, call: Call) -> Response:
        """`GET sobjects/{O}/{extField}/{value}`."""
        sobject = _sobject(call.group("o"))
        field = self._ext_field(sobject, call.group("f"))
        value = call.group("val")
        matches = self.emulator.transaction().find(sobject.name, field.name, value)
        if not matches:
            raise not_found()
        if len(matches) > 1:
            raise MultipleChoices(
                [self._url(call, sobject.name, r["Id"]) for r in matches]
            )
        return _json(self._render(call, sobject, matches[0]))

    def upsert(self, call: Call) -> Response:
        """`PATCH sobjects/{O}/{extField}/{value}`: 201, 200, 300 or 404."""
        sobject = _sobject(call.group("o"))
        field = self._ext_field(sobject, call.group("f"))
        if not (field.external_id or field.name == "Id"):
            raise _inaccessible_ext_field(field.name)
        tx = self.emulator.transaction()
        body = self._record_body(call, sobject)
        result = tx.upsert(sobject, field, call.group("val"), body)
        if not result.success and result.matches:
            urls = [self._url(call, sobject.name, i) for i in result.matches]
            raise MultipleChoices(urls)
        if (
            result.success
            and not result.created
            and float(call.version) < UPSERT_BODY_VERSION
        ):
            return self._single(tx, result, 204)
        return self._single(tx, result, 201 if result.created else 200, upsert=True)

    def delete_by_ext(self, call: Call) -> Response:
        """`DELETE sobjects/{O}/{extField}/{value}`."""
        sobject = _sobject(call.group("o"))
        field = self._ext_field(sobject, call.group("f"))
        tx = self.emulator.transaction()
        matches = tx.find(sobject.name, field.name, call.group("val"))
        if not matches:
            raise not_found()
        if len(matches) > 1:
            raise MultipleChoices(
                [self._url(call, sobject.name, r["Id"]) for r in matches]
            )
        return self._single(tx, tx.delete(matches[0]["Id"], sobject), 204)

    # --- query ------------------------------------------------------------------------

    def _page_size(self, call: Call, records: list[dict[str, Any]]) -> int:
        size = self.emulator.options.query_page_size
        header = call.request.headers.get("sforce-query-options", "")
        match = re.search(r"batchSize=(\d+)", header)
        if match:
            size = max(200, min(2000, int(match.group(1))))
        if _long_text_columns(records) >= 2:  # noqa: PLR2004 - the documented rule
            # "If the SOQL statement selects two or more custom fields of type
            # long text, the batch size can't be greater than 200 records"
            # (SOQL and SOSL Reference, "Change the Batch Size in Queries").
            size = min(size, LONG_TEXT_PAGE)
        return size

    def query(self, call: Call) -> Response:
        """`GET query?q=` / `queryAll?q=`."""
        text = call.params.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        parsed = soql.parse(text)
        rows = self.emulator.store.rows(parsed.sobject.name)
        if call.group("kind") == "query":
            rows = [r for r in rows if not r.get("IsDeleted")]
        found = soql.run(parsed, rows)
        if parsed.count_only:
            return _json({"totalSize": len(found), "done": True, "records": []})
        records = [
            {
                "attributes": self._attrs(call, parsed.sobject.name, r["Id"]),
                **render(parsed.sobject, r, parsed.fields),
            }
            for r in found
        ]
        return self._page(call, records, 0, len(records), None)

    def _page(
        self,
        call: Call,
        records: list[dict[str, Any]],
        offset: int,
        total: int,
        cursor: str | None,
    ) -> Response:
        size = self._page_size(call, records)
        chunk = records[offset : offset + size]
        body: dict[str, Any] = {"totalSize": total, "done": True, "records": chunk}
        if offset + size < len(records):
            if cursor is None:
                cursor = self.emulator.save_cursor(records)
            body["done"] = False
            # `query/<locator>-<offset>` for query and queryAll alike (REST API
            # guide, Query / QueryAll examples); clients follow the URL as is.
            body["nextRecordsUrl"] = (
                f"/services/data/v{call.version}/query/{cursor}-{offset + size}"
            )
        return _json(body)

    def query_more(self, call: Call) -> Response:
        """`GET query/{cursor}-{offset}` (the `nextRecordsUrl`)."""
        cursor = call.group("cursor")
        records = self.emulator.take_cursor(cursor)
        if records is None:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(call, records, int(call.group("off")), len(records), cursor)

    # --- sObject Collections -------------------------------------------------------

    def _records(self, call: Call) -> tuple[list[dict[str, Any]], bool]:
        body = self._body(call)
        records = body.get("records")
        if not isinstance(records, list) or not all(
            isinstance(r, dict) for r in records
        ):
            raise ApiError(
                400, "JSON_PARSER_ERROR", "records must be a list of objects"
            )
        if len(records) > COLLECTION_LIMIT:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot "
                "submit more than 200 records into this call",
            )
        for record in records:
            kind = str((record.get("attributes") or {}).get("type", ""))
            sobject = schema.find_object(call.match.groupdict().get("o") or kind)
            if sobject is not None:
                check_deserializable(sobject, record, call.body)
        return records, str(body.get("allOrNone", False)).lower() == "true"

    @staticmethod
    def _finish_collection(
        tx: Any,
        results: list[Result],
        *,
        all_or_none: bool,
        creates: bool = False,
    ) -> Response:
        if all_or_none and not all(r.success for r in results):
            for result in results:
                if result.success:
                    result.success = False
                    # A rolled-back create has no record, so no `id`; a rolled-back
                    # update or delete keeps the record's `id` (REST API guide,
                    # sObject Collections examples, "allOrNone is true").
                    if creates:
                        result.id = None
                    result.errors = [dict(ROLLED_BACK)]
        else:
            tx.commit()
        return _json([r.as_json() for r in results])

    def collection_create(self, call: Call) -> Response:
        """`POST composite/sobjects`: per-record SaveResults in request order."""
        records, all_or_none = self._records(call)
        tx = self.emulator.transaction()
        results = []
        for record in records:
            sobject = _record_type(record)
            if isinstance(sobject, Result):
                results.append(sobject)
                continue
            if record.get("id") or record.get("Id"):
                results.append(
                    Result.failure(
                        "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"]
                    )
                )
                continue
            results.append(tx.create(sobject, record))
        return self._finish_collection(
            tx, results, all_or_none=all_or_none, creates=True
        )

    def collection_update(self, call: Call) -> Response:
        """`PATCH composite/sobjects`: update by Id."""
        records, all_or_none = self._records(call)
        tx = self.emulator.transaction()
        results = []
        for record in records:
            record_id = record.get("id") or record.get("Id")
            sobject = _record_type(record, record_id)
            if isinstance(sobject, Result):
                results.append(sobject)
                continue
            body = {k: v for k, v in record.items() if k.lower() != "id"}
            results.append(tx.update(sobject, str(record_id or ""), body))
        return self._finish_collection(tx, results, all_or_none=all_or_none)

    def collection_delete(self, call: Call) -> Response:
        """`DELETE composite/sobjects?ids=a,b&allOrNone=false`."""
        ids = [i for i in call.params.get("ids", "").split(",") if i]
        if len(ids) > COLLECTION_LIMIT:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot "
                "submit more than 200 records into this call",
            )
        all_or_none = call.params.get("allOrNone", "false").lower() == "true"
        tx = self.emulator.transaction()
        results = [tx.delete(i) for i in ids]
        return self._finish_collection(tx, results, all_or_none=all_or_none)

    def collection_get(self, call: Call) -> Response:
        """`GET composite/sobjects/{O}?ids=&fields=`."""
        sobject = _sobject(call.group("o"))
        params = dict(call.params)
        if call.request.method == "POST":
            body = self._body(call)
            params = {
                "ids": ",".join(body.get("ids", [])),
                "fields": ",".join(body.get("fields", [])),
            }
        fields = [f for f in params.get("fields", "").split(",") if f]
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields are required")
        tx = self.emulator.transaction()
        out: list[dict[str, Any] | None] = []
        for raw in [i for i in params.get("ids", "").split(",") if i]:
            found = tx.get(schema.normalise_id(raw) or "")
            if found is None or found[0] != sobject.name:
                out.append(None)
                continue
            sub = Call(call.request, b"", call.match)
            sub.params = {"fields": ",".join(fields)}
            out.append(self._render(sub, sobject, found[1]))
        return _json(out)

    def collection_upsert(self, call: Call) -> Response:
        """`PATCH composite/sobjects/{O}/{extField}`: UpsertResults with `created`."""
        sobject = _sobject(call.group("o"))
        field = sobject.field(call.group("f"))
        if field is None or not field.external_id:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Field name provided, "
                f"{call.group('f')} is not an External ID or indexed field "
                f"for {sobject.name}",
            )
        records, all_or_none = self._records(call)
        for record in records:
            kind = (record.get("attributes") or {}).get("type")
            if kind and kind != sobject.name:
                raise ApiError(
                    400, "INVALID_FIELD", "all records must be of the type in the URL"
                )
        results = bulk.run_dml(
            self.emulator,
            sobject,
            "upsert",
            field.name,
            [{k: v for k, v in r.items() if k != "attributes"} for r in records],
            csv_cells=False,
            all_or_none=all_or_none,
        )
        if all_or_none and not all(r.success for r in results):
            for result in results:
                # the record it would have created is gone; an existing one keeps
                # its `id` (REST API guide, Collections upsert, "allOrNone is true")
                if result.errors == [ROLLED_BACK] and result.created:
                    result.id = None
        return _json([r.as_json(with_created=True) for r in results])

    # --- Bulk 2.0 -------------------------------------------------------------------

    def ingest_create(self, call: Call) -> Response:
        """`POST jobs/ingest`."""
        return _json(
            bulk.create_ingest_job(self.emulator, self._body(call), call.version)
        )

    def ingest_list(self, call: Call) -> Response:
        """`GET jobs/ingest`."""
        del call
        jobs = [
            bulk.public_ingest(j, brief=True) for j in self.emulator.store.jobs(bulk.V2)
        ]
        return _json({"done": True, "records": jobs, "nextRecordsUrl": None})

    def ingest_get(self, call: Call) -> Response:
        """`GET jobs/ingest/{id}`."""
        return _json(bulk.poll(self.emulator, call.group("id")))

    def ingest_patch(self, call: Call) -> Response:
        """`PATCH jobs/ingest/{id}` with `{"state": "UploadComplete" | "Aborted"}`."""
        state = str(self._body(call).get("state", ""))
        return _json(bulk.change_state(self.emulator, call.group("id"), state))

    def ingest_delete(self, call: Call) -> Response:
        """`DELETE jobs/ingest/{id}`: 204."""
        job = bulk.load_ingest(self.emulator, call.group("id"))
        if job["state"] in {"Open", "InProgress"}:
            raise ApiError(400, "INVALIDJOBSTATE", "Job is not finished")
        return Response(status_code=204)

    def ingest_upload(self, call: Call) -> Response:
        """`PUT jobs/ingest/{id}/batches`: 201, empty body."""
        bulk.upload(self.emulator, call.group("id"), call.body)
        return Response(status_code=201)

    def ingest_results(self, call: Call) -> Response:
        """`GET jobs/ingest/{id}/successfulResults|failedResults|unprocessedrecords`."""
        which = call.group("which").lower()
        text = bulk.results_csv(self.emulator, call.group("id"), which)
        # UTF-8 bytes under a bare `text/csv`, as Salesforce sends them (no
        # charset, per ../shared/docs/salesforce-api.md (no recording shows the
        # header itself): `requests` would decode `.text` as ISO-8859-1).
        return Response(text.encode("utf-8"), headers={"Content-Type": "text/csv"})

    # --- Bulk 1.0 -------------------------------------------------------------------

    def v1_create(self, call: Call) -> Response:
        """`POST /services/async/V/job` (JSON body)."""
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidJob", "expected a JSON jobInfo")
        return _json(bulk.create_v1_job(self.emulator, body, call.version), 201)

    def _v1_reply(
        self, job: dict[str, Any], info: dict[str, Any], status: int = 200
    ) -> Response:
        if job["contentType"] == "JSON":
            return _json(info, status)
        return _xml(
            bulk.xml_job_info(info)
            if "operation" in info
            else bulk.xml_batch_info(info),
            status,
        )

    def v1_job(self, call: Call) -> Response:
        """`GET job/{id}`: jobInfo, or 400 InvalidJob."""
        job = bulk.load_v1(self.emulator, call.group("id"))
        return _json(bulk.public_v1(job))

    def v1_close(self, call: Call) -> Response:
        """`POST job/{id}` with `{"state": "Closed" | "Aborted"}`."""
        job = bulk.load_v1(self.emulator, call.group("id"))
        state = str(call.json().get("state", "")) if call.body else ""
        if state not in {"Closed", "Aborted"}:
            raise ApiError(400, "InvalidJobState", f"Invalid state: {state}")
        job["state"] = state
        self.emulator.store.save_job(job["id"], bulk.V1, job)
        return _json(bulk.public_v1(job))

    def v1_add_batch(self, call: Call) -> Response:
        """`POST job/{id}/batch`: XML batchInfo for CSV jobs, JSON for JSON jobs."""
        job = bulk.load_v1(self.emulator, call.group("id"))
        info = bulk.add_batch(self.emulator, job["id"], call.body)
        return self._v1_reply(job, info, 201)

    def _batch(self, call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
        job = bulk.load_v1(self.emulator, call.group("id"))
        batch = job["_batches"].get(call.group("b"))
        if batch is None:
            raise ApiError(400, "InvalidBatch", f"Invalid batch id: {call.group('b')}")
        return job, batch

    def v1_batches(self, call: Call) -> Response:
        """`GET job/{id}/batch`: every batchInfo."""
        job = bulk.load_v1(self.emulator, call.group("id"))
        infos = [bulk.batch_info(job, b) for b in job["_batches"].values()]
        self.emulator.store.save_job(job["id"], bulk.V1, job)
        if job["contentType"] == "JSON":
            return _json({"batchInfo": infos})
        inner = "".join(bulk.xml_batch_info(i, root=False) for i in infos)
        return _xml(
            '<?xml version="1.0" encoding="UTF-8"?><batchInfoList xmlns="'
            f'{bulk.XML_NS}">{inner}</batchInfoList>'
        )

    def v1_batch(self, call: Call) -> Response:
        """`GET job/{id}/batch/{bid}`: Completed at once (unless `slow_bulk`)."""
        job, batch = self._batch(call)
        info = bulk.batch_info(job, batch)
        self.emulator.store.save_job(job["id"], bulk.V1, job)
        return self._v1_reply(job, info)

    def v1_request(self, call: Call) -> Response:
        """`GET job/{id}/batch/{bid}/request`: the submitted batch body."""
        _job, batch = self._batch(call)
        return PlainTextResponse(batch["_request"])

    def v1_results(self, call: Call) -> Response:
        """`GET .../result`: result Ids of a query, or per-record DML results."""
        job, batch = self._batch(call)
        if batch["state"] != "Completed" or batch["_polls"] > 0:
            raise ApiError(400, "InvalidBatch", "Batch not completed")
        if "_dml" in batch:
            return _json(batch["_dml"])
        ids = list(batch.get("_results", {}))
        if job["contentType"] == "JSON":
            return _json(ids)
        inner = "".join(f"<result>{i}</result>" for i in ids)
        return _xml(
            '<?xml version="1.0" encoding="UTF-8"?><result-list xmlns="'
            f'{bulk.XML_NS}">{inner}</result-list>'
        )

    def v1_result(self, call: Call) -> Response:
        """`GET .../result/{rid}`: the query result file (CSV or JSON)."""
        job, batch = self._batch(call)
        payload = batch.get("_results", {}).get(call.group("r"))
        if payload is None:
            raise ApiError(400, "InvalidBatch", "Invalid result id")
        media = "application/json" if job["contentType"] == "JSON" else "text/csv"
        return Response(payload, media_type=media)

    # --- Apex REST --------------------------------------------------------------------

    def apexrest(self, request: Request, body: bytes, path: str) -> Response:
        """`ANY /services/apexrest/{path}`: run the registered handler and record it."""
        found = self.emulator.apex.resolve(path)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": path,
            "params": dict(request.query_params),
            "body": parsed if parsed is not None else body.decode("utf-8", "replace"),
            "mapping": found[0] if found else None,
        }
        if found is None:
            status, result = (
                404,
                [
                    {
                        "errorCode": "NOT_FOUND",
                        "message": f"Could not find a match for URL {path}",
                    }
                ],
            )
        else:
            req = apex_module.ApexRequest(
                request.method,
                path,
                dict(request.query_params),
                dict(request.headers),
                body,
                parsed,
            )
            ctx = apex_module.ApexContext(
                self.emulator.store, self.emulator.transaction
            )
            try:
                status, result = found[1](req, ctx)
            except apex_module.ApexException as exc:
                status, result = apex_module.APEX_ERROR_STATUS, exc.body()
        entry["status"] = status
        entry["response"] = result
        self.emulator.store.append("apex_calls", entry)
        return _json(result, status)

    # --- /_sandbox ---------------------------------------------------------------

    async def sandbox(self, request: Request) -> Response:
        """Inspection and fault injection."""
        path = request.url.path.removeprefix("/_sandbox").strip("/")
        method = request.method
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return _json({"error": "expected a JSON body"}, 400)
        if path.startswith("records/") and method == "GET":
            name = path.removeprefix("records/")
            try:
                return _json(self.emulator.records(name))
            except KeyError:
                return _json({"error": f"unknown sObject {name}"}, 404)
        handler = self._sandbox_routes().get((method, path))
        if handler is None:
            return _json({"error": "unknown sandbox endpoint"}, 404)
        return handler(body or {})

    def _sandbox_routes(self) -> dict[tuple[str, str], Callable[[Any], Response]]:
        """The `/_sandbox` endpoints by (method, path); each takes the JSON body."""
        emulator = self.emulator
        return {
            ("GET", "records"): lambda _: _json(emulator.counts()),
            ("GET", "requests"): lambda _: _json(emulator.requests_log()),
            ("GET", "jobs"): lambda _: self._sandbox_jobs(),
            ("GET", "apex"): lambda _: _json(emulator.apex_calls()),
            ("POST", "reset"): lambda _: self._sandbox_reset(),
            ("POST", "seed"): self._sandbox_seed,
            ("DELETE", "faults"): lambda _: self._sandbox_clear_faults(),
            ("GET", "faults"): lambda _: _json(emulator.faults.listing()),
            ("POST", "faults"): self._add_fault,
            ("POST", "token"): lambda _: _json({"access_token": emulator.auth.issue()}),
            ("GET", "usage"): lambda _: self._sandbox_usage(),
            ("POST", "connected_app"): self._sandbox_connected_app,
            ("POST", "org_settings"): self._sandbox_org_settings,
        }

    def _sandbox_org_settings(self, body: object) -> Response:
        """Org settings: `soap_login_enabled`, `oauth_password_flow_enabled` (bools)."""
        return self._auth_switches(
            body, ("soap_login_enabled", "oauth_password_flow_enabled")
        )

    def _sandbox_connected_app(self, body: object) -> Response:
        """Connected app policies: `{"refresh_requires_secret": bool}`."""
        return self._auth_switches(body, ("refresh_requires_secret",))

    def _auth_switches(self, body: object, names: tuple[str, ...]) -> Response:
        """Set the named on/off settings of the org's auth given in `body`.

        Answers every named setting's value after the change.
        """
        if not isinstance(body, dict):
            return _not_an_object()
        auth = self.emulator.auth
        for name in names:
            if name in body:
                setattr(auth, name, bool(body[name]))
        return _json({"ok": True} | {name: getattr(auth, name) for name in names})

    def _sandbox_jobs(self) -> Response:
        jobs = self.emulator.store.jobs
        return _json(
            {
                "ingest": [bulk.public_ingest(j) for j in jobs(bulk.V2)],
                "bulk1": [bulk.public_v1(j) for j in jobs(bulk.V1)],
            }
        )

    def _sandbox_reset(self) -> Response:
        self.emulator.reset()
        return _json({"ok": True})

    def _sandbox_seed(self, body: object) -> Response:
        if not isinstance(body, dict):
            return _not_an_object()
        size = str(body.get("size", "small"))
        try:
            return _json({"ok": True, "records": self.emulator.reseed(size)})
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)

    def _sandbox_clear_faults(self) -> Response:
        self.emulator.faults.clear()
        return _json({"ok": True})

    def _sandbox_usage(self) -> Response:
        used, limit = self.emulator.api_usage()
        return _json({"used": used, "limit": limit})

    def _add_fault(self, spec: object) -> Response:
        if not isinstance(spec, dict):
            return _not_an_object()
        if spec.get("kind") == "api_usage":
            used = spec.get("used")
            limit = spec.get("limit")
            self.emulator.set_api_usage(
                int(used) if used is not None else None,
                int(limit) if limit is not None else None,
            )
            return _json({"ok": True, "usage": list(self.emulator.api_usage())})
        if spec.get("kind") == "invalid_session" and spec.get("revoke"):
            self.emulator.auth.revoke_all()
            return _json({"ok": True, "revoked": True})
        try:
            fault = self.emulator.faults.add(spec)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"ok": True, "fault": fault.as_json()})


LONG_TEXT_PAGE = 200
# textarea longer than this is a long text area (a plain Text Area holds 255)
_PLAIN_TEXTAREA = 255


def _long_text_columns(records: list[dict[str, Any]]) -> int:
    """How many custom long text area fields a page of query results selects."""
    if not records:
        return 0
    first = records[0]
    sobject = schema.find_object(str((first.get("attributes") or {}).get("type")))
    if sobject is None:
        return 0
    return sum(
        1
        for name in first
        if (field := sobject.field(name)) is not None
        and field.custom
        and field.type == "textarea"
        and field.length > _PLAIN_TEXTAREA
    )


_SPACED = re.compile(r"^\d{4}-\d{2}-\d{2} ")
_JSON_TYPES = {
    "double": "double",
    "currency": "double",
    "percent": "double",
    "int": "int",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
}


def check_deserializable(
    sobject: schema.SObject, record: dict[str, Any], raw: bytes
) -> None:
    """Refuse the whole request as Salesforce's JSON deserializer does.

    A name that is neither a field nor a relationship of the object answers 400
    INVALID_FIELD, and a value of the wrong JSON type for a number, boolean, date
    or date-time field answers 400 JSON_PARSER_ERROR ("Cannot deserialize
    instance of datetime from VALUE_STRING value ...": misc_real_errors.md,
    regican/Salesforce#2), for the whole call, not for one record.

    Raises:
        ApiError: INVALID_FIELD for an unknown name.
        JsonTypeError: for a value the field's type cannot take.
    """
    for key, value in record.items():
        if key == "attributes" or key.lower() == "id":
            continue
        field = sobject.field(key)
        if field is None:
            rel = key.partition(".")[0].lower()
            if not any(
                f.relationship_name and f.relationship_name.lower() == rel
                for f in sobject.fields
            ):
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {sobject.name}",
                )
            continue
        kind = _JSON_TYPES.get(field.type)
        if kind is None or value is None:
            continue
        if kind == "datetime" and isinstance(value, str) and _SPACED.match(value):
            # "2017-10-17 00:00:00" is refused whole (misc_real_errors.md,
            # JSON_PARSER_ERROR; copy in tests/fixtures/target_salesforce/
            # real_api_errors.json)
            raise JsonTypeError(kind, value, raw)
        try:
            coerce(field, value)
        except FieldValueError as exc:
            if exc.code == "INVALID_TYPE_ON_FIELD_IN_RECORD":
                raise JsonTypeError(kind, value, raw) from None


def _allows_duplicate_save(request: Request) -> bool:
    """Whether `Sforce-Duplicate-Rule-Header` carries `allowSave=true`."""
    header = request.headers.get("sforce-duplicate-rule-header", "")
    parts = [p.strip().lower().replace(" ", "") for p in header.split(";")]
    return "allowsave=true" in parts


def _record_type(
    record: dict[str, Any], record_id: str | None = None
) -> schema.SObject | Result:
    """A collection record's type from its `attributes`, or its INVALID_TYPE result."""
    kind = str((record.get("attributes") or {}).get("type", ""))
    sobject = schema.find_object(kind)
    if sobject is None:
        return Result.failure(
            "INVALID_TYPE",
            f"sObject type '{kind}' is not supported",
            record_id=record_id,
        )
    return sobject


def _not_an_object() -> Response:
    return _json({"error": "expected a JSON object"}, 400)


def _inaccessible_ext_field(name: str) -> ApiError:
    return not_found(
        f"Provided external ID field does not exist or is not accessible: {name}"
    )


def _sobject(name: str) -> schema.SObject:
    found = schema.find_object(name)
    if found is None:
        raise bad_type(name)
    return found


def _status_fault(fault: Fault) -> Response:
    status = int(fault.params.get("status", 503))
    unavailable = status == HTTPStatus.SERVICE_UNAVAILABLE
    code = "SERVER_UNAVAILABLE" if unavailable else "UNKNOWN_EXCEPTION"
    code = str(fault.params.get("code", code))
    message = str(fault.params.get("message", "emulated server error (sandbox fault)"))
    return _json([{"errorCode": code, "message": message}], status)


def _soap_login_retired(version: str) -> bool:
    """Whether SOAP `login()` is gone at this API version (v65.0 and later).

    Source: Salesforce's SOAP API end-of-life page,
    developer.salesforce.com/docs/platform/api/guide/api-eol-soap.html.
    """
    try:
        return float(version) >= 65.0  # noqa: PLR2004 - the documented first version without it
    except ValueError:
        return False


def _soap_retired_message(version: str) -> str:
    """What a real org answers to `login()` at v65.0+ (with INVALID_OPERATION).

    As a client quoted it: forcedotcom/wsc issue #363, exceptionCode
    INVALID_OPERATION, "The SOAP Login operation is not available in the API
    version specified (65.0). Refer to the documentation for supported versions."
    """
    return (
        "The SOAP Login operation is not available in the API version specified "
        f"({escape(version)}). Refer to the documentation for supported versions."
    )


#: What an org with "Enable SOAP API login()" off answers (the default of newly
#: created orgs, help.salesforce.com 005132110), as clients quote it
#: through simple-salesforce: "Authentication failed (code: INVALID_OPERATION):
#: SOAP API login() is disabled by default in this org. Contact the org
#: administrator to enable SOAP API login()." (OpenFn/adaptors issue #1715 quotes
#: the same code and first sentence). Checked after the version, before the
#: credentials: that order is our reading, no source shows it.
SOAP_LOGIN_DISABLED = (
    "SOAP API login() is disabled by default in this org. Contact the org "
    "administrator to enable SOAP API login()."
)


def _soap_operation_fault(message: str) -> str:
    """A SOAP fault with exceptionCode INVALID_OPERATION and `message`.

    The code, and the message in `exceptionMessage`, are what clients quote (and
    what simple-salesforce reads). The detail's type is not in those quotes: the
    partner WSDL declares LoginFault, InvalidIdFault and UnexpectedErrorFault for
    `login`, and INVALID_OPERATION is not a login fault, so UnexpectedErrorFault
    is our reading.
    """
    return (
        "<soapenv:Fault><faultcode>sf:INVALID_OPERATION</faultcode><faultstring>"
        f"INVALID_OPERATION: {message}</faultstring><detail>"
        '<sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault">'
        "<sf:exceptionCode>INVALID_OPERATION</sf:exceptionCode>"
        f"<sf:exceptionMessage>{message}</sf:exceptionMessage>"
        "</sf:UnexpectedErrorFault></detail></soapenv:Fault>"
    )


def _soap_envelope(inner: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv='
        '"http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com"'
        ' xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi='
        f'"http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{inner}'
        "</soapenv:Body></soapenv:Envelope>"
    )


class _ResetResponse(Response):
    """Aborts the TCP connection (RST) instead of answering."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        del scope, receive
        if not await abort_connection(send):
            msg = "connection reset (sandbox fault)"
            raise ConnectionResetError(msg)


def _reset_connection(request: Request) -> Response:
    del request
    return _ResetResponse()


def create_app(  # noqa: PLR0913 - keyword-only app options
    *,
    db_path: Path | str | None = None,
    seed: str | None = "small",
    instance_url: str | None = None,
    query_page_size: int = 2000,
    api_limit: int = 100_000,
    jwt_certificate_pem: bytes | None = None,
    emulator: Emulator | None = None,
) -> Starlette:
    """Build the emulator's ASGI app.

    Args:
        db_path: SQLite file (None: in memory). A non-empty database is kept.
        seed: "small", "demo" or None for an empty org.
        instance_url: the `instance_url` handed out by the token endpoint, for
            example `https://sandbox.my.salesforce.com`; None hands out this
            server's own base URL as the client reached it.
        query_page_size: records per query page before `nextRecordsUrl`.
        api_limit: the daily API allocation in `Sforce-Limit-Info`.
        jwt_certificate_pem: the certificate registered for JWT bearer (None:
            a fresh key pair; its private key is
            `app.state.emulator.jwt_private_key_pem`).
        emulator: an existing emulator to serve (the other arguments are ignored).

    Returns:
        The Starlette app; `app.state.emulator` is the `Emulator`.
    """
    if emulator is None:
        emulator = Emulator(
            db_path=db_path,
            seed=seed,
            options=Options(
                instance_url=instance_url,
                query_page_size=query_page_size,
                api_limit=api_limit,
            ),
            jwt_certificate_pem=jwt_certificate_pem,
        )
    handlers = SalesforceApp(emulator)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]

    async def versions(request: Request) -> Response:
        del request
        return _json(
            [
                {"label": f"v{v}", "url": f"/services/data/v{v}", "version": v}
                for v in API_VERSIONS
            ]
        )

    app = Starlette(
        routes=[
            Route("/services/oauth2/token", handlers.token, methods=["POST"]),
            Route("/services/Soap/u/{v}", handlers.soap, methods=["POST"]),
            Route("/services/data", versions, methods=["GET"]),
            Route("/services/data/", versions, methods=["GET"]),
            Route("/services/data/{rest:path}", handlers.api, methods=methods),
            Route("/services/async/{rest:path}", handlers.api, methods=methods),
            Route("/services/apexrest/{rest:path}", handlers.api, methods=methods),
            Route("/_sandbox/{rest:path}", handlers.sandbox, methods=methods),
        ]
    )
    app.state.emulator = emulator
    app.state.handlers = handlers
    return app
