"""Account-wide caps, enforced the way CleverTap does: silently.

At most 256 custom profile property keys and 512 event names per account (docs:
upload-user-profiles-api, upload-events-api; event names compare ignoring case
and spaces). Past a cap CleverTap accepts the record and drops the new key (or
the event) without a word in the reply; the emulator counts what it dropped so
tests can see it in `GET /_sandbox/caps`. The limits are the docs'; the silent
drop is stated in ../shared/docs/clevertap-api.md, not in a recording, so no
contract test holds it (tests/sandbox/test_clevertap_faults.py checks the emulator).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Any

from sandbox.clevertap.store import loads
from sandbox.clevertap.validation import EventOp, ProfileOp, event_key

if TYPE_CHECKING:
    from sandbox.clevertap.store import Store
    from sandbox.clevertap.validation import Operation

MAX_CUSTOM_PROFILE_KEYS = 256
MAX_EVENT_NAMES = 512
#: predefined profile keys (not custom), as CleverTap documents them
PREDEFINED_KEYS = frozenset(
    {
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
        "identity",
        "category-unsubscribe",
        "category-resubscribe",
    }
)


def is_custom(key: str) -> bool:
    """Whether a profile key counts against the custom-key cap."""
    return key not in PREDEFINED_KEYS and not key.startswith("MSG-")


@dataclasses.dataclass
class Caps:
    """The keys and names in use, the limits, and what was dropped."""

    max_keys: int = MAX_CUSTOM_PROFILE_KEYS
    max_names: int = MAX_EVENT_NAMES
    keys: set[str] | None = None  # loaded from the store on first use
    names: set[str] | None = None
    dropped_keys: Counter[str] = dataclasses.field(default_factory=Counter)
    dropped_events: Counter[str] = dataclasses.field(default_factory=Counter)
    #: keys a profile may use without taking room: those in `keys` and the
    #: predefined ones seen (one set test per record in the common case)
    _covered: set[str] = dataclasses.field(
        default_factory=set, repr=False, compare=False
    )

    def load(self, store: Store) -> None:
        """Read the keys and names already stored (seeded data included)."""
        if self.keys is None:
            keys: set[str] = set()
            for row in store.query("SELECT profile_data FROM profiles"):
                data = loads(row["profile_data"])
                if isinstance(data, dict):
                    keys.update(k for k in data if is_custom(k))
            self.keys = keys
            self._covered = set(keys)
        if self.names is None:
            rows = store.query("SELECT DISTINCT evt_key FROM events")
            self.names = {str(r["evt_key"]) for r in rows}

    def forget(self) -> None:
        """Drop what was loaded (after a wipe or a seed) and the drop counts."""
        self.keys = self.names = None
        self._covered = set()
        self.dropped_keys.clear()
        self.dropped_events.clear()

    def apply(self, op: Operation, *, dry_run: bool) -> Operation | None:
        """The operation as CleverTap applies it (None: the event is dropped).

        A dry run checks without taking a key or a name.
        """
        if isinstance(op, EventOp):
            return self._event(op, dry_run=dry_run)
        if isinstance(op, ProfileOp):
            return self._profile(op, dry_run=dry_run)
        return op

    def _event(self, op: EventOp, *, dry_run: bool) -> EventOp | None:
        names = self.names if self.names is not None else set()
        name = event_key(op.name)
        if name in names:
            return op
        if len(names) >= self.max_names:
            if not dry_run:
                self.dropped_events[op.name] += 1
            return None
        if not dry_run:
            names.add(name)
        return op

    def _profile(self, op: ProfileOp, *, dry_run: bool) -> ProfileOp:
        covered = self._covered
        if op.properties.keys() <= covered:  # no set built from the keys
            return op
        keys = self.keys if self.keys is not None else set()
        new = [k for k in op.properties if k not in keys and is_custom(k)]
        if not new:
            if keys is self.keys:
                covered.update(op.properties)
            return op
        room = max(0, self.max_keys - len(keys))
        taken, dropped = new[:room], new[room:]
        if not dry_run:
            keys.update(taken)
            for key in dropped:
                self.dropped_keys[key] += 1
        if not dropped:
            return op
        gone = set(dropped)
        props = {k: v for k, v in op.properties.items() if k not in gone}
        return op._replace(properties=props)

    def describe(self) -> dict[str, Any]:
        """The JSON view of `GET /_sandbox/caps`."""
        return {
            "max_custom_profile_keys": self.max_keys,
            "max_event_names": self.max_names,
            "custom_profile_keys": len(self.keys or ()),
            "event_names": len(self.names or ()),
            "dropped_profile_keys": dict(self.dropped_keys),
            "dropped_events": dict(self.dropped_events),
        }
