"""Bulk API 2.0 ingest jobs; Bulk API 1.0 jobs (tap-salesforce queries, JSON DML)."""

from __future__ import annotations

import collections
import csv
import io
import json
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from sandbox.salesforce import schema, soql
from sandbox.salesforce.dml import INTEGRATION_USER_ID, ROLLED_BACK, Result, render
from sandbox.salesforce.errors import ApiError, record_error
from sandbox.salesforce.values import csv_cell, now_text

if TYPE_CHECKING:
    from sandbox.salesforce.dml import Transaction
    from sandbox.salesforce.emulator import Emulator
    from sandbox.salesforce.schema import SObject

DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
NULL_CELL = "#N/A"
V2 = "ingest"
V1 = "v1"
XML_NS = "http://www.force.com/2009/06/asyncapi/dataload"


def _job_id(emulator: Emulator) -> str:
    return schema.make_id("750", emulator.store.next_value("id:750"))


def _bulk_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


# --- Bulk API 2.0 ingest ----------------------------------------------------------


def create_ingest_job(
    emulator: Emulator, body: dict[str, Any], version: str
) -> dict[str, Any]:
    """Create an ingest job in state Open.

    Raises:
        ApiError: unknown object, operation, delimiter or external Id field.
    """
    sobject = schema.find_object(str(body.get("object", "")))
    if sobject is None:
        raise _bulk_error(
            400,
            "INVALIDENTITY",
            f"Entity '{body.get('object')}' is not supported by the Bulk API.",
        )
    operation = str(body.get("operation", ""))
    if operation not in OPERATIONS:
        raise _bulk_error(400, "INVALIDJOB", f"Invalid operation: {operation}")
    delimiter = str(body.get("columnDelimiter") or "COMMA")
    line_ending = str(body.get("lineEnding") or "LF")
    if delimiter not in DELIMITERS or line_ending not in {"LF", "CRLF"}:
        raise _bulk_error(400, "INVALIDJOB", "Invalid columnDelimiter or lineEnding")
    ext = body.get("externalIdFieldName")
    if operation == "upsert":
        field = sobject.field(str(ext or ""))
        if field is None or not (field.external_id or field.name == "Id"):
            raise _bulk_error(
                400,
                "INVALIDJOB",
                f"InvalidJob : Field name provided, {ext} is not an "
                f"External ID or indexed field for {sobject.name}",
            )
        ext = field.name
    job_id = _job_id(emulator)
    now = now_text()
    job = {
        "id": job_id,
        "operation": operation,
        "object": sobject.name,
        "createdById": INTEGRATION_USER_ID,
        "createdDate": now,
        "systemModstamp": now,
        "state": "Open",
        "externalIdFieldName": ext if operation == "upsert" else None,
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": float(version),
        "contentUrl": f"services/data/v{version}/jobs/ingest/{job_id}/batches",
        "lineEnding": line_ending,
        "columnDelimiter": delimiter,
        # Internal state, never served.
        "_data": None,
        "_polls": 0,
        "_results": None,
    }
    emulator.store.save_job(job_id, V2, job)
    return public_ingest(job, brief=True)


def public_ingest(job: dict[str, Any], *, brief: bool = False) -> dict[str, Any]:
    """The job info a client sees."""
    info = {k: v for k, v in job.items() if not k.startswith("_")}
    if info.get("externalIdFieldName") is None:
        # the recorded create/close answers of an update job carry no such key
        info.pop("externalIdFieldName", None)
    if brief:
        for key in (
            "numberRecordsProcessed",
            "numberRecordsFailed",
            "errorMessage",
            "retries",
            "totalProcessingTime",
            "jobType",
        ):
            info.pop(key, None)
    else:
        info.setdefault("jobType", "V2Ingest")
        info.setdefault("numberRecordsProcessed", 0)
        info.setdefault("numberRecordsFailed", 0)
        info.setdefault("retries", 0)
        info.setdefault("totalProcessingTime", 0)
        info.setdefault("apiActiveProcessingTime", 0)
        info.setdefault("apexProcessingTime", 0)
    return info


def load_ingest(emulator: Emulator, job_id: str) -> dict[str, Any]:
    """A stored ingest job.

    Raises:
        ApiError: 404 NOT_FOUND for an unknown job.
    """
    job = emulator.store.load_job(job_id, V2)
    if job is None:
        raise _bulk_error(404, "NOT_FOUND", "The requested resource does not exist")
    return job


def upload(emulator: Emulator, job_id: str, data: bytes) -> None:
    """Store the job's CSV data (one upload per job).

    Raises:
        ApiError: the job is not Open or already has data.
    """
    job = load_ingest(emulator, job_id)
    if job["state"] != "Open":
        raise _bulk_error(
            409,
            "INVALIDJOBSTATE",
            f"Job {job_id} is not open for uploads: {job['state']}",
        )
    if job["_data"] is not None:
        raise _bulk_error(
            400,
            "BULK_API_ERROR",
            "Found multiple contents for job: only one upload is allowed",
        )
    job["_data"] = data.decode("utf-8-sig")
    emulator.store.save_job(job_id, V2, job)


def change_state(emulator: Emulator, job_id: str, state: str) -> dict[str, Any]:
    """Close (UploadComplete: process now) or abort a job.

    Raises:
        ApiError: a transition Salesforce refuses.
    """
    job = load_ingest(emulator, job_id)
    if state == "Aborted":
        if job["state"] in {"JobComplete", "Failed"} and job["_polls"] == 0:
            # Real text for a completed job (restforce/restforce#905; contract in
            # tests/fixtures/real_api_salesforce/misc_real_errors.json): `[{"errorCode":
            # "INVALIDJOBSTATE","message":"Aborting already Completed Job not
            # allowed"}]`; the status and the Failed-job text are not recorded.
            finished = "Completed" if job["state"] == "JobComplete" else "Failed"
            raise _bulk_error(
                400,
                "INVALIDJOBSTATE",
                f"Aborting already {finished} Job not allowed",
            )
        # A job whose polls still show InProgress (`slow_bulk`) stops there: the
        # rows processed so far stay written and reported, the rest (if a
        # `bulk_job_failed` fault left any) unprocessed.
        job["state"] = "Aborted"
        job["_polls"] = 0
        job.pop("errorMessage", None)
    elif state == "UploadComplete":
        if job["state"] != "Open":
            raise _bulk_error(
                409, "INVALIDJOBSTATE", f"Job {job_id} is in state {job['state']}"
            )
        emulator.store.next_value("bulk_batches")
        _process_ingest(emulator, job)
    else:
        raise _bulk_error(400, "INVALIDJOBSTATE", f"Invalid state: {state}")
    job["systemModstamp"] = now_text()
    emulator.store.save_job(job_id, V2, job)
    info = public_ingest(job, brief=True)
    if state == "UploadComplete":
        # Recorded (bulk2_update_trace): the close answers UploadComplete, without
        # lineEnding, columnDelimiter or contentUrl; later polls show InProgress.
        info["state"] = "UploadComplete"
        for key in ("lineEnding", "columnDelimiter", "contentUrl"):
            info.pop(key, None)
    return info


def poll(emulator: Emulator, job_id: str) -> dict[str, Any]:
    """The job info; a `slow_bulk` fault keeps it InProgress for some polls."""
    job = load_ingest(emulator, job_id)
    info = public_ingest(job)
    if job["_polls"] > 0 and job["state"] in {"JobComplete", "Failed"}:
        job["_polls"] -= 1
        emulator.store.save_job(job_id, V2, job)
        info["state"] = "InProgress"
        info.pop("errorMessage", None)
    return info


def _line_ending_of(data: str) -> str | None:
    end = data.find("\n")
    if end < 0:
        return None
    return "CRLF" if end > 0 and data[end - 1] == "\r" else "LF"


def _header_line(data: str) -> str:
    """The uploaded header line, exactly as sent (results echo it).

    A clean job's failed/unprocessed files are this header alone, as recorded in
    bulk2_update_trace_mohan-chinnappan-n_cli-dx.md.
    """
    return data.split("\n", 1)[0].rstrip("\r")


def _fail_job(job: dict[str, Any], message: str, header: list[str]) -> None:
    """A whole-job failure before any row: every row stays unprocessed."""
    job.update(state="Failed", errorMessage=message)
    job["_results"] = {"header": header, "ok": [], "failed": [], "rows": None}


# In-progress polls after the close when no `slow_bulk` fault asks for more: the
# recorded job answered UploadComplete, then InProgress, then JobComplete.
DEFAULT_IN_PROGRESS_POLLS = 1


def _process_ingest(emulator: Emulator, job: dict[str, Any]) -> None:
    data = job["_data"] or ""
    slow = emulator.faults.take("slow_bulk")
    job["_polls"] = (
        int(slow.params.get("polls", 2)) if slow else DEFAULT_IN_PROGRESS_POLLS
    )
    failed = emulator.faults.take("bulk_job_failed")
    declared = job["lineEnding"]
    found = _line_ending_of(data)
    if found is not None and found != declared:
        _fail_job(
            job,
            "ClientInputError : LineEnding is "
            f"invalid on user data. Current LineEnding setting is {declared}",
            [],
        )
        return
    reader = csv.reader(
        io.StringIO(data, newline=""), delimiter=DELIMITERS[job["columnDelimiter"]]
    )
    rows = [row for row in reader if row]
    sobject = schema.OBJECTS[job["object"]]
    if not rows:
        _fail_job(job, "InvalidBatch : Records not processed", [])
        return
    header = rows[0]
    for column in header:
        problem = _column_problem(sobject, column)
        if problem:
            _fail_job(job, f"InvalidBatch : {problem}", header)
            return
    body_rows = rows[1:]
    message = ""
    if failed is not None:
        # The job fails after `processed` rows (default none): those are written
        # and reported, the others stay unprocessed (as a Failed job does when
        # Salesforce gives up on its later batches).
        processed = max(0, int(failed.params.get("processed", 0)))
        message = str(
            failed.params.get(
                "message", "InternalServerError : the job failed (sandbox fault)"
            )
        )
        body_rows = body_rows[:processed]
    # A row whose cell count differs from the header's fails on its own, its
    # cells echoed empty: `"","INVALID_FIELD:Number of fields in header is
    # different from the row. header = 4 row = 3:--","","","",""` (a real
    # failedResults answer quoted in github garek007/salesforce
    # sf-api-jquery/index.php; fixture real_api_salesforce/bulk2_results_real.json).
    well_formed = [row for row in body_rows if len(row) == len(header)]
    written = iter(
        run_dml(
            emulator,
            sobject,
            job["operation"],
            job["externalIdFieldName"],
            [dict(zip(header, row, strict=True)) for row in well_formed],
            csv_cells=True,
        )
    )
    ok: list[list[str]] = []
    bad: list[list[str]] = []
    for row in body_rows:
        if len(row) != len(header):
            text = (
                "INVALID_FIELD:Number of fields in header is different from the "
                f"row. header = {len(header)} row = {len(row)}:--"
            )
            bad.append(["", text, *([""] * len(header))])
            continue
        result = next(written)
        if result.success:
            ok.append([result.id or "", "true" if result.created else "false", *row])
        else:
            error = result.errors[0] if result.errors else record_error("UNKNOWN", "")
            fields = ",".join(error.get("fields") or [])
            # recorded format: CODE:message:fields -- (no fields: `CODE:message:--`)
            tail = f"{fields} --" if fields else "--"
            text = f"{error['statusCode']}:{error['message']}:{tail}"
            bad.append([result.id or "", text, *row])
    job.update(
        state="JobComplete" if failed is None else "Failed",
        numberRecordsProcessed=len(body_rows),
        numberRecordsFailed=len(bad),
    )
    if failed is not None:
        job["errorMessage"] = message
    job["_results"] = {
        "header": header,
        "ok": ok,
        "failed": bad,
        "rows": rows[1 + len(body_rows) :],
    }


def _column_problem(sobject: SObject, column: str) -> str | None:
    """Why a header column cannot be loaded, or None.

    A polymorphic lookup needs its type, `Type:Relationship.Field`
    (`Lead:Who.Email`); a single-type one must not have it ("Relationship
    Fields in a Header Row (2.0)", Bulk API 2.0 developer guide).
    """
    if sobject.field(column):
        return None
    typed, _, rest = column.rpartition(":")
    base = rest.split(".")[0]
    ref = next(
        (
            f
            for f in sobject.fields
            if f.relationship_name and f.relationship_name.lower() == base.lower()
        ),
        None,
    )
    if ref is None or "." not in rest:
        return f"Field name not found : {column}"
    if typed and len(ref.reference_to) < 2:  # noqa: PLR2004 - polymorphic: 2+ types
        return (
            f"Field name not found : {column}: type is not needed for non "
            "polymorphic foreign key references"
        )
    if not typed and len(ref.reference_to) > 1:
        return (
            f"Field name not found : {column}: a polymorphic foreign key needs "
            "its object type, as ObjectType:RelationshipName.IndexedFieldName"
        )
    return None


def _unprocessed_csv(job: dict[str, Any], results: dict[str, Any]) -> str:
    """The header line, then every row no result file reports (none when done)."""
    data = job.get("_data") or ""
    rows = results.get("rows")
    if rows is None:  # failed before any row: everything is unprocessed
        return data
    ending = "\r\n" if job["lineEnding"] == "CRLF" else "\n"
    out = io.StringIO()
    writer = csv.writer(
        out,
        delimiter=DELIMITERS[job["columnDelimiter"]],
        lineterminator=ending,
        quoting=csv.QUOTE_MINIMAL,
    )
    writer.writerows(rows)
    return _header_line(data) + ending + out.getvalue()


def results_csv(emulator: Emulator, job_id: str, which: str) -> str:
    """A results file: successfulresults, failedresults or unprocessedrecords.

    As recorded (bulk2_update_trace): the `sf__` header cells are quoted and
    the uploaded header follows as sent; an unprocessed file of a finished job
    is the header line alone.

    Raises:
        ApiError: unknown job or file, or the job is not finished.
    """
    job = load_ingest(emulator, job_id)
    results = job.get("_results")
    if which == "unprocessedrecords":
        if results is None:
            return job.get("_data") or ""
        return _unprocessed_csv(job, results)
    if results is None or job["_polls"] > 0:
        raise _bulk_error(400, "INVALIDJOBSTATE", "Job is not complete")
    delimiter = DELIMITERS[job["columnDelimiter"]]
    out = io.StringIO()
    writer = csv.writer(
        out, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL
    )
    header = _header_line(job.get("_data") or "") if results["header"] else ""
    if which == "successfulresults":
        first, rows = "sf__Created", results["ok"]
    elif which == "failedresults":
        # sf__Error "CODE:message --" as recorded in misc_real_errors.md.
        first, rows = "sf__Error", results["failed"]
    else:
        raise _bulk_error(404, "NOT_FOUND", "The requested resource does not exist")
    sf_cells = delimiter.join(f'"{c}"' for c in ("sf__Id", first))
    out.write(sf_cells + (delimiter + header if header else "") + "\n")
    writer.writerows(rows)
    return out.getvalue()


# --- shared DML for bulk rows ---------------------------------------------------------


def _cells_to_body(row: dict[str, Any], *, csv_cells: bool) -> dict[str, Any]:
    """A CSV row as a write body, with Bulk's empty-cell rule.

    An empty cell is left out, so an update keeps the field's value, and `#N/A`
    becomes null (Bulk API 2.0 developer guide, "Valid Record Rows").
    """
    if not csv_cells:
        return dict(row)
    body: dict[str, Any] = {}
    for key, value in row.items():
        if value == "":
            continue  # an empty cell leaves the field unchanged
        body[key] = None if value == NULL_CELL else value
    return body


def run_dml(  # noqa: PLR0913 - the bulk operation and its options
    emulator: Emulator,
    sobject: SObject,
    operation: str,
    ext_field: str | None,
    rows: list[dict[str, Any]],
    *,
    csv_cells: bool,
    all_or_none: bool = False,
) -> list[Result]:
    """Apply one bulk operation to rows; each row succeeds or fails on its own."""
    tx = emulator.transaction()
    ext = sobject.field(ext_field) if ext_field else None
    bodies = [_cells_to_body(row, csv_cells=csv_cells) for row in rows]
    keys = [_ext_key(body, ext) for body in bodies]
    counts = collections.Counter(k for k in keys if k is not None)
    repeated = {k for k, n in counts.items() if n > 1}
    results = [
        _by_id(tx, sobject, operation, body)
        if operation in _BY_ID
        else _upsert(tx, sobject, ext, body, repeated=key in repeated)
        for body, key in zip(bodies, keys, strict=True)
    ]
    if all_or_none and not all(r.success for r in results):
        for result in results:
            if result.success:
                result.success = False
                result.errors = [dict(ROLLED_BACK)]
        return results
    tx.commit()
    return results


_BY_ID = frozenset({"insert", "update", "delete", "hardDelete"})


def _ext_value(body: dict[str, Any], ext: schema.Field | None) -> object:
    """The row's external Id value (None when absent or no field is named)."""
    if ext is None:
        return None
    return next((v for k, v in body.items() if k.lower() == ext.name.lower()), None)


def _ext_key(body: dict[str, Any], ext: schema.Field | None) -> str | None:
    """The external Id value as compared for repeats (case-insensitive)."""
    value = _ext_value(body, ext)
    return str(value).lower() if value is not None else None


def _by_id(
    tx: Transaction, sobject: SObject, operation: str, body: dict[str, Any]
) -> Result:
    """Insert, update, delete or hardDelete one row."""
    record_id = next((str(v) for k, v in body.items() if k.lower() == "id" and v), None)
    if operation == "insert":
        return tx.create(sobject, body)
    if operation == "update":
        if record_id is None:
            return Result.failure(
                "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"]
            )
        return tx.update(sobject, record_id, body)
    return tx.delete(record_id or "", sobject)


def _upsert(
    tx: Transaction,
    sobject: SObject,
    ext: schema.Field | None,
    body: dict[str, Any],
    *,
    repeated: bool,
) -> Result:
    """Upsert one row on the job's external Id field."""
    if ext is None:
        return Result.failure("INVALID_FIELD", "no external id field")
    value = _ext_value(body, ext)
    if repeated:
        return Result.failure(
            "DUPLICATE_VALUE",
            f"Duplicate external id specified: {value}",
            [ext.name],
            created=False,
        )
    return tx.upsert(sobject, ext, value, body)


# --- Bulk API 1.0 -------------------------------------------------------------------


def create_v1_job(
    emulator: Emulator, body: dict[str, Any], version: str
) -> dict[str, Any]:
    """Create a Bulk 1.0 job (query, queryAll or DML).

    Raises:
        ApiError: unknown object or operation (as a Bulk 1.0 error).
    """
    sobject = schema.find_object(str(body.get("object", "")))
    operation = str(body.get("operation", ""))
    if sobject is None:
        raise _bulk_error(
            400, "InvalidJob", f"Unable to find object: {body.get('object')}"
        )
    if operation not in {*OPERATIONS, "query", "queryAll"}:
        raise _bulk_error(400, "InvalidJob", f"Invalid operation: {operation}")
    job_id = _job_id(emulator)
    now = now_text()
    job: dict[str, Any] = {
        "apexProcessingTime": 0,
        "apiActiveProcessingTime": 0,
        "apiVersion": float(version),
        "assignmentRuleId": None,
        "concurrencyMode": str(body.get("concurrencyMode") or "Parallel"),
        "contentType": str(body.get("contentType") or "CSV"),
        "createdById": INTEGRATION_USER_ID,
        "createdDate": now,
        "externalIdFieldName": body.get("externalIdFieldName"),
        "fastPathEnabled": False,
        "id": job_id,
        "numberBatchesCompleted": 0,
        "numberBatchesFailed": 0,
        "numberBatchesInProgress": 0,
        "numberBatchesQueued": 0,
        "numberBatchesTotal": 0,
        "numberRecordsFailed": 0,
        "numberRecordsProcessed": 0,
        "numberRetries": 0,
        "object": sobject.name,
        "operation": operation,
        "state": "Open",
        "systemModstamp": now,
        "totalProcessingTime": 0,
        "_batches": {},
    }
    emulator.store.save_job(job_id, V1, job)
    return public_v1(job)


def public_v1(job: dict[str, Any]) -> dict[str, Any]:
    """Job info without internal state."""
    return {k: v for k, v in job.items() if not k.startswith("_")}


def load_v1(emulator: Emulator, job_id: str) -> dict[str, Any]:
    """A stored Bulk 1.0 job.

    Raises:
        ApiError: InvalidJob (HTTP 400) for an unknown job.
    """
    job = emulator.store.load_job(job_id, V1)
    if job is None:
        raise _bulk_error(400, "InvalidJob", f"Invalid job id: {job_id}")
    return job


def add_batch(emulator: Emulator, job_id: str, data: bytes) -> dict[str, Any]:
    """Add a batch and process it at once (Completed on the first poll).

    Raises:
        ApiError: the job is closed or the batch body is unreadable.
    """
    job = load_v1(emulator, job_id)
    if job["state"] != "Open":
        raise _bulk_error(
            400, "InvalidJobState", f"Job is not open for new batches: {job['state']}"
        )
    emulator.store.next_value("bulk_batches")
    batch_id = schema.make_id("751", emulator.store.next_value("id:751"))
    now = now_text()
    batch: dict[str, Any] = {
        "id": batch_id,
        "jobId": job_id,
        "state": "Completed",
        "createdDate": now,
        "systemModstamp": now,
        "numberRecordsProcessed": 0,
        "numberRecordsFailed": 0,
        "totalProcessingTime": 0,
        "apiActiveProcessingTime": 0,
        "apexProcessingTime": 0,
        "_request": data.decode("utf-8-sig"),
        "_polls": 0,
    }
    slow = emulator.faults.take("slow_bulk")
    if slow:
        batch["_polls"] = int(slow.params.get("polls", 2))
    sobject = schema.OBJECTS[job["object"]]
    if job["operation"] in {"query", "queryAll"}:
        _run_v1_query(emulator, job, batch, sobject)
    else:
        _run_v1_dml(emulator, job, batch, sobject)
    job["_batches"][batch_id] = batch
    job["numberBatchesTotal"] += 1
    job["numberBatchesCompleted"] += batch["state"] == "Completed"
    job["numberBatchesFailed"] += batch["state"] == "Failed"
    job["numberRecordsProcessed"] += batch["numberRecordsProcessed"]
    job["numberRecordsFailed"] += batch["numberRecordsFailed"]
    emulator.store.save_job(job_id, V1, job)
    return batch_info(job, batch, poll=False)


def _run_v1_query(
    emulator: Emulator, job: dict[str, Any], batch: dict[str, Any], sobject: SObject
) -> None:
    try:
        query = soql.parse(batch["_request"])
    except ApiError as exc:
        batch.update(
            state="Failed",
            stateMessage=f"InvalidBatch : Failed to process "
            f"query: {exc.code}: {exc.message}",
        )
        return
    compound = [n for n in query.fields if sobject.field_map[n].type == "address"]
    if compound:
        batch.update(
            state="Failed",
            stateMessage="InvalidBatch : Failed to process "
            "query: FUNCTIONALITY_NOT_ENABLED: Selecting compound data not "
            "supported in Bulk Query",
        )
        return
    rows = emulator.store.rows(sobject.name)
    if job["operation"] == "query":
        rows = [r for r in rows if not r.get("IsDeleted")]
    found = soql.run(query, rows)
    result_id = schema.make_id("752", emulator.store.next_value("id:752"))
    if job["contentType"] == "JSON":
        payload = json.dumps(
            [
                {
                    "attributes": {
                        "type": sobject.name,
                        "url": f"/services/data/v"
                        f"{job['apiVersion']}/sobjects/{sobject.name}/{r['Id']}",
                    },
                    **render(sobject, r, query.fields),
                }
                for r in found
            ]
        )
    else:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(query.fields)
        writer.writerows([[csv_cell(r.get(n)) for n in query.fields] for r in found])
        payload = out.getvalue()
    batch["_results"] = {result_id: payload}
    batch["numberRecordsProcessed"] = len(found)


def _run_v1_dml(
    emulator: Emulator, job: dict[str, Any], batch: dict[str, Any], sobject: SObject
) -> None:
    if job["contentType"] != "JSON":
        batch.update(
            state="Failed",
            stateMessage="InvalidBatch : the emulator takes "
            "Bulk 1.0 DML batches as JSON only",
        )
        return
    try:
        rows = json.loads(batch["_request"] or "[]")
    except ValueError:
        rows = None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        batch.update(
            state="Failed",
            stateMessage="InvalidBatch : expected a JSON array of records",
        )
        return
    outcomes = run_dml(
        emulator,
        sobject,
        job["operation"],
        job["externalIdFieldName"],
        rows,
        csv_cells=False,
    )
    batch["_dml"] = [
        {
            "success": r.success,
            "created": bool(r.created),
            "id": r.id if r.success else None,
            "errors": r.errors,
        }
        for r in outcomes
    ]
    batch["numberRecordsProcessed"] = len(rows)
    batch["numberRecordsFailed"] = sum(not r.success for r in outcomes)


def batch_info(
    job: dict[str, Any], batch: dict[str, Any], *, poll: bool = True
) -> dict[str, Any]:
    """Batch info; `slow_bulk` shows InProgress for its polls."""
    info = {k: v for k, v in batch.items() if not k.startswith("_")}
    if not poll:
        # The add-batch answer is always Queued with nothing processed yet (Bulk
        # API guide, "Add a Batch to a Job" example; fixture
        # real_api_salesforce/bulk1_docs.json); the first poll shows the outcome.
        info.update(state="Queued", numberRecordsProcessed=0, numberRecordsFailed=0)
        info.pop("stateMessage", None)
    elif batch["_polls"] > 0:
        batch["_polls"] -= 1
        info["state"] = "InProgress"
    info.setdefault("stateMessage", None)
    del job
    return info


def xml_batch_info(info: dict[str, Any], *, root: bool = True) -> str:
    """A batchInfo element as the XML API serves it."""
    order = (
        "id",
        "jobId",
        "state",
        "stateMessage",
        "createdDate",
        "systemModstamp",
        "numberRecordsProcessed",
        "numberRecordsFailed",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    )
    parts = "".join(
        f"<{key}>{escape(str(info[key]))}</{key}>"
        for key in order
        if info.get(key) is not None
    )
    xmlns = f' xmlns="{XML_NS}"' if root else ""
    head = '<?xml version="1.0" encoding="UTF-8"?>' if root else ""
    return f"{head}<batchInfo{xmlns}>{parts}</batchInfo>"


def _xml_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def xml_job_info(info: dict[str, Any]) -> str:
    """A jobInfo document."""
    parts = "".join(
        f"<{key}>{escape(_xml_text(value))}</{key}>"
        for key, value in info.items()
        if value is not None
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="{XML_NS}">'
        f"{parts}</jobInfo>"
    )
