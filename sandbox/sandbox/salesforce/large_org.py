"""A large deterministic sample org (Contact, Lead, Opportunity, Task) for the bench.

The sample org of `seed.py` at any number of records: the same generator (names,
emails, phones, addresses, picklists, custom fields, converted leads, won and lost
deals), with Accounts and Users scaled to the people and Tasks pointing at Contacts
and Leads. Everything is written in one SQLite transaction through the store, so
100,000 records take seconds, not the minutes one API call per record would.

    python -m sandbox.salesforce.large_org --db org.db --records 100000

Start the emulator on that file afterwards (`python -m sandbox salesforce --db
org.db`): a non-empty database is served as it is.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from sandbox.salesforce.seed import SIZES, _Seeder
from sandbox.salesforce.store import Store

# Shares of the requested records, as in bench/generate.py's default mix.
DEFAULT_MIX: dict[str, float] = {
    "Contact": 0.40,
    "Lead": 0.25,
    "Opportunity": 0.15,
    "Task": 0.20,
}
PEOPLE_PER_ACCOUNT = 8
USERS = 25
MIN_ACCOUNTS = 5


def counts_for(records: int, mix: dict[str, float] | None = None) -> dict[str, int]:
    """Records per sObject type for `records` main records.

    Args:
        records: Contacts, Leads, Opportunities and Tasks together.
        mix: shares of the four types (default DEFAULT_MIX); normalised.

    Returns:
        Counts for every type the sample org generator knows (zero for the rest).

    Raises:
        ValueError: a negative size or an unknown type in the mix.
    """
    if records < 0:
        msg = "records must be >= 0"
        raise ValueError(msg)
    shares = dict(mix or DEFAULT_MIX)
    unknown = sorted(set(shares) - set(DEFAULT_MIX))
    if unknown:
        msg = f"the large org holds {sorted(DEFAULT_MIX)} only, not {unknown}"
        raise ValueError(msg)
    total = sum(shares.values()) or 1.0
    counts = dict.fromkeys(SIZES["small"], 0)
    assigned = 0
    names = list(shares)
    for name in names[:-1]:
        counts[name] = int(records * shares[name] / total)
        assigned += counts[name]
    counts[names[-1]] = records - assigned
    counts["User"] = USERS
    counts["Account"] = max(MIN_ACCOUNTS, counts["Contact"] // PEOPLE_PER_ACCOUNT)
    return counts


class _LargeSeeder(_Seeder):
    """The sample org generator with counts given directly."""

    def __init__(self, store: Store, counts: dict[str, int]) -> None:
        super().__init__(store, "small")
        label = f"sandbox-salesforce-large-{sum(counts.values())}"
        self.rng = random.Random(label)  # noqa: S311 - sample data, not crypto
        self.extra = random.Random(f"{label}-v2")  # noqa: S311 - sample data
        self.counts = counts


def seed_large(
    store: Store, records: int, mix: dict[str, float] | None = None
) -> dict[str, int]:
    """Add a large sample org to the store, in one transaction.

    Args:
        store: the emulator's store (normally empty).
        records: Contacts, Leads, Opportunities and Tasks together.
        mix: their shares (default DEFAULT_MIX).

    Returns:
        Records written per sObject type (related ones included: Users, Accounts,
        opportunity and field history).
    """
    out = _LargeSeeder(store, counts_for(records, mix)).run()
    store.put_many(out)
    written: dict[str, int] = {}
    for name, _record in out:
        written[name] = written.get(name, 0) + 1
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: write a large org into a (new) SQLite file.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.salesforce.large_org", description=__doc__
    )
    parser.add_argument("--db", type=Path, required=True, help="SQLite file")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)
    started = time.monotonic()
    store = Store(args.db)
    try:
        if not store.is_empty():
            sys.stderr.write(f"{args.db} already holds records; nothing written\n")
            return 1
        written = seed_large(store, args.records)
    finally:
        store.close()
    sys.stderr.write(
        f"{sum(written.values())} records ({written}) in "
        f"{time.monotonic() - started:.1f} s\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
