"""`postgres-to-clevertap`: tap-postgres (MeltanoLabs) -> target-clevertap, inline map.

A PostgreSQL server of the test's own (sandbox.postgres) holds a users table
and an orders table; the job maps users to profiles keyed on the customer id and
orders to Charged events with Items, incrementally on `updated_at`, into the
CleverTap emulator. A second run after one user changed moves only that change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sandbox.postgres import running_postgres, server_bin

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

    from sandbox.postgres import Postgres

    from .conftest import MeltanoProject

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        server_bin() is None, reason="no PostgreSQL server (make postgres-server)"
    ),
]

JOB = "postgres-to-clevertap"
# The sandbox environment's tap-postgres login (meltano.yml); a throwaway server.
SHOP = {"user": "shop", "database": "shop", "password": "SANDBOX-SHOP-PASSWORD"}
CUSTOMERS = ("C-1001", "C-1002", "C-1003")
SCHEMA = """
CREATE TABLE users (
    id serial PRIMARY KEY,
    customer_id text UNIQUE NOT NULL,
    name text, email text, phone text, plan text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE orders (
    id serial PRIMARY KEY,
    order_id integer UNIQUE NOT NULL,
    customer_id text NOT NULL REFERENCES users (customer_id),
    amount numeric(10, 2) NOT NULL,
    currency text, payment_mode text,
    items jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
INSERT INTO users (customer_id, name, email, phone, plan, created_at, updated_at) VALUES
 ('C-1001', 'Ada Lovelace', 'ada@example.com', '+14155550101', 'free',
  now() - interval '3 days', now() - interval '3 hours'),
 ('C-1002', 'Grace Hopper', 'grace@example.com', '+14155550102', 'free',
  now() - interval '2 days', now() - interval '2 hours'),
 ('C-1003', 'Alan Turing', 'alan@example.com', '+14155550103', 'pro',
  now() - interval '1 day', now() - interval '1 hour');
INSERT INTO orders (order_id, customer_id, amount, currency, payment_mode, items,
                    created_at, updated_at) VALUES
 (5001, 'C-1001', 59.90, 'USD', 'Card',
  '[{"Category": "Books", "Book name": "Notes", "Quantity": 2, "Price": 19.95},
    {"Category": "Pens", "Quantity": 1, "Price": 20.00}]',
  now() - interval '3 hours', now() - interval '3 hours'),
 (5002, 'C-1002', 12.50, 'USD', 'PayPal',
  '[{"Category": "Books", "Book name": "COBOL", "Quantity": 1, "Price": 12.50}]',
  now() - interval '2 hours', now() - interval '2 hours'),
 (5003, 'C-1003', 99.00, 'EUR', 'Card',
  '[{"Category": "Machines", "Quantity": 1, "Price": 99.00}]',
  now() - interval '1 hour', now() - interval '1 hour');
"""


@dataclasses.dataclass
class Landed:
    """What the CleverTap emulator held for the shop's customers after a run."""

    result: subprocess.CompletedProcess[str]
    profiles: dict[str, dict[str, Any]]
    charged: list[dict[str, Any]]
    uploaded_records: int


@dataclasses.dataclass
class Journey:
    """The first run, and the run after one user changed."""

    first: Landed
    after_update: Landed


def _get(project: MeltanoProject, path: str, **params: str) -> Any:
    sandbox = project.sandbox
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(
            f"https://127.0.0.1:{sandbox.ports['clevertap']}/_sandbox/{path}",
            params=params,
            verify=str(sandbox.tls_dir / "ca.pem"),
            timeout=30,
        )
    response.raise_for_status()
    return response.json()


def _listed(body: Any, key: str) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        body = body.get(key, body.get("records", []))
    return [item for item in body if isinstance(item, dict)]


def _uploaded(project: MeltanoProject) -> int:
    log = _get(project, "requests")
    return sum(
        int(r.get("records") or 0)
        for r in log
        if r.get("method") == "POST" and str(r.get("path")).endswith("/upload")
    )


def _run(project: MeltanoProject, server: Postgres) -> Landed:
    before = _uploaded(project)
    result = project.run("run", JOB, env=_tap_postgres_env(server))
    profiles = {}
    for customer in CUSTOMERS:
        found = _listed(_get(project, "profiles", identity=customer), "profiles")
        if found:
            profiles[customer] = found[-1]
    events = _listed(_get(project, "events", evtName="Charged"), "events")
    charged = [e for e in events if str(e.get("identity", "")) in CUSTOMERS]
    return Landed(result, profiles, charged, _uploaded(project) - before)


def _tap_postgres_env(server: Postgres) -> dict[str, str]:
    """The tap-postgres settings pointing at the test's server."""
    return {
        "TAP_POSTGRES_HOST": "127.0.0.1",
        "TAP_POSTGRES_PORT": str(server.port),
        "TAP_POSTGRES_USER": server.user,
        "TAP_POSTGRES_DATABASE": server.database,
        "TAP_POSTGRES_PASSWORD": server.password,
    }


@pytest.fixture(scope="module")
def shop() -> Iterator[Postgres]:
    with running_postgres(**SHOP) as server:
        server.psql(SCHEMA)
        yield server


@pytest.fixture(scope="module")
def journey(meltano_project: MeltanoProject, shop: Postgres) -> Journey:
    first = _run(meltano_project, shop)
    shop.psql(
        "UPDATE users SET plan = 'gold', updated_at = now() "
        "WHERE customer_id = 'C-1002'"
    )
    return Journey(first, _run(meltano_project, shop))


def _data(profile: dict[str, Any]) -> dict[str, Any]:
    return dict(profile.get("profileData") or profile)


def test_both_runs_succeed(journey: Journey) -> None:
    for landed in (journey.first, journey.after_update):
        assert landed.result.returncode == 0, landed.result.stderr[-3000:]


def test_users_become_profiles_keyed_on_the_customer_id(journey: Journey) -> None:
    profiles = journey.first.profiles
    assert sorted(profiles) == list(CUSTOMERS)
    grace = _data(profiles["C-1002"])
    assert grace["Customer Id"] == "C-1002"
    assert grace["Name"] == "Grace Hopper"
    assert grace["Email"] == "grace@example.com"
    assert grace["Plan"] == "free"


def test_orders_become_charged_events_with_items(journey: Journey) -> None:
    by_id = {e["evtData"]["Charged ID"]: e for e in journey.first.charged}
    assert sorted(by_id) == [5001, 5002, 5003]
    ada = by_id[5001]
    assert ada["identity"] == "C-1001"
    assert ada["evtData"]["Amount"] == 59.9
    assert ada["evtData"]["Currency"] == "USD"
    assert ada["evtData"]["Items"] == [
        {"Category": "Books", "Book name": "Notes", "Quantity": 2, "Price": 19.95},
        {"Category": "Pens", "Quantity": 1, "Price": 20},
    ]
    # the event time is the order's created_at, not the load time
    placed = dt.datetime.fromtimestamp(int(ada["ts"]), dt.UTC)
    assert dt.datetime.now(dt.UTC) - placed > dt.timedelta(hours=2)


def test_second_run_after_an_update_moves_only_the_change(journey: Journey) -> None:
    after = journey.after_update
    assert _data(after.profiles["C-1002"])["Plan"] == "gold"
    assert len(after.charged) == len(journey.first.charged)
    # the changed user, plus at most the row tap-postgres re-reads at the bookmark
    # (its replication-key filter is >=); orders already sent are not sent again
    assert 1 <= after.uploaded_records <= 2
    unchanged = {c: _data(p) for c, p in after.profiles.items() if c != "C-1002"}
    assert unchanged == {
        c: _data(p) for c, p in journey.first.profiles.items() if c != "C-1002"
    }
