"""Bench entry point: `python bench/run.py [--quick] [--n N] [--reps R] [--only P1,P3]`.

Runs the measurements P1..P7 of issues 8 and 18 side by side, prints the results table
and writes it, with the current figure of every goal and the machine's description, to
bench/RESULTS.md (or --results).
A measurement whose plugin or emulator feature is not there yet gets a
"not available yet: <reason>" row and the rest still runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # when imported rather than run as a script
    sys.path.insert(0, str(BENCH))

import common  # noqa: E402 - needs the path above
import generate  # noqa: E402 - needs the path above
import measures  # noqa: E402 - needs the path above
import report  # noqa: E402 - needs the path above

FULL = {"n": 100_000, "reps": 3, "mem": (100_000, 1_000_000)}
QUICK = {"n": 2_000, "reps": 3, "mem": (2_000, 20_000)}
QUICK_RESULTS = BENCH / "out" / "RESULTS-quick.md"  # scratch: bench/out is gitignored
# P2 runs nine times (three concurrencies, three repetitions); its ratio depends on the
# per-record CPU against the added latency, not on N, so it defaults to a smaller N.
P2_MAX_DEFAULT = 20_000
P5_ONE_RUN_FROM = 50_000


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: the arguments (default sys.argv[1:]).

    Returns:
        The options, with sizes filled in from --quick or the full defaults.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fast")
    parser.add_argument("--n", type=int, help="records per run (P1, P2, P4, P5)")
    parser.add_argument("--reps", type=int, help="repetitions per measurement")
    parser.add_argument(
        "--mem-sizes", type=_sizes, help="P3 input sizes, e.g. 100000,1000000"
    )
    parser.add_argument(
        "--p2-n", type=int, help="records for P2 (default: --n, at most 20000)"
    )
    parser.add_argument(
        "--p2-concurrency",
        type=_sizes,
        default=common.P2_CONCURRENCY,
        help="P2 max_concurrency values (default 1,15; the goal uses the highest, "
        "the 15 vs 1 ratio needs 1)",
    )
    parser.add_argument(
        "--p2-latency",
        type=_sizes,
        default=common.P2_LATENCY_MS,
        help="P2 milliseconds added per upload call (default 100,500)",
    )
    parser.add_argument(
        "--pipe-n",
        type=int,
        help="records (P6: Salesforce org; P7: CleverTap events); default --n",
    )
    parser.add_argument(
        "--pipe-reps", type=int, help="repetitions for P6 and P7 (default --reps)"
    )
    parser.add_argument(
        "--p5-reps",
        type=int,
        help="repetitions for P5 (default: 1 from 50000 records, else --reps)",
    )
    parser.add_argument(
        "--mix",
        help="stream weights of the Salesforce input for P1-P3, e.g. Contact=1 "
        "(default Contact=40,Lead=25,Opportunity=15,Task=20)",
    )
    parser.add_argument("--only", default="P1,P2,P3,P4,P5,P6,P7", help="e.g. P1,P3")
    parser.add_argument(
        "--results",
        type=Path,
        help="Markdown output (default bench/RESULTS.md; with --quick a scratch "
        "file, bench/out/RESULTS-quick.md, so the committed results stay as they are)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=BENCH / "out", help="inputs and scratch"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per child run"
    )
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    if args.results is None:
        args.results = QUICK_RESULTS if args.quick else BENCH / "RESULTS.md"
    if args.n is None:
        args.n = preset["n"]
        args.mem_sizes = args.mem_sizes or preset["mem"]
    else:
        args.mem_sizes = args.mem_sizes or (args.n, 10 * args.n)
    args.reps = args.reps or preset["reps"]
    args.p2_n = args.p2_n or min(args.n, P2_MAX_DEFAULT)
    args.pipe_n = args.pipe_n or args.n
    args.pipe_reps = args.pipe_reps or args.reps
    # at full size P5's wall time is mostly the emulator storing rows one by one
    args.p5_reps = args.p5_reps or (1 if args.n >= P5_ONE_RUN_FROM else args.reps)
    args.only = [p.strip().upper() for p in args.only.split(",") if p.strip()]
    if args.mix:
        try:
            generate.parse_mix(args.mix)
        except ValueError as exc:
            parser.error(str(exc))
    unknown = sorted(set(args.only) - set(measures.MEASURES))
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(unknown)}")
    return args


def notes(args: argparse.Namespace) -> list[str]:
    """How to read this run's figures.

    Args:
        args: the parsed options.

    Returns:
        One sentence each.
    """
    mix = args.mix or ",".join(
        f"{k}={round(v * 100)}" for k, v in generate.DEFAULT_MIX.items()
    )
    out = [
        (
            f"Salesforce input (P1-P3): stream mix {mix}, generator version "
            f"{generate.GENERATOR_VERSION}, about 1.2 KB per record with its STATE."
        ),
        (
            "Wall times move with the machine's load (see the load average above); the "
            "CPU column is the child's own user+sys time and is steadier."
        ),
        (
            f"P2 uses {args.p2_n:,} records, uploads of 1000 records with "
            f"{' and '.join(map(str, args.p2_latency))} ms added per call, "
            f"max_concurrency {', '.join(map(str, args.p2_concurrency))}; the dry "
            "run does the same work without sending."
        ),
        (
            "P3 streams the generator's output through a pipe; only the target's peak "
            "RSS is measured (one run per size)."
        ),
        (
            "P4 seeds the events through the emulator's /1/upload. P4 and P5 wall "
            "times include the emulator's own work; their CPU lines show the client "
            "side alone."
        ),
        (
            f"P6 reads a {args.pipe_n:,}-record org (Contact, Lead, Opportunity, Task "
            "with Users, Accounts and opportunity history around them) with the real "
            "tap-salesforce 2.8.1 through the sandbox proxy; P7 exports "
            f"{args.pipe_n:,} seeded events. {args.pipe_reps} run(s) each; a "
            "pipeline's CPU column is both sides together, the note splits it."
        ),
        (
            f"P5 inserts Contacts (upsert by external id makes the emulator scan the "
            f"table per row); {args.p5_reps} run(s) of the target."
        ),
    ]
    if args.n < P5_ONE_RUN_FROM:
        out.insert(
            0,
            "Small N: every run pays about 1 s of interpreter and SDK start-up, which "
            "dominates here; only full-size runs say anything about the goals.",
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the bench.

    Args:
        argv: the arguments.

    Returns:
        The exit code: 0 when the bench ran (goals met or not).
    """
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    info = report.machine()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    ctx = common.Context(
        n=args.n,
        reps=args.reps,
        mem_sizes=tuple(args.mem_sizes),
        p2_n=args.p2_n,
        workdir=args.workdir,
        timeout=args.timeout,
        p5_reps=args.p5_reps,
        p2_concurrency=args.p2_concurrency,
        p2_latency=args.p2_latency,
        pipe_n=args.pipe_n,
        pipe_reps=args.pipe_reps,
        mix=args.mix,
        log=log,
    )
    log(
        f"bench: n={args.n} reps={args.reps} mem={args.mem_sizes} "
        f"p2_n={args.p2_n} p5_reps={args.p5_reps} pipe_n={args.pipe_n} "
        f"pipe_reps={args.pipe_reps} only={','.join(args.only)}"
    )
    command = "python bench/run.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)

    def write(sections: list[common.Section], *, final: bool) -> None:
        text = report.markdown(
            sections,
            info,
            command=command.strip(),
            started=started,
            seconds=time.monotonic() - clock,
            notes=notes(args),
        )
        if not final:
            text += "\n_Partial: the run was still going when this was written._\n"
        args.results.write_text(text, encoding="utf-8")

    sections = measures.run_all(
        ctx, args.only, progress=lambda done: write(done, final=False)
    )
    write(sections, final=True)
    print(report.console(sections))
    print(f"\nwritten: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
