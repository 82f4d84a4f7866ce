"""The loader: turns batch windows into uploads and settles every record durably.

One Loader per target run, shared by all sinks. It owns the client, the state store
(event ledger + identity map), the rejects and dry-run files, and the counters.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from target_clevertap import ages, batches, caps, screen
from target_clevertap.client import (
    JSON_ENCODER,
    CleverTapClient,
    CleverTapError,
    UploadResult,
)
from target_clevertap.event_uploads import EventUploads
from target_clevertap.exprlang import tracked_value
from target_clevertap.identity_join import IdentityJoiner
from target_clevertap.ledger import (
    StateStore,
    create_private_file,
    new_store_warning,
)
from target_clevertap.payloads import (
    PayloadOptions,
    RecordContext,
    RecordReject,
    UnresolvedReference,
    UploadItem,
    account_zone,
    build_deleted_event,
    build_uploads,
    epoch_seconds,
    number,
    record_persons,
    resolve_identities,
    scalar_text,
)
from target_clevertap.reconcile import Reconciler
from target_clevertap.replies import Rejection

if TYPE_CHECKING:
    import logging
    from collections.abc import Iterable, Mapping, Sequence

    from target_clevertap.mapping import StreamMapping
    from target_clevertap.payloads import SchemaInfo
    from target_clevertap.refs import ComputedReferences

PROGRESS_EVERY_S = 30.0
PROGRESS_CHECK_EVERY = 256  # records between clock reads
DELETE_CHUNK = 100
#: objects whose identity-map entries are always kept in memory
_PERSON_OBJECTS = frozenset({"Contact", "Lead"})


@dataclass
class Entry:
    """One input record waiting in a batch window."""

    stream: str
    key: str
    record: dict[str, Any]
    mapping: StreamMapping
    schema: SchemaInfo
    accounted: bool = False  # counted as rejected or skipped
    #: change tracking: values remembered when the record was last seen (None on
    #: its first sighting or for a stale replay), and what to remember now
    previous: dict[str, Any] | None = None
    track: Tracked | None = None
    #: identities that depend on the record alone, by spec (computed once)
    identities: dict[int, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Tracked:
    """A record version's tracked values, to remember once the record settles."""

    key: str  # the record key, or `<track_key>=<value>`
    version: int | None
    values: dict[str, Any]
    seq: int


@dataclass
class StreamStats:
    """Per-stream counters for the summary."""

    received: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    profiles_sent: int = 0
    events_sent: int = 0
    rejected_by_code: Counter[str] = field(default_factory=Counter)
    duplicates_suppressed: int = 0
    profiles_deleted: int = 0
    events_by_age: Counter[str] = field(default_factory=Counter)
    old_events_skipped: int = 0
    identity_lookups: int = 0
    joined_existing_profiles: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON view.

        Returns:
            The counters.
        """
        return {
            "received": self.received,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "skipped": dict(self.skipped),
            "profiles_sent": self.profiles_sent,
            "events_sent": self.events_sent,
            "rejected_by_code": dict(self.rejected_by_code),
            "duplicates_suppressed": self.duplicates_suppressed,
            "profiles_deleted": self.profiles_deleted,
            "events_by_age": dict(self.events_by_age),
            "old_events_skipped": self.old_events_skipped,
            "identity_lookups": self.identity_lookups,
            "joined_existing_profiles": self.joined_existing_profiles,
        }


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return number(value) if value.is_finite() else str(value)
    return scalar_text(value)


class Loader:
    """Uploads windows of records and accounts for every one of them."""

    def __init__(
        self,
        config: Mapping[str, Any],
        logger: logging.Logger,
        referenced: Iterable[str] | None = None,
    ) -> None:
        """Set up from the target config.

        Args:
            config: the target config.
            logger: the target logger.
            referenced: objects some mapping references (`{ref: ...}`); their
                identity-map entries stay in memory, others' only on disk.
                None keeps every entry in memory.
        """
        self.config = config
        self.referenced = None if referenced is None else frozenset(referenced)
        self._tracked_mem: dict[tuple[str, str], Tracked] = {}
        self._track_seq = 0
        self.logger = logger
        self.dry_run = bool(config.get("dry_run"))
        #: batches go to CleverTap with dryRun=1: validated there, nothing stored
        self.dry_run_remote = bool(config.get("dry_run_remote")) and not self.dry_run
        self.max_request_bytes = int(config.get("max_request_bytes") or 1_048_576)
        old_days = config.get("skip_events_older_than_days")
        self.max_event_age_days = None if old_days is None else float(old_days)
        self.batch_size = int(config.get("batch_size") or 1000)
        self.max_concurrency = int(config.get("max_concurrency") or 8)
        self.deleted_records = str(config.get("deleted_records") or "ignore")
        self.on_reject = str(config.get("on_reject") or "continue")
        self.options = PayloadOptions(
            null_values=config.get("null_values") or "skip",
            oversize=config.get("oversize_values") or "truncate",
            default_phone_country=config.get("default_phone_country"),
            event_key_property=config.get("event_key_property") or "ct_event_key",
            max_event_properties=int(config.get("max_event_properties") or 100),
            zone=account_zone(config.get("timezone")),
            map_config=config.get("stream_map_config") or {},
        )
        self.stats: dict[str, StreamStats] = {}
        self._lock = threading.RLock()
        self._rejects: IO[str] | None = None
        self._dry: IO[str] | None = None
        self._warned: set[str] = set()
        self._started = time.monotonic()
        self._last_progress = self._started
        self._received_total = 0
        self.in_doubt_total = 0
        self._client: CleverTapClient | None = None
        self._store: StateStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reconciled = False
        self._caps: caps.AccountCaps | None = None
        self.events = EventUploads(self)
        self._backfill_checked = False  # the once-only old-events warning
        self._reconciler: Reconciler | None = None
        #: identities computed from an Id (refs.py), for references the map has
        #: never seen, in the end-of-input pass only; set by the target
        self.computed_refs: ComputedReferences | None = None
        self._final_pass = False
        self.joins = IdentityJoiner(self, str(config.get("identity_lookup") or "none"))

    # ------------------------------------------------------------ resources

    @property
    def store(self) -> StateStore:
        """The state store (opened on first use)."""
        if self._store is None:
            with self._lock:  # upload threads may be the first users
                if self._store is None:
                    store = StateStore(
                        self.config.get("state_dir") or ".target-clevertap",
                        str(self.config.get("account_id") or "account"),
                        dry_run=self.dry_run or self.dry_run_remote,
                        url=self.config.get("state_url") or None,
                        namespace=self.config.get("state_namespace") or None,
                    )
                    if store.created:
                        self.logger.warning("%s", new_store_warning(store))
                    self._store = store
        return self._store

    @property
    def account_caps(self) -> caps.AccountCaps:
        """The account-wide caps tracker (its table lives in the state store)."""
        if self._caps is None:
            store = self.store
            with self._lock:
                if self._caps is None:
                    self._caps = caps.AccountCaps(
                        store.backend,
                        store.lock,
                        self.logger,
                        others={
                            caps.PROFILE_KEYS: int(
                                self.config.get("account_custom_profile_keys") or 0
                            ),
                            caps.EVENT_NAMES: int(
                                self.config.get("account_event_names") or 0
                            ),
                        },
                        persist=not (self.dry_run or self.dry_run_remote),
                    )
        return self._caps

    @property
    def reconciler(self) -> Reconciler:
        """Looks in-doubt events up in Get Events, allowing for ingestion lag."""
        if self._reconciler is None:
            lag = self.config.get("reconcile_lag_seconds")
            self._reconciler = Reconciler(
                self.client.iter_events,
                key_property=self.options.event_key_property,
                lag_seconds=120.0 if lag is None else float(lag),
                checks=int(self.config.get("reconcile_checks") or 5),
                zone=account_zone(self.config.get("timezone")),
            )
        return self._reconciler

    @property
    def client(self) -> CleverTapClient:
        """The API client (created once, on first use, by whichever thread)."""
        if self._client is None:
            with self._lock:  # upload threads may be the first users
                if self._client is None:
                    self._client = self._new_client()
        return self._client

    def _new_client(self) -> CleverTapClient:
        return CleverTapClient(
            account_id=str(self.config["account_id"]),
            passcode=str(self.config["passcode"]),
            region=str(self.config.get("region") or "eu1"),
            api_url=self.config.get("api_url"),
            timeout=float(self.config.get("request_timeout") or 60),
            max_concurrency=self.max_concurrency,
            max_tries=int(self.config.get("max_retries") or 8),
            read_rate=float(self.config.get("identity_lookup_rate") or 10),
        )

    @property
    def pool(self) -> ThreadPoolExecutor:
        """Threads for concurrent upload requests."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=self.max_concurrency,
                        thread_name_prefix="clevertap",
                    )
        return self._pool

    def close(self) -> None:
        """Release files, threads, connections and the database."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()
        if self._store is not None:
            self._store.close()
        for handle in (self._rejects, self._dry):
            if handle is not None:
                handle.close()

    def _open_private(self, path_setting: str, default: str) -> IO[str]:
        path = Path(str(self.config.get(path_setting) or default)).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private_file(path)
        return path.open("a", encoding="utf-8")

    def stream_stats(self, stream: str) -> StreamStats:
        """Counters of a stream.

        Args:
            stream: the stream.

        Returns:
            Its counters.
        """
        stats = self.stats.get(stream)
        if stats is not None:
            return stats
        with self._lock:
            return self.stats.setdefault(stream, StreamStats())

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        """Log a warning once per key.

        Args:
            key: dedup key.
            message: the message.
            *args: message args.
        """
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        self.logger.warning(message, *args)

    # -------------------------------------------------------- record intake

    def received(self, stream: str) -> None:
        """Count one received record and log progress at most every 30 s.

        Args:
            stream: the stream.
        """
        self.stream_stats(stream).received += 1
        self._received_total += 1
        if self._received_total % PROGRESS_CHECK_EVERY == 0:
            now = time.monotonic()
            if now - self._last_progress >= PROGRESS_EVERY_S:
                self._last_progress = now
                self.log_progress(now)

    def log_progress(self, now: float | None = None) -> None:
        """Log records received/accepted/rejected and the rate.

        Args:
            now: monotonic time.
        """
        now = now or time.monotonic()
        totals = self.totals()
        rate = totals["received"] / max(now - self._started, 1e-6)
        self.logger.info(
            "Progress: %d received, %d accepted, %d rejected, %d skipped (%.0f rec/s)",
            totals["received"],
            totals["accepted"],
            totals["rejected"],
            totals["skipped"],
            rate,
        )

    def totals(self) -> dict[str, int]:
        """Totals over all streams.

        Returns:
            received/accepted/rejected/skipped.
        """
        with self._lock:
            stats = list(self.stats.values())
        return {
            "received": sum(s.received for s in stats),
            "accepted": sum(s.accepted for s in stats),
            "rejected": sum(s.rejected for s in stats),
            "skipped": sum(sum(s.skipped.values()) for s in stats),
        }

    def skip(self, stream: str, reason: str) -> None:
        """Account a record as skipped.

        Args:
            stream: the stream.
            reason: why.
        """
        self.stream_stats(stream).skipped[reason] += 1

    def reject(  # noqa: PLR0913 - keyword-only reject fields
        self,
        stream: str,
        key: str | None,
        *,
        code: str,
        message: str,
        field_name: str | None,
        record: Mapping[str, Any] | None,
        count_record: bool = True,
    ) -> None:
        """Write a reject line (mode 0600 file) and count it.

        Args:
            stream: the stream.
            key: the record key.
            code: the reason code.
            message: the reason.
            field_name: the field at fault.
            record: the input record.
            count_record: count the input record as rejected (once per record).

        Raises:
            CleverTapError: when on_reject is `fail`.
        """
        stats = self.stream_stats(stream)
        line = json.dumps(
            {
                "stream": stream,
                "key": key,
                "code": code,
                "message": message,
                "field": field_name,
                "record": record,
            },
            default=_json_default,
            ensure_ascii=False,
        )
        with self._lock:
            if self._rejects is None:
                self._rejects = self._open_private(
                    "rejects_path", "target-clevertap-rejects.jsonl"
                )
            self._rejects.write(line + "\n")
            self._rejects.flush()
            stats.rejected_by_code[code] += 1
            if count_record:
                stats.rejected += 1
        self.warn_once(
            f"reject:{stream}:{code}",
            "Stream %s: record %s rejected (%s: %s); further %s rejects are only "
            "written to the rejects file",
            stream,
            key,
            code,
            message,
            code,
        )
        if self.on_reject == "fail":
            msg = f"stream {stream}: record {key} rejected ({code}: {message})"
            raise CleverTapError(msg)

    def register_identity(self, entry: Entry) -> None:
        """Remember a record's people at read time (Contact/Lead Ids, links).

        Args:
            entry: the record.
        """
        record, mapping = entry.record, entry.mapping
        rec_id = record.get("Id")
        if rec_id is None:
            return
        rec_id = str(rec_id)
        if mapping.profile is not None:
            try:
                idents = resolve_identities(
                    record,
                    mapping.profile.identity,
                    self.store.resolve,
                    entry.identities,
                )
            except RecordReject:
                idents = []
            if idents:
                self.joins.note(entry, rec_id)  # before the map has seen it
                self.store.remember(entry.stream, rec_id, idents)
        if entry.stream == "Contact" and record.get("AccountId"):
            self.store.remember_account(rec_id, str(record["AccountId"]))
        conv = mapping.conversion_field
        if conv and record.get(conv):
            self.store.link(entry.stream, rec_id, "Contact", str(record[conv]))

    @staticmethod
    def _record_id(entry: Entry) -> str | None:
        """The Id other records reference this one by (`Id`, else its key)."""
        rec_id = entry.record.get("Id")
        if rec_id is not None:
            return scalar_text(rec_id)
        return None if entry.key.startswith("sha:") else entry.key

    def register_persons(
        self, entry: Entry, refs: dict[int, list[str]] | None = None
    ) -> None:
        """Remember who a settled record is about, for `{ref: <Stream>Id}`.

        Every mapped stream's records are registered (an empty list means "seen,
        names nobody"), across runs, so references to them can resolve.

        Args:
            entry: the record.
            refs: references found while building it (the identity map has
                not changed since).
        """
        rec_id = self._record_id(entry)
        if rec_id is None:
            return
        persons = record_persons(
            entry.record, entry.mapping, self.store.resolve, entry.identities, refs
        )
        cache = (
            self.referenced is None
            or entry.stream in self.referenced
            or entry.stream in _PERSON_OBJECTS
        )
        if cache and self.store.pending(entry.stream, rec_id) == persons:
            return  # remembered when the record was read (a Contact, a Lead)
        self.store.remember(entry.stream, rec_id, persons, cache=cache)

    def track(self, entry: Entry) -> None:
        """Change tracking at read time: note the previous values of a record.

        Reads what was remembered for (stream, record key), in this run or an
        earlier one, and notes the record's own values for the next version. A
        record older than the remembered version (a replay of old input) sees
        no previous values (so `changed()` is false) and changes nothing.

        Args:
            entry: the record.
        """
        fields = entry.mapping.tracked_fields
        if not fields:
            return
        key = entry.key
        if entry.mapping.track_key:
            value = entry.record.get(entry.mapping.track_key)
            if value is None or not str(value).strip():
                return
            key = f"{entry.mapping.track_key}={scalar_text(value).strip()}"
        if key.startswith("sha:"):
            self.warn_once(
                f"track:{entry.stream}",
                "Stream %s: change tracking needs key properties (or track_key); "
                "records without them never count as changed",
                entry.stream,
            )
            return
        slot = (entry.stream, key)
        prior: tuple[int | None, dict[str, Any]] | None
        with self._lock:
            mem = self._tracked_mem.get(slot)
            prior = (mem.version, mem.values) if mem else None
        if prior is None:
            prior = self.store.tracked(entry.stream, key)
        version = self._version(entry)
        if prior is not None:
            old_version, old_values = prior
            if (
                version is not None
                and old_version is not None
                and version < old_version
            ):
                return  # stale: an older version than the one remembered
            entry.previous = old_values
        current = {
            name: tracked_value(entry.record[name])
            for name in sorted(fields)
            if name in entry.record
        }
        merged = {**(prior[1] if prior else {}), **current}
        if version is None and prior is not None:
            version = prior[0]
        with self._lock:
            self._track_seq += 1
            tracked = Tracked(key, version, merged, self._track_seq)
            self._tracked_mem[slot] = tracked
        entry.track = tracked

    @staticmethod
    def _version(entry: Entry) -> int | None:
        for name in entry.mapping.version_fields():
            value = entry.record.get(name)
            if value is not None:
                return epoch_seconds(value)
        return None

    def _save_tracked(self, entries: Sequence[Entry], waiting: set[int]) -> None:
        """Remember tracked values of the settled records (latest versions only).

        What is saved leaves memory (the store answers for it from then on), so
        only the tracked values of unsettled records stay in memory.
        """
        rows: list[tuple[str, str, int | None, Mapping[str, Any]]] = []
        # a slot with a record still waiting keeps its older memory: a crash now
        # must not make the waiting record look stale on the replay
        held = {
            (e.stream, e.track.key)
            for e in entries
            if e.track is not None and id(e) in waiting
        }
        with self._lock:
            for entry in entries:
                tracked = entry.track
                if tracked is None or (entry.stream, tracked.key) in held:
                    continue
                latest = self._tracked_mem.get((entry.stream, tracked.key))
                if latest is not None and latest.seq == tracked.seq:
                    rows.append(
                        (entry.stream, tracked.key, tracked.version, tracked.values)
                    )
            if rows:
                self.store.save_tracked(rows)
            for stream, key, _version, _values in rows:
                self._tracked_mem.pop((stream, key), None)

    # -------------------------------------------------------------- windows

    def _resolver(self, obj: str, record_id: str) -> list[str]:
        found = self.store.lookup(obj, record_id)
        if found is None and self._final_pass and self.computed_refs is not None:
            found = self.computed_refs.identities(obj, record_id)
        if not found:
            raise UnresolvedReference(obj, obj, record_id, seen=found is not None)
        return found

    def _build(
        self, entries: Sequence[Entry], *, final: bool
    ) -> tuple[list[tuple[int, UploadItem]], list[tuple[int, str]], list[Entry]]:
        items: list[tuple[int, UploadItem]] = []
        deletes: list[tuple[int, str]] = []
        deferred: list[Entry] = []
        now = int(time.time())
        self._final_pass = final
        for idx, entry in enumerate(entries):
            refs: dict[int, list[str]] = {}  # the identity map is fixed till registered
            try:
                if entry.record.get("IsDeleted") is True:
                    self._deleted(idx, entry, items, deletes, now)
                    continue
                ctx = RecordContext(
                    entry.stream,
                    entry.key,
                    entry.mapping,
                    entry.schema,
                    self.options,
                    self._resolver,
                    now,
                    entry.previous,
                    entry.identities,
                    refs,
                )
                result = build_uploads(entry.record, ctx)
            except UnresolvedReference as exc:
                if not final:
                    deferred.append(entry)
                else:
                    self.register_persons(entry, refs)
                    self._unresolved(entry, exc)
                continue
            except RecordReject as exc:
                entry.accounted = True
                self.register_persons(entry, refs)
                self.reject(
                    entry.stream,
                    entry.key,
                    code=exc.code,
                    message=exc.message,
                    field_name=exc.field,
                    record=entry.record,
                )
                continue
            for warning in result.warnings:
                self.warn_once(
                    f"warn:{entry.stream}:{warning}",
                    "Stream %s: %s",
                    entry.stream,
                    warning,
                )
            self.register_persons(entry, refs)
            if result.skipped:
                self.skip(entry.stream, result.skipped)
                entry.accounted = True  # accounted: not counted as accepted
                continue
            items.extend((idx, item) for item in result.items)
        return items, deletes, deferred

    def _unresolved(self, entry: Entry, exc: UnresolvedReference) -> None:
        entry.accounted = True
        if exc.obj == "Account":  # nobody known at this account: no one to update
            self.skip(entry.stream, "account_without_contacts")
            return
        if exc.seen:
            self.skip(entry.stream, "no_person")
            self.warn_once(
                f"no_person:{entry.stream}:{exc.obj}",
                "Stream %s: record %s skipped (no_person): the %s %s it references "
                "was seen but names nobody (e.g. a deal whose account has no "
                "contacts, or a record that was itself skipped or rejected); "
                "further ones are counted in the summary",
                entry.stream,
                entry.key,
                exc.obj,
                exc.value,
            )
            return
        who = "Contact or Lead" if exc.obj == "Who" else exc.obj
        self.reject(
            entry.stream,
            entry.key,
            code="unresolved_reference",
            message=f"{exc.obj} {exc.value} was never seen (no {who} record with "
            "that Id was loaded, in this run or an earlier one)",
            field_name=None,
            record=entry.record,
        )

    def register_unresolved(self, entries: Sequence[Entry]) -> None:
        """Register records that still wait for a person at the end of the input.

        Before the final pass, so that a record referencing one of them is told
        apart (seen, names nobody: `no_person`) from a reference to a record
        that never came (`unresolved_reference`).

        Args:
            entries: the records still deferred.
        """
        for entry in entries:
            self.register_persons(entry)

    def _deleted(
        self,
        idx: int,
        entry: Entry,
        items: list[tuple[int, UploadItem]],
        deletes: list[tuple[int, str]],
        now: int,
    ) -> None:
        mode = self.deleted_records
        mapping = entry.mapping
        spec = (
            mapping.profile.identity
            if mapping.profile
            else (mapping.events[0].identity if mapping.events else None)
        )
        if mode == "ignore" or spec is None:
            self.skip(entry.stream, "deleted")
            entry.accounted = True
            return
        if mode == "delete_profile" and (
            mapping.profile is None or spec.key != "identity"
        ):
            self.skip(entry.stream, "deleted_not_a_profile")
            entry.accounted = True
            return
        identities = resolve_identities(entry.record, spec, self._resolver)
        if not identities:
            msg = f"deleted record has no identity ({spec.fields[0]} is empty)"
            raise RecordReject(msg, code="missing_identity", field_name=spec.fields[0])
        if mode == "delete_profile":
            deletes.extend((idx, ident) for ident in identities)
            return
        for ident in identities:
            item = build_deleted_event(
                entry.record,
                stream=entry.stream,
                key=entry.key,
                identity=ident,
                id_key=spec.key,
                opts=self.options,
                now=now,
            )
            items.append((idx, item))

    def process_window(self, entries: Sequence[Entry], *, final: bool) -> list[Entry]:
        """Upload one window and settle every record in it.

        Profiles go first, then events (oldest first); events already accepted
        (ledger) are suppressed; ambiguous event sends are reconciled.

        Args:
            entries: the records.
            final: this is the end-of-input drain (no more deferral).

        Returns:
            Records deferred until their referenced person is known.

        Raises:
            CleverTapError: on a fatal failure (the run must stop, no STATE).
        """
        if not self._reconciled and not (self.dry_run or self.dry_run_remote):
            self.reconcile_previous_run()
        self.joins.prepare(entries)
        items, deletes, deferred = self._build(entries, final=final)
        items = self._screen(entries, self.joins.apply(entries, items))
        profiles = [(i, it) for i, it in items if it.kind == "profile"]
        events = sorted(
            ((i, it) for i, it in items if it.kind == "event"),
            key=lambda pair: pair[1].ts or 0,
        )
        if self.dry_run:
            self._write_dry_run([it for _, it in profiles] + [it for _, it in events])
            for idx, item in items:
                self.count_sent(entries, idx, item)
        elif self.dry_run_remote:
            self.upload_upserts(entries, profiles)
            self.events.check_remotely(entries, events)
            if deletes:
                self.warn_once(
                    "dry_run_remote:deletes",
                    "dry_run_remote: %d profile deletes were not sent",
                    len(deletes),
                )
        else:
            self.upload_upserts(entries, profiles)
            self._delete_profiles(entries, deletes)
            self.events.upload(entries, events)
        # per window (a dry run too), so the pending changes stay within a window
        self.store.flush_identities()
        waiting = {id(e) for e in deferred}
        # only now: a crash before this replays the records with the same previous
        # values, so their change events get the same keys (a dry run keeps them
        # in a temporary table of this run only)
        self._save_tracked(entries, waiting)
        for entry in entries:
            if id(entry) not in waiting and not entry.accounted:
                self.stream_stats(entry.stream).accepted += 1
        return deferred

    def _screen(
        self, entries: Sequence[Entry], items: list[tuple[int, UploadItem]]
    ) -> list[tuple[int, UploadItem]]:
        """Drop events past the age limit, refuse keys/names past the caps."""
        out = screen.screen(
            items,
            self.account_caps,
            now=int(time.time()),
            max_age_days=self.max_event_age_days,
        )
        for idx, refusal in out.refused.items():
            entry = entries[idx]
            first = not entry.accounted
            entry.accounted = True
            self.reject(
                entry.stream,
                entry.key,
                code=refusal.code,
                message=refusal.message,
                field_name=refusal.name,
                record=entry.record,
                count_record=first,
            )
        kept = {idx for idx, _ in out.kept}
        for idx, count in out.too_old.items():
            entry = entries[idx]
            self.stream_stats(entry.stream).old_events_skipped += count
            if idx not in kept and idx not in out.refused and not entry.accounted:
                entry.accounted = True
                self.skip(entry.stream, "event_too_old")
        old = 0
        for idx, bucket in out.buckets:
            self.stream_stats(entries[idx].stream).events_by_age[bucket] += 1
            old += bucket != ages.LIVE
        if old and not self._backfill_checked:
            self._backfill_checked = True
            self._warn_backfill()
        return out.kept

    def _warn_backfill(self) -> None:
        """Warn once (the first run that sends them) about events over 2 h old."""
        if self.store.meta("backfill_warned") is not None:
            return
        self.store.set_meta("backfill_warned", "1")
        self.logger.warning(
            "Historical events: some events are over 2 hours old (they trigger "
            "no live campaigns) and those over 365 days do not show in "
            "CleverTap's dashboard; see events_by_age in the run summary and "
            "the README's backfill section (warned once)"
        )

    def count_sent(self, entries: Sequence[Entry], idx: int, item: UploadItem) -> None:
        """Count a sent profile or event for its stream."""
        stats = self.stream_stats(entries[idx].stream)
        if item.kind == "profile":
            stats.profiles_sent += 1
        else:
            stats.events_sent += 1

    def _write_dry_run(self, items: Sequence[UploadItem]) -> None:
        with self._lock:
            if self._dry is None:
                self._dry = self._open_private(
                    "dry_run_path", "target-clevertap-dry-run.jsonl"
                )
            lines = JSON_ENCODER.encode_lines([item.payload for item in items])
            self._dry.write(lines.decode("utf-8"))
            self._dry.flush()

    def chunks(
        self, pairs: Sequence[tuple[int, UploadItem]]
    ) -> list[list[tuple[int, UploadItem]]]:
        """Upload batches: `batch_size` records, `max_request_bytes` at most."""
        out: list[list[tuple[int, UploadItem]]] = []
        for i in range(0, len(pairs), self.batch_size):
            chunk = list(pairs[i : i + self.batch_size])
            body = JSON_ENCODER.encode({"d": [it.payload for _, it in chunk]})
            if len(body) <= self.max_request_bytes:
                out.append(chunk)
                continue
            out.extend(
                batches.split(
                    chunk,
                    self.batch_size,
                    self.max_request_bytes,
                    lambda pair: len(JSON_ENCODER.encode(pair[1].payload)),
                )
            )
        return out

    def apply_rejections(
        self,
        entries: Sequence[Entry],
        chunk: Sequence[tuple[int, UploadItem]],
        result: UploadResult,
    ) -> set[int]:
        """Write the rejects of one answered batch; their positions in it."""
        rejected_positions: set[int] = set()
        for rej in result.rejections:
            idx, _item = chunk[rej.position]
            entry = entries[idx]
            rejected_positions.add(rej.position)
            first = not entry.accounted
            entry.accounted = True
            self.reject(
                entry.stream,
                entry.key,
                code=rej.code,
                message=rej.message,
                field_name=None,
                record=entry.record,
                count_record=first,
            )
        return rejected_positions

    def _send_profiles(self, chunk: Sequence[tuple[int, UploadItem]]) -> UploadResult:
        return self.client.upload(
            [it.payload for _, it in chunk],
            idempotent=True,
            dry_run=self.dry_run_remote,
        )

    def upload_upserts(
        self, entries: Sequence[Entry], profiles: Sequence[tuple[int, UploadItem]]
    ) -> None:
        """Upload what may be resent (profiles; events in a remote dry run)."""
        chunks = self.chunks(profiles)
        results = list(self.pool.map(self._send_profiles, chunks))
        unclear: list[tuple[int, UploadItem]] = []
        for chunk, result in zip(chunks, results, strict=True):
            rejected = self.apply_rejections(entries, chunk, result)
            if result.unmatched:  # who failed is unknown: resend them one by one
                self.logger.warning(
                    "%d unprocessed entries of a profile upload named no record; "
                    "sending the %d unnamed profiles again one by one",
                    len(result.unmatched),
                    len(chunk) - len(rejected),
                )
                unclear.extend(p for n, p in enumerate(chunk) if n not in rejected)
                for n in rejected:
                    self.count_sent(entries, *chunk[n])
                continue
            for idx, item in chunk:
                self.count_sent(entries, idx, item)
        if not unclear:
            return
        singles = [[pair] for pair in unclear]
        for single, result in zip(
            singles, self.pool.map(self._send_profiles, singles), strict=True
        ):
            idx, item = single[0]
            if result.unmatched and not result.rejections:
                miss = result.unmatched[0]
                result.rejections.append(Rejection(0, miss.code, miss.message))
            self.apply_rejections(entries, single, result)
            self.count_sent(entries, idx, item)

    def _delete_profiles(
        self, entries: Sequence[Entry], deletes: list[tuple[int, str]]
    ) -> None:
        """Delete profiles; only a `"status":"success"` body counts as done."""
        if not deletes:
            return
        unique = list(dict.fromkeys(ident for _, ident in deletes))
        for i in range(0, len(unique), DELETE_CHUNK):
            chunk = unique[i : i + DELETE_CHUNK]
            problem = self.client.delete_profiles(chunk)
            if problem is None:
                self.stream_stats(entries[0].stream).profiles_deleted += len(chunk)
                continue
            wanted = set(chunk)
            for idx in dict.fromkeys(n for n, ident in deletes if ident in wanted):
                entry = entries[idx]
                first = not entry.accounted
                entry.accounted = True
                self.reject(
                    entry.stream,
                    entry.key,
                    code="delete_not_confirmed",
                    message=problem,
                    field_name=None,
                    record=entry.record,
                    count_record=first,
                )

    def reconcile_previous_run(self) -> None:
        """Settle events a previous run left pending or in doubt.

        Raises:
            CleverTapError: when they cannot be checked (nothing is sent then).
        """
        self._reconciled = True
        try:
            self.events.settle_previous_run()
        except CleverTapError:
            self._reconciled = False
            raise

    # -------------------------------------------------------------- summary

    def log_summary(self) -> None:
        """Log one summary line per stream and the totals."""
        with self._lock:
            items = sorted(self.stats.items())
        for stream, stats in items:
            self.logger.info(
                "Summary for stream %s: %s",
                stream,
                json.dumps(stats.as_dict(), sort_keys=True),
            )
        self.log_progress()
        if self._store is not None and self._store.created:
            self.logger.warning("Summary: %s", new_store_warning(self._store))
        self.write_summary_file(items)

    def write_summary_file(self, items: Sequence[tuple[str, StreamStats]]) -> None:
        """Write the run summary to `summary_path` (mode 0600), if set."""
        path = self.config.get("summary_path")
        if not path:
            return
        store = self._store
        data = {
            "dry_run": self.dry_run,
            "rejects_path": str(self.config.get("rejects_path") or ""),
            "state_store": None if store is None else store.name,
            "state_store_new": store is not None and store.created,
            "streams": {stream: stats.as_dict() for stream, stats in items},
            "totals": self.totals(),
        }
        target = Path(str(path)).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        create_private_file(target)
        target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
