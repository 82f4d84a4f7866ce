"""`python -m sandbox demo`: both Meltano pipelines end to end on the local sandbox.

Steps: `meltano install` (with no proxy variables, so the installers reach the
package index directly), `sandbox up`, the preflight of each plugin
(`meltano --environment=sandbox invoke <plugin>:preflight`, shown line by line),
`meltano --environment=sandbox run` of both jobs, a short report of what landed
where, then `sandbox down`.

The report is read back from the emulators, not from the plugins' logs: CleverTap's
`/_sandbox/` inspection API (profiles and events before and after), Salesforce's
REST API through the proxy (records whose SystemModstamp is at or after the start
of the runs), and the lines the targets appended to their rejects files.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import requests

from sandbox.control import (
    LOCALHOST,
    PROXY_ENV,
    Sandbox,
    SandboxError,
    ports_from_env,
)
from sandbox.salesforce import auth
from sandbox.salesforce.values import parse_datetime

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

JOBS = ("salesforce-to-clevertap", "clevertap-to-salesforce")
# The plugins with a `preflight` command (meltano.yml), one per leg and the tap.
PREFLIGHTS = ("target-clevertap", "tap-clevertap", "target-salesforce")
_PREFLIGHT_LINE = re.compile(r"^(PASS|FAIL|WARN) |^preflight: ")
MELTANO_VENV = ".venv-meltano"
# Objects the export preset writes to (transforms/clevertap_to_salesforce.yml).
SALESFORCE_OBJECTS = ("CleverTap_Engagement__c", "Contact", "Lead", "Task", "Campaign")
REJECTS_DIR = Path("output") / "rejects"
#: target-salesforce's not-linked file sits beside its rejects file
NOT_LINKED_SUFFIX = ".not-linked.jsonl"
# The emulator's fake connected app, as in the sandbox environment of meltano.yml.
SF_CLIENT_ID = auth.CLIENT_ID
SF_CLIENT_SECRET = auth.CLIENT_SECRET
SF_REFRESH_TOKEN = auth.REFRESH_TOKEN
SF_API = "v61.0"
# Never handed to Meltano or pip: installs must reach the index directly, and the
# sandbox environment in meltano.yml sets its own values for the runs.
_PROXY_ENV = (
    *PROXY_ENV,
    "NO_PROXY",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
_TIMEOUT = 30
#: target-clevertap's per-stream summary line (JSON after it)
_SUMMARY = re.compile(r"Summary for stream (\S+): ")


class DemoError(Exception):
    """A demo step failed; the message says which and where its log is."""


def find_meltano(root: Path) -> Path:
    """The meltano executable: `.venv-meltano/bin/meltano`, else one on PATH.

    Raises:
        DemoError: none is installed.
    """
    local = root / MELTANO_VENV / "bin" / "meltano"
    if local.exists():
        return local
    found = shutil.which("meltano")
    if found:
        return Path(found)
    msg = (
        f"Meltano is not installed; create its own venv with: python3.11 -m venv "
        f"{MELTANO_VENV} && {MELTANO_VENV}/bin/pip install meltano==4.4.1 "
        "(`make demo` does this)"
    )
    raise DemoError(msg)


def meltano_proxy_port(root: Path) -> int | None:
    """The proxy port the sandbox environment of `root/meltano.yml` points at."""
    try:
        text = (root / "meltano.yml").read_text()
    except FileNotFoundError:
        return None
    match = re.search(r"HTTPS_PROXY:\s*['\"]?http://127\.0\.0\.1:(\d+)", text)
    return int(match.group(1)) if match else None


def meltano_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Meltano: no proxy or CA variables, no usage stats."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k not in _PROXY_ENV}
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return env


@dataclasses.dataclass(frozen=True)
class StepResult:
    """How one Meltano command went."""

    name: str
    returncode: int
    seconds: float
    log: Path


def run_logged(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path, name: str
) -> StepResult:
    """Run a command with its output appended to `log`.

    Returns:
        The outcome, with the wall time.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("ab") as handle:
        handle.write(f"--- {dt.datetime.now(dt.UTC).isoformat()} {name}\n".encode())
        handle.flush()
        code = subprocess.call(  # noqa: S603 - fixed argv, no shell
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return StepResult(name, code, time.monotonic() - started, log)


def preflight_lines(text: str) -> list[str]:
    """The check lines and the summary a preflight printed, without log noise."""
    return [line for line in text.splitlines() if _PREFLIGHT_LINE.match(line)]


# -- what landed in CleverTap ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CleverTapSnapshot:
    """Profiles (key -> last update) and event counts by name, as stored."""

    profiles: Mapping[str, str]
    events: collections.Counter[str]

    def new_profiles(self, before: CleverTapSnapshot) -> int:
        """How many profiles exist now that did not before."""
        return len(self.profiles.keys() - before.profiles.keys())

    def updated_profiles(self, before: CleverTapSnapshot) -> int:
        """How many profiles that existed before were updated since."""
        return sum(
            1
            for key, stamp in self.profiles.items()
            if key in before.profiles and before.profiles[key] != stamp
        )

    def new_events(self, before: CleverTapSnapshot) -> collections.Counter[str]:
        """Events stored since `before`, by event name."""
        return self.events - before.events


def _local_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def clevertap_snapshot(port: int, ca_cert: Path) -> CleverTapSnapshot:
    """Read every profile and event from the CleverTap emulator's inspection API."""
    with _local_session() as session:
        base = f"https://{LOCALHOST}:{port}/_sandbox"
        profiles = session.get(
            f"{base}/profiles", verify=str(ca_cert), timeout=_TIMEOUT
        )
        profiles.raise_for_status()
        events = session.get(f"{base}/events", verify=str(ca_cert), timeout=_TIMEOUT)
        events.raise_for_status()
    ids = {
        _profile_key(p): str(p.get("updatedTs"))
        for p in _items(profiles.json(), "profiles")
    }
    counts = collections.Counter(
        str(e.get("evtName", "?")) for e in _items(events.json(), "events")
    )
    return CleverTapSnapshot(ids, counts)


def _items(body: object, key: str) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        body = body.get(key, body.get("records", []))
    return (
        [item for item in body if isinstance(item, dict)]
        if isinstance(body, list)
        else []
    )


def _profile_key(profile: Mapping[str, Any]) -> str:
    for key in ("identity", "objectId", "id"):
        if profile.get(key):
            return str(profile[key])
    return json.dumps(profile, sort_keys=True, default=str)


def target_summaries(log: Path, offset: int = 0) -> dict[str, dict[str, Any]]:
    """target-clevertap's last `Summary for stream` line per stream, after `offset`.

    Args:
        log: the job's log file.
        offset: where this run's output starts in it.

    Returns:
        Stream -> the summary counters.
    """
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return {}
    decoder = json.JSONDecoder()
    found: dict[str, dict[str, Any]] = {}
    for match in _SUMMARY.finditer(text):
        try:
            value = decoder.raw_decode(text, match.end())[0]
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found[match.group(1)] = value
    return found


def joined_profiles(summaries: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
    """CRM people who joined an existing app profile, and lookups made, in total."""
    joined = sum(
        int(s.get("joined_existing_profiles") or 0) for s in summaries.values()
    )
    asked = sum(int(s.get("identity_lookups") or 0) for s in summaries.values())
    return joined, asked


# -- what was written to Salesforce ------------------------------------------


def salesforce_session(env: Mapping[str, str]) -> tuple[requests.Session, str]:
    """Log in to the emulated org as a client would, through the sandbox proxy.

    Args:
        env: the client variables from `Sandbox.client_env()`.

    Returns:
        A session carrying the bearer token, and the org's instance URL.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": env["HTTPS_PROXY"]}
    session.verify = env["REQUESTS_CA_BUNDLE"]
    token = session.post(
        "https://login.salesforce.com/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": SF_CLIENT_ID,
            "client_secret": SF_CLIENT_SECRET,
            "refresh_token": SF_REFRESH_TOKEN,
        },
        timeout=_TIMEOUT,
    )
    token.raise_for_status()
    grant = token.json()
    session.headers["Authorization"] = f"Bearer {grant['access_token']}"
    return session, str(grant["instance_url"]).rstrip("/")


def salesforce_query(
    session: requests.Session, instance: str, soql: str
) -> list[dict[str, Any]]:
    """Every record of a SOQL query (queryAll, following nextRecordsUrl)."""
    return list(_query_all(session, instance, soql))


def salesforce_writes(
    env: Mapping[str, str], since: dt.datetime
) -> dict[str, tuple[int, int]]:
    """Records created and updated per object since `since`, via the REST API.

    It logs in as a client would (refresh token at login.salesforce.com, through
    the sandbox proxy) and runs the same query shape as tap-salesforce.

    Args:
        env: the client variables from `Sandbox.client_env()`.
        since: the start of the runs.

    Returns:
        Object name -> (created, updated).
    """
    # Salesforce keeps milliseconds: compare at that precision, never by the second,
    # so records written just before `since` (the end of an earlier run) do not
    # count as created by this one
    since = since.astimezone(dt.UTC)
    since = since.replace(microsecond=since.microsecond // 1000 * 1000)
    stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    session, instance = salesforce_session(env)
    result = {}
    with session:
        for name in SALESFORCE_OBJECTS:
            # SOQL, not SQL; `name` comes from the constant SALESFORCE_OBJECTS.
            select = f"SELECT Id, CreatedDate FROM {name}"  # noqa: S608 - constant names
            soql = (
                f"{select} WHERE SystemModstamp >= {stamp} ORDER BY SystemModstamp ASC"
            )
            created = updated = 0
            for record in _query_all(session, instance, soql):
                created_at = record.get("CreatedDate")
                if created_at and parse_datetime(str(created_at)) >= since:
                    created += 1
                else:
                    updated += 1
            result[name] = (created, updated)
    return result


def _query_all(
    session: requests.Session, instance: str, soql: str
) -> Iterator[dict[str, Any]]:
    response = session.get(
        f"{instance}/services/data/{SF_API}/queryAll",
        params={"q": soql},
        timeout=_TIMEOUT,
    )
    while True:
        response.raise_for_status()
        body = response.json()
        yield from body.get("records", [])
        next_url = body.get("nextRecordsUrl")
        if body.get("done", True) or not next_url:
            return
        response = session.get(f"{instance}{next_url}", timeout=_TIMEOUT)


# -- rejects -------------------------------------------------------------------


def rejects_sizes(root: Path) -> dict[Path, int]:
    """The size of each rejects file now, to read only what a run appends."""
    directory = root / REJECTS_DIR
    if not directory.is_dir():
        return {}
    return {path: path.stat().st_size for path in sorted(directory.glob("*.jsonl"))}


def new_rejects(
    root: Path, before: Mapping[Path, int]
) -> dict[str, collections.Counter[str]]:
    """Rejects appended since `before`, counted by reason, per file.

    Only the code and message are read: the record itself may hold personal data.
    """
    result: dict[str, collections.Counter[str]] = {}
    for path in rejects_sizes(root):
        if path.name.endswith(NOT_LINKED_SUFFIX):
            continue  # not rejects: see new_not_linked
        lines = _appended_lines(path, before)
        reasons: collections.Counter[str] = collections.Counter()
        for line in lines:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                reasons["unreadable rejects line"] += 1
                continue
            reasons[_reason(entry)] += 1
        if reasons:
            result[path.stem] = reasons
    return result


def _appended_lines(path: Path, before: Mapping[Path, int]) -> list[str]:
    with path.open("rb") as handle:
        handle.seek(before.get(path, 0))
        return handle.read().decode(errors="replace").splitlines()


def new_not_linked(
    root: Path, before: Mapping[Path, int]
) -> dict[Path, collections.Counter[str]]:
    """Not-linked records appended since `before`, counted by stream, per file.

    target-salesforce lists there the records an `on_missing_key: not_linked`
    entry had no Salesforce record for (CleverTap people who never came from
    Salesforce): expected, not rejects. Only the stream is read.
    """
    result: dict[Path, collections.Counter[str]] = {}
    for path in rejects_sizes(root):
        if not path.name.endswith(NOT_LINKED_SUFFIX):
            continue
        streams: collections.Counter[str] = collections.Counter()
        for line in _appended_lines(path, before):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {}
            stream = entry.get("stream") if isinstance(entry, dict) else None
            streams[str(stream or "?")] += 1
        if streams:
            result[path] = streams
    return result


def _reason(entry: object) -> str:
    if not isinstance(entry, dict):
        return "?"
    code = entry.get("code") or entry.get("statusCode") or entry.get("error_code")
    message = entry.get("message") or entry.get("reason") or entry.get("error") or ""
    stream = entry.get("stream")
    prefix = f"{stream}: " if stream else ""
    return f"{prefix}{code or '?'} {str(message)[:120]}".strip()


# -- the demo --------------------------------------------------------------------


class Demo:
    """One `python -m sandbox demo` run."""

    def __init__(self, root: Path, out: IO[str]) -> None:
        """Prepare the demo for the project at `root`."""
        self.root = root.resolve()
        self.out = out
        self.sandbox = Sandbox(self.root, ports_from_env(), out=out)
        self.log_dir = self.sandbox.state_dir / "demo"
        self._log_offsets: dict[str, int] = {}

    def say(self, line: str = "") -> None:
        """Write one line of progress."""
        self.out.write(line + "\n")
        self.out.flush()

    def run(self) -> int:
        """Install, start the sandbox, run both jobs, report, stop the sandbox.

        Returns:
            0 when every step succeeded.
        """
        started = time.monotonic()
        try:
            meltano = find_meltano(self.root)
            self._check_proxy_port()
            self._install(meltano)
        except DemoError as exc:
            self.say(f"error: {exc}")
            return 1
        self.say("== sandbox up")
        if self.sandbox.up() != 0:
            self.say("error: the sandbox did not start (see the logs named above)")
            self.sandbox.down()
            return 1
        try:
            code = self._runs(meltano)
        finally:
            self.say("== sandbox down")
            self.sandbox.down()
        self.say(f"demo finished in {time.monotonic() - started:.0f} s")
        return code

    def _check_proxy_port(self) -> None:
        expected = meltano_proxy_port(self.root)
        actual = self.sandbox.ports["proxy"]
        if expected is None:
            msg = f"no sandbox HTTPS_PROXY found in {self.root / 'meltano.yml'}"
            raise DemoError(msg)
        if expected != actual:
            msg = (
                f"meltano.yml's sandbox environment sends plugins to the proxy on port "
                f"{expected}, but SANDBOX_PROXY_PORT is {actual}: make them agree"
            )
            raise DemoError(msg)

    def _install(self, meltano: Path) -> None:
        self.say(f"== meltano install (log {self._show(self.log_dir / 'install.log')})")
        step = run_logged(
            [str(meltano), "install"],
            cwd=self.root,
            env=meltano_env(),
            log=self.log_dir / "install.log",
            name="meltano install",
        )
        if step.returncode != 0:
            msg = (
                f"`meltano install` failed (exit {step.returncode}); "
                f"see {self._show(step.log)}"
            )
            raise DemoError(msg)
        self.say(f"   installed in {step.seconds:.0f} s")

    def _runs(self, meltano: Path) -> int:
        env = meltano_env()
        tls = self.sandbox.tls_dir
        before_ct = clevertap_snapshot(self.sandbox.ports["clevertap"], tls / "ca.pem")
        before_rejects = rejects_sizes(self.root)
        code = self._preflights(meltano, env)
        since = dt.datetime.now(dt.UTC)
        for job in JOBS:
            log = self.log_dir / f"{job}.log"
            self._log_offsets[job] = log.stat().st_size if log.exists() else 0
            self.say(
                f"== meltano --environment=sandbox run {job} (log {self._show(log)})"
            )
            step = run_logged(
                [str(meltano), "--environment=sandbox", "run", job],
                cwd=self.root,
                env=env,
                log=log,
                name=job,
            )
            status = (
                "ok" if step.returncode == 0 else f"FAILED (exit {step.returncode})"
            )
            self.say(f"   {status} in {step.seconds:.1f} s")
            if step.returncode != 0:
                code = 1
                self.say(_tail(log))
        self._report(before_ct, before_rejects, since)
        return code

    def _preflights(self, meltano: Path, env: Mapping[str, str]) -> int:
        """Run each plugin's preflight against the sandbox and show its lines."""
        code = 0
        for plugin in PREFLIGHTS:
            log = self.log_dir / f"preflight-{plugin}.log"
            start = log.stat().st_size if log.exists() else 0
            self.say(
                f"== meltano --environment=sandbox invoke {plugin}:preflight "
                f"(log {self._show(log)})"
            )
            step = run_logged(
                [
                    str(meltano),
                    "--environment=sandbox",
                    "invoke",
                    f"{plugin}:preflight",
                ],
                cwd=self.root,
                env=env,
                log=log,
                name=f"{plugin}:preflight",
            )
            with log.open("rb") as handle:
                handle.seek(start)
                text = handle.read().decode("utf-8", "replace")
            lines = preflight_lines(text)
            for line in lines:
                self.say(f"   {line}")
            if step.returncode != 0:
                code = 1
                if not lines:
                    self.say(_tail(log))
        return code

    def _report(
        self,
        before_ct: CleverTapSnapshot,
        before_rejects: Mapping[Path, int],
        since: dt.datetime,
    ) -> None:
        tls = self.sandbox.tls_dir
        self.say("== report")
        try:
            after = clevertap_snapshot(self.sandbox.ports["clevertap"], tls / "ca.pem")
        except requests.RequestException as exc:
            self.say(f"CleverTap: could not read the emulator: {exc}")
        else:
            self.say(
                f"CleverTap profiles: {after.new_profiles(before_ct)} created, "
                f"{after.updated_profiles(before_ct)} updated "
                f"({len(after.profiles)} stored)"
            )
            added = after.new_events(before_ct)
            total = sum(added.values())
            self.say(f"CleverTap events landed: {total}")
            for name, count in sorted(added.items()):
                self.say(f"  {name:<32} {count:>7}")
        job = JOBS[0]
        joined, asked = joined_profiles(
            target_summaries(self.log_dir / f"{job}.log", self._log_offsets.get(job, 0))
        )
        self.say(
            f"CRM people who joined an existing app profile (identity_lookup: "
            f"email): {joined} ({asked} looked up by email)"
        )
        try:
            writes = salesforce_writes(self.sandbox.client_env(), since)
        except (requests.RequestException, KeyError, ValueError) as exc:
            self.say(f"Salesforce: could not read the emulator: {exc}")
        else:
            self.say("Salesforce records written (created / updated):")
            for name, (created, updated) in writes.items():
                self.say(f"  {name:<32} {created:>7} / {updated}")
        self._report_rejects(before_rejects)

    def _report_rejects(self, before_rejects: Mapping[Path, int]) -> None:
        """Rejects by reason; not-linked people (expected, not errors) apart."""
        rejects = new_rejects(self.root, before_rejects)
        if not rejects:
            self.say("Rejects: none")
        for target, reasons in rejects.items():
            self.say(f"Rejects from {target}: {sum(reasons.values())}")
            for reason, count in reasons.most_common(10):
                self.say(f"  {count:>7}  {reason}")
        for path, streams in new_not_linked(self.root, before_rejects).items():
            self.say(
                f"Not linked (CleverTap people without the Salesforce record the "
                f"stream updates; expected, not errors): {sum(streams.values())}, "
                f"listed in {self._show(path)}"
            )
            for stream, count in sorted(streams.items()):
                self.say(f"  {stream:<32} {count:>7}")

    def _show(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(f"   | {line}" for line in text[-lines:])


def run_demo(root: Path | None = None, out: IO[str] | None = None) -> int:
    """Run the demo in `root` (default: the current directory).

    Returns:
        The exit code.
    """
    stream = out if out is not None else sys.stdout
    try:
        demo = Demo(root or Path.cwd(), stream)
    except SandboxError as exc:
        stream.write(f"error: {exc}\n")
        return 2
    return demo.run()
