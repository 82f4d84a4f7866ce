"""RunContext: one target run's settings and shared resources.

Settings are read once from the validated config (the SDK fills the defaults
declared in the config schema). The resources (API client, state store, caps
tracker, reconciler, upload threads) are opened on first use, by whichever
thread gets there first, and released by `close`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from target_clevertap import caps
from target_clevertap.client import CleverTapClient
from target_clevertap.ledger import StateStore, create_private_file, new_store_warning
from target_clevertap.payloads import PayloadOptions, account_zone
from target_clevertap.reconcile import Reconciler

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping


class RunContext:
    """The config, the settings read from it, and the run's client and store."""

    def __init__(self, config: Mapping[str, Any], logger: logging.Logger) -> None:
        """Read the settings.

        Args:
            config: the target config (defaults filled in by the SDK).
            logger: the target logger.
        """
        self.config = config
        self.logger = logger
        self.dry_run = bool(config.get("dry_run"))
        #: batches go to CleverTap with dryRun=1: validated there, nothing stored
        self.dry_run_remote = bool(config.get("dry_run_remote")) and not self.dry_run
        self.max_request_bytes = int(config["max_request_bytes"])
        old_days = config.get("skip_events_older_than_days")
        self.max_event_age_days = None if old_days is None else float(old_days)
        self.batch_size = int(config["batch_size"])
        self.max_concurrency = int(config["max_concurrency"])
        self.deleted_records = str(config["deleted_records"])
        self.on_reject = str(config["on_reject"])
        self.options = PayloadOptions(
            null_values=config["null_values"],
            oversize=config["oversize_values"],
            default_phone_country=config.get("default_phone_country"),
            event_key_property=config["event_key_property"],
            max_event_properties=int(config["max_event_properties"]),
            zone=account_zone(config.get("timezone")),
            map_config=config.get("stream_map_config") or {},
        )
        self.lock = threading.RLock()
        self._client: CleverTapClient | None = None
        self._store: StateStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._caps: caps.AccountCaps | None = None
        self._reconciler: Reconciler | None = None
        #: set when the run is asked to stop (the target links its reader's
        #: first-signal event here): reconciliation then stops waiting
        self.stop_asked = threading.Event()

    @property
    def any_dry_run(self) -> bool:
        """A local or a remote dry run: nothing is stored anywhere."""
        return self.dry_run or self.dry_run_remote

    @property
    def store(self) -> StateStore:
        """The state store (opened on first use)."""
        if self._store is None:
            with self.lock:  # upload threads may be the first users
                if self._store is None:
                    store = StateStore(
                        self.config["state_dir"],
                        str(self.config.get("account_id") or "account"),
                        dry_run=self.any_dry_run,
                        url=self.config.get("state_url") or None,
                        namespace=self.config.get("state_namespace") or None,
                    )
                    if store.created:
                        self.logger.warning("%s", new_store_warning(store))
                    self._store = store
        return self._store

    @property
    def opened_store(self) -> StateStore | None:
        """The state store if the run opened it, else None."""
        return self._store

    @property
    def account_caps(self) -> caps.AccountCaps:
        """The account-wide caps tracker (its table lives in the state store)."""
        if self._caps is None:
            store = self.store
            with self.lock:
                if self._caps is None:
                    self._caps = caps.AccountCaps(
                        store.backend,
                        store.lock,
                        self.logger,
                        others={
                            caps.PROFILE_KEYS: int(
                                self.config["account_custom_profile_keys"]
                            ),
                            caps.EVENT_NAMES: int(self.config["account_event_names"]),
                        },
                        persist=not self.any_dry_run,
                    )
        return self._caps

    @property
    def reconciler(self) -> Reconciler:
        """Looks in-doubt events up in Get Events, allowing for ingestion lag."""
        if self._reconciler is None:
            self._reconciler = Reconciler(
                self.client.iter_events,
                key_property=self.options.event_key_property,
                lag_seconds=float(self.config["reconcile_lag_seconds"]),
                checks=int(self.config["reconcile_checks"]),
                zone=self.options.zone,
                stop=self.stop_asked,
            )
        return self._reconciler

    @property
    def client(self) -> CleverTapClient:
        """The API client (created once, on first use, by whichever thread)."""
        if self._client is None:
            with self.lock:  # upload threads may be the first users
                if self._client is None:
                    self._client = CleverTapClient(
                        account_id=str(self.config["account_id"]),
                        passcode=str(self.config["passcode"]),
                        region=str(self.config["region"]),
                        api_url=self.config.get("api_url"),
                        timeout=float(self.config["request_timeout"]),
                        max_concurrency=self.max_concurrency,
                        max_tries=int(self.config["max_retries"]),
                        read_rate=float(self.config["identity_lookup_rate"]),
                    )
                    self._client.stop = self.stop_asked
        return self._client

    @property
    def pool(self) -> ThreadPoolExecutor:
        """Threads for concurrent upload requests."""
        if self._pool is None:
            with self.lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=self.max_concurrency,
                        thread_name_prefix="clevertap",
                    )
        return self._pool

    def open_private(self, path_setting: str) -> TextIO:
        """Open the file a path setting names for appending (mode 0600).

        Args:
            path_setting: the setting (`rejects_path`, `dry_run_path`).

        Returns:
            The open file.
        """
        path = Path(str(self.config[path_setting])).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private_file(path)
        return path.open("a", encoding="utf-8")

    def close(self) -> None:
        """Release threads, connections and the database."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()
        if self._store is not None:
            self._store.close()
