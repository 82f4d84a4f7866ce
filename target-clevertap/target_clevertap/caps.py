"""Account-wide caps: 256 custom profile property keys, 512 event names.

CleverTap drops keys past the 256th custom profile key, and events of names past
the 512th, silently (docs: upload-user-profiles-api, upload-events-api). The
target remembers the distinct custom keys and event names it has sent (table
`sent_names` in the state store, next to the event ledger), warns at 80% of a cap
and refuses a new key or name past it: the record becomes a reject with code
`profile_key_cap` or `event_name_cap`, never a silent drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging
    import threading
    from collections.abc import Collection, Iterable

    from target_clevertap.store_sql import Backend

PROFILE_KEY_CAP = 256
EVENT_NAME_CAP = 512
WARN_RATIO = 0.8
PROFILE_KEYS = "profile_key"
EVENT_NAMES = "event_name"
CODES = {PROFILE_KEYS: "profile_key_cap", EVENT_NAMES: "event_name_cap"}

#: CleverTap's predefined profile keys (not counted as custom)
PREDEFINED_KEYS = frozenset(
    {
        "identity",
        "Name",
        "Email",
        "Phone",
        "Gender",
        "DOB",
        "Photo",
        "Employed",
        "Education",
        "Married",
        "Age",
        "Tz",
        "category-unsubscribe",
        "category-resubscribe",
    }
)


def custom_keys(profile_data: Iterable[str]) -> list[str]:
    """The custom keys among a profile's keys (predefined and MSG-* left out).

    Args:
        profile_data: the keys of a profileData object.

    Returns:
        The custom keys.
    """
    return [
        k for k in profile_data if k not in PREDEFINED_KEYS and not k.startswith("MSG-")
    ]


def event_name_key(name: str) -> str:
    """Event names are unique ignoring case and spaces ("Sign Up" = "signup").

    Args:
        name: the event name.

    Returns:
        The normalised name.
    """
    return name.replace(" ", "").lower()


@dataclass(frozen=True)
class Refusal:
    """A new key or name past its cap."""

    kind: str
    name: str
    used: int
    cap: int

    @property
    def code(self) -> str:
        """The reject code."""
        return CODES[self.kind]

    @property
    def message(self) -> str:
        """The reject message."""
        what = "custom profile keys" if self.kind == PROFILE_KEYS else "event names"
        return (
            f"new {what[:-1]} {self.name!r} refused: the account would pass "
            f"CleverTap's cap of {self.cap} {what} ({self.used} in use), and "
            "CleverTap would drop it silently"
        )


class AccountCaps:
    """Counts the distinct custom keys and event names sent to the account."""

    def __init__(
        self,
        db: Backend,
        lock: threading.RLock,
        logger: logging.Logger,
        *,
        others: dict[str, int] | None = None,
        persist: bool = True,
    ) -> None:
        """Load what earlier runs sent.

        Args:
            db: the state store's database (its `backend`; the table
                `sent_names` is created with the store's other tables).
            lock: the state store's lock.
            logger: for the 80% warnings.
            others: keys/names in use in the account that this target did not
                send (the optional settings), by kind.
            persist: remember new names in the store (False in dry runs).
        """
        self._db = db
        self._lock = lock
        self.logger = logger
        self.persist = persist
        self.others = {PROFILE_KEYS: 0, EVENT_NAMES: 0, **(others or {})}
        self.caps = {PROFILE_KEYS: PROFILE_KEY_CAP, EVENT_NAMES: EVENT_NAME_CAP}
        self._warned: set[str] = set()
        with self._lock:
            rows = self._db.execute("SELECT kind, name FROM sent_names").fetchall()
        self.sent: dict[str, set[str]] = {PROFILE_KEYS: set(), EVENT_NAMES: set()}
        for kind, name in rows:
            self.sent.setdefault(str(kind), set()).add(str(name))
        #: profile keys (as sent, predefined and MSG-* ones too) and event names
        #: (as sent) admitted in this run: they need no check again (the sets
        #: only grow, bounded by the caps)
        self._known_keys: set[str] = set(PREDEFINED_KEYS)
        self._known_names: set[str] = set()

    def admit_profile(self, keys: Collection[str]) -> Refusal | None:
        """Admit the keys of one profileData (only new custom keys count).

        Args:
            keys: the profile's keys.

        Returns:
            None when all are admitted (see `admit`).
        """
        known = self._known_keys
        if known.issuperset(keys):  # the common case: nothing new
            return None
        refusal = self.admit(PROFILE_KEYS, custom_keys(keys))
        if refusal is None:
            known.update(keys)
        return refusal

    def admit_event(self, name: str) -> Refusal | None:
        """Admit one event name.

        Args:
            name: the event name.

        Returns:
            None when admitted (see `admit`).
        """
        if name in self._known_names:  # the common case: admitted before
            return None
        refusal = self.admit(EVENT_NAMES, [name])
        if refusal is None:
            self._known_names.add(name)
        return refusal

    def used(self, kind: str) -> int:
        """Keys or names in use: others' plus this target's.

        Args:
            kind: PROFILE_KEYS or EVENT_NAMES.

        Returns:
            The count.
        """
        return self.others[kind] + len(self.sent[kind])

    def admit(self, kind: str, names: Iterable[str]) -> Refusal | None:
        """Admit the names of one record, or refuse the first one past the cap.

        Nothing is admitted when one is refused.

        Args:
            kind: PROFILE_KEYS or EVENT_NAMES.
            names: the record's custom keys, or its event name(s).

        Returns:
            None when all are admitted.
        """
        norm = event_name_key if kind == EVENT_NAMES else str
        sent = self.sent[kind]
        if all(norm(x) in sent for x in names):  # the common case: nothing new
            return None
        with self._lock:
            originals = {norm(x): x for x in names}
            new = [n for n in originals if n not in sent]
            if not new:
                return None
            cap = self.caps[kind]
            used = self.used(kind)
            if used + len(new) > cap:
                return Refusal(kind, originals[new[max(0, cap - used)]], used, cap)
            self.sent[kind].update(new)
            if self.persist:
                with self._db.transaction():
                    self._db.executemany(
                        self._db.insert_ignore("sent_names", ("kind", "name")),
                        [(kind, n) for n in new],
                    )
            now_used = used + len(new)
        if now_used >= WARN_RATIO * cap and kind not in self._warned:
            self._warned.add(kind)
            what = "custom profile keys" if kind == PROFILE_KEYS else "event names"
            self.logger.warning(
                "CleverTap account at %d of its %d %s (80%% warning): past the cap "
                "new ones are refused as rejects (CleverTap would drop them)",
                now_used,
                cap,
                what,
            )
        return None
