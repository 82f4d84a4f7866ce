"""Typed views over the raw tables target-duckdb wrote for tap-clevertap.

Usage: python clevertap_duckdb_views.py DATABASE_FILE  (run by the `duckdb-views`
utility in meltano.yml, after `tap-clevertap--warehouse target-duckdb`).

target-duckdb 0.8.0 creates TIMESTAMP columns for `format: date-time`, DOUBLE or
HUGEINT for numbers and JSON for objects, but VARCHAR for `format: date`
(target_duckdb/db_sync.py, column_type). Casting a column in place would not last:
on the next run target-duckdb sees a type it did not create and renames the column
away. So the raw tables stay as loaded (schema `clevertap_raw`) and schema
`clevertap` gets one view per table with the date columns cast to DATE.
"""

from __future__ import annotations

import sys

import duckdb

RAW_SCHEMA = "clevertap_raw"
VIEW_SCHEMA = "clevertap"
# tap-clevertap's `format: date` properties, per stream (tests/e2e checks this list
# against the tap's discovered catalog).
DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "event_counts": ("date",),
    "event_trends": ("date",),
    "message_reports": ("date",),
}


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def view_sql(table: str, columns: list[str]) -> str:
    """The CREATE VIEW statement for one raw table with these columns."""
    dates = [c for c in DATE_COLUMNS.get(table, ()) if c in columns]
    replace = ", ".join(f"CAST({_quoted(c)} AS DATE) AS {_quoted(c)}" for c in dates)
    select = f"* REPLACE ({replace})" if replace else "*"
    view, raw = f"{VIEW_SCHEMA}.{_quoted(table)}", f"{RAW_SCHEMA}.{_quoted(table)}"
    # names come from information_schema and are quoted; nothing user-supplied
    return f"CREATE OR REPLACE VIEW {view} AS SELECT {select} FROM {raw}"  # noqa: S608


def create_views(path: str) -> list[str]:
    """Create or replace one typed view per raw table; returns the table names."""
    with duckdb.connect(path) as connection:
        rows = connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = ? ORDER BY table_name, ordinal_position",
            [RAW_SCHEMA],
        ).fetchall()
        tables: dict[str, list[str]] = {}
        for table, column in rows:
            tables.setdefault(str(table), []).append(str(column))
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {VIEW_SCHEMA}")
        for table, columns in tables.items():
            connection.execute(view_sql(table, columns))
    return sorted(tables)


def main() -> int:
    """Create the views in the database file named on the command line."""
    if len(sys.argv) != 2:  # noqa: PLR2004 - the program name and one argument
        sys.stderr.write("usage: clevertap_duckdb_views.py DATABASE_FILE\n")
        return 2
    created = create_views(sys.argv[1])
    sys.stderr.write(f"typed views in schema {VIEW_SCHEMA}: {', '.join(created)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
