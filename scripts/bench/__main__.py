"""Run the benchmarks and write docs/benchmarks.md: ``python -m scripts.bench [options]``.

Defaults keep the whole run under ten minutes on a 2-core machine; the flags
make bigger runs (more repeats, more texters, longer loads).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from scripts.bench.common import ROOT, fake_aws_credentials, machine


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _env(text: str) -> dict[str, str]:
    pairs = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        pairs[name.strip()] = value.strip()
    return pairs


PARTS = ("storage", "webhook", "concurrency", "cost", "async")


def _parts(raw: str) -> list[str]:
    """Read --parts; a name that is not a part is an error, not a run that measures nothing."""
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown part {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(PARTS)}"
        )
    return names


DEFAULT_SCENARIOS = ("async", "auto", "bursts-auto", "bursts-async", "requests-auto", "requests-async")


def _scenarios(raw: str) -> list[str]:
    """Read --async-scenarios; an unknown name is an error."""
    from scripts.bench.bench_async import SCENARIOS

    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(SCENARIOS)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_ints, default=[10, 100, 1000, 5000],
                        help="history lengths for part 1 (default 10,100,1000,5000)")
    parser.add_argument("--repeats", type=int, default=5, help="turns per layout and length (median taken)")
    parser.add_argument("--webhook-turns", type=int, default=200, help="timed POST /sms turns in part 2")
    parser.add_argument("--texters", type=_ints, default=[25, 50, 100, 200],
                        help="N values swept in part 3 (default 25,50,100,200)")
    parser.add_argument("--latency", type=float, default=2.0, help="fake model latency L in seconds")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per N in part 3")
    parser.add_argument("--alt", type=_env, action="append", default=None, metavar="NAME=VALUE[,...]",
                        help="extra environment for a run at the largest N (repeatable); "
                             "default: GUNICORN_THREADS doubled, then WEB_CONCURRENCY doubled")
    parser.add_argument("--parts", type=_parts, default=list(PARTS),
                        help=f"which parts to run, comma-separated (default {','.join(PARTS)}; "
                             "cost alone refreshes only its section and the README's)")
    parser.add_argument("--async-scenarios", type=_scenarios, default=list(DEFAULT_SCENARIOS),
                        help="part 5's scenarios, comma-separated (default "
                             f"{','.join(DEFAULT_SCENARIOS)}; also: sync)")
    parser.add_argument("--async-texters", type=int, default=200,
                        help="N in part 5's closed loops (default 200)")
    parser.add_argument("--async-latency", type=float, default=20.0,
                        help="fake model latency L of part 5's async closed loop (default 20 s)")
    parser.add_argument("--auto-latency", type=float, default=2.0,
                        help="fake model latency L of part 5's auto and sync closed loops (default 2 s)")
    parser.add_argument("--async-duration", type=float, default=None,
                        help="seconds of load per closed loop in part 5 (default 4 L async, 15 L auto)")
    parser.add_argument("--burst-numbers", type=int, default=10,
                        help="numbers that each send a 5-text burst in part 5 (default 10)")
    parser.add_argument("--burst-latency", type=float, default=5.0,
                        help="fake model latency L during part 5's bursts (default 5 s)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=Path("/tmp/dadacat-bench-results.json"),
                        help="also save the raw results here (default /tmp/dadacat-bench-results.json)")
    return parser.parse_args(argv)


def default_alternatives(settings: dict[str, Any]) -> list[dict[str, str]]:
    """Return two alternatives: twice the threads per worker, and twice the workers.

    gunicorn.conf.py reads GUNICORN_THREADS and WEB_CONCURRENCY. (A closed loop of
    200 texters needs workers x threads >= 200 turns in flight to reach N/L; try
    ``--alt GUNICORN_THREADS=100`` for that.)
    """
    try:
        workers = int(settings.get("workers", 2))
        threads = int(settings.get("threads", 8))
    except ValueError:
        workers, threads = 2, 8
    return [{"GUNICORN_THREADS": str(threads * 2)}, {"WEB_CONCURRENCY": str(workers * 2)}]


def _p99(run: dict[str, Any]) -> str:
    return "unanswered (over 30 s)" if run["p99"] >= 30 else f"{run['p99']:.1f} s"


def concurrency_notes(conc: dict[str, Any]) -> list[str]:
    """Say in words what the alternative settings changed."""
    notes = []
    top = max(conc["runs"], key=lambda r: r["texters"]) if conc["runs"] else None
    if top is None:
        return notes
    for alt in conc["alternatives"]:
        setting = ", ".join(f"`{k}={v}`" for k, v in alt["env"].items())
        moved = alt["settings"].get("threads") != conc["settings"].get("threads") or \
            alt["settings"].get("workers") != conc["settings"].get("workers")
        if not moved:
            notes.append(f"- {setting} did not change gunicorn's workers or threads "
                         "(the config does not read it).")
            continue
        notes.append(
            f"- {setting} (workers={alt['settings'].get('workers')}, "
            f"threads={alt['settings'].get('threads')}): "
            f"at N = {alt['texters']} throughput {top['throughput']:.1f} -> {alt['throughput']:.1f} turns/s, "
            f"p99 {_p99(top)} -> {_p99(alt)}, within 15 s {top['within_15s']:.0%} -> "
            f"{alt['within_15s']:.0%}, RSS per worker up to {max(alt['rss_mb'] or [0]):.0f} MB."
        )
    return notes


def main(argv: list[str] | None = None) -> int:
    """Run the selected parts against a fresh DynamoDB Local and write the note."""
    args = parse_args(argv)
    fake_aws_credentials()
    from localpeers.dynamodb_local import DynamoDBLocal

    parts = set(args.parts)
    given = argv if argv is not None else sys.argv[1:]
    command = "make bench" if argv is None and not given \
        else "python -m scripts.bench " + " ".join(shlex.quote(a) for a in given)
    results: dict[str, Any] = {"machine": machine(), "command": command.strip()}
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    with DynamoDBLocal() as ddb:
        log(f"DynamoDB Local on {ddb.endpoint_url}")
        if "storage" in parts:
            from scripts.bench import bench_storage

            log("part 1: storage cost per turn")
            results["storage"] = bench_storage.run(ddb.endpoint_url, sizes=tuple(args.sizes),
                                                   repeats=args.repeats, log=log)
        if "webhook" in parts:
            from scripts.bench import bench_webhook

            log("part 2: webhook overhead")
            results["webhook"] = bench_webhook.run(ddb.endpoint_url, turns=args.webhook_turns, log=log)
        if "concurrency" in parts:
            from scripts.bench import bench_concurrency

            log("part 3: concurrency under gunicorn")
            alternatives = args.alt
            if alternatives is None:
                try:
                    env = {k: v for k, v in __import__("os").environ.items()
                           if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY"))}
                    argv_default = bench_concurrency.procfile_command(8000)
                    settings = bench_concurrency.gunicorn_settings(argv_default, env)
                    alternatives = default_alternatives(settings)
                except (FileNotFoundError, ValueError):
                    alternatives = []
            conc = bench_concurrency.run(ddb.endpoint_url, texters=args.texters, latency=args.latency,
                                         duration=args.duration, alternatives=alternatives, log=log,
                                         ddb_pid=ddb.process.pid if ddb.process else None)
            if not conc.get("skipped"):
                try:
                    capacity = int(conc["settings"]["workers"]) * int(conc["settings"]["threads"])
                except (KeyError, ValueError):
                    capacity = None
                conc["crossing"] = bench_concurrency.crossing(conc["runs"], capacity, args.latency)
                conc["notes"] = concurrency_notes(conc)
            results["concurrency"] = conc
        if "cost" in parts:
            from scripts.bench import bench_cost

            log("part 4: memory and cost per 1,000 texts")
            results["cost"] = bench_cost.run(ddb.endpoint_url, log=log)
        if "async" in parts:
            from scripts.bench import bench_async

            log("part 5: replies that outlive the webhook (async and auto modes)")
            scenarios = bench_async.default_scenarios(
                texters=args.async_texters, async_latency=args.async_latency, auto_latency=args.auto_latency,
                duration=args.async_duration, burst_numbers=args.burst_numbers,
                burst_latency=args.burst_latency, names=args.async_scenarios)
            results["async"] = bench_async.run(ddb.endpoint_url, scenarios=scenarios, log=log,
                                               ddb_pid=ddb.process.pid if ddb.process else None)
    results["elapsed_s"] = time.monotonic() - started

    from scripts.bench import report, report_async

    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if "cost" in results:
        report.write_cost_sections(results["cost"], [ROOT / "README.md"], level="###")
    if parts == {"cost"} and args.out.exists():
        report.write_cost_sections(results["cost"], [args.out])
        log(f"updated the cost sections of {args.out} and README.md")
        return 0
    if parts == {"async"} and args.out.exists():
        # Part 5 alone replaces only its own section (which carries its own targets table).
        report_async.write_section(results, args.out)
        log(f"updated part 5 of {args.out}")
        _log_targets(report_async.targets(results["async"]), log)
        return 0
    report.write(results, args.out, args.out.with_suffix(".png"))
    log(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    _log_targets(report.targets(results), log)
    return 0


def _log_targets(rows: list[tuple[str, str, str, bool | None, str]], log: Any) -> None:
    for target, goal, measured, met, _ in rows:
        log(f"  {target}: {measured} (goal {goal}) {'MET' if met else ('MISSED' if met is False else '')}")


if __name__ == "__main__":
    sys.exit(main())
