"""The async part's headline rows and section of docs/benchmarks.md (part 5)."""

# Markdown rows and sentences read best unbroken in the source too.
# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path
from typing import Any

START = "<!-- bench:async:start (make bench writes this section; --parts async alone refreshes it) -->"
END = "<!-- bench:async:end -->"

Row = tuple[str, str, str, bool | None, str]


def _loops(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in results.get("scenarios", []) if s["kind"] == "closed loop"]


def _bursts(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in results.get("scenarios", []) if s["kind"] == "bursts"]


def _counts(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in results.get("scenarios", []) if s["kind"] == "requests"]


def targets(results: dict[str, Any]) -> list[Row]:
    """Return the headline rows for the scenarios that ran."""
    rows: list[Row] = []
    if results.get("skipped"):
        return [("replies that outlive the webhook", "", "not measured", None, results["skipped"])]
    for run in _loops(results):
        label = f"{run['mode']}, N={run['texters']}, L={run['latency']:g} s"
        clean = run["lost"] == 0 and run["doubled"] == 0 and run["unanswered"] == 0
        answered = (f"{run['answered']} of {run['texts']} texts answered ({run['via_twiml']} TwiML, "
                    f"{run['via_rest']} REST), {run['lost']} lost, {run['doubled']} doubled")
        if run["mode"] == "async":
            rows.append((f"{label}: throughput", ">= 90% of N/L",
                         f"{run['throughput']:.1f}/s = {run['efficiency']:.0%} of {run['ideal']:.1f}/s",
                         run["efficiency"] >= 0.9, ""))
            rows.append((f"{label}: every text answered once", "0 lost, 0 doubled", answered, clean, ""))
            ok = run["webhook_p50_ms"] <= 50 and run["webhook_p99_ms"] <= 1000
            rows.append((f"{label}: webhook answer time p50 / p99", "<= 50 ms / <= 1 s",
                         f"{run['webhook_p50_ms']:.0f} ms / {run['webhook_p99_ms']:.0f} ms", ok, ""))
        elif run["mode"] == "auto":
            rows.append((f"{label}: every webhook within 15 s", "all",
                         f"max {run['webhook_max_s']:.1f} s, {run['webhook_over_15s']} over 15 s",
                         run["webhook_over_15s"] == 0 and run["not_200"] == 0, ""))
            rows.append((f"{label}: every text answered once", "0 lost, 0 doubled", answered, clean, ""))
        else:
            rows.append((f"{label}: every text answered once", "0 lost, 0 doubled", answered, clean,
                         "sync mode: replies only in the TwiML answer"))
    for run in _bursts(results):
        t = run["totals"]
        texts = run["numbers"] * run["texts"]
        ok = (t["model_calls"] < texts and t["texts_in_a_model_request"] == texts
              and t["model_replies"] >= run["numbers"] and t["other_replies"] == 0)
        rows.append((f"bursts ({run['mode']}): {run['texts']} texts in {run['spread']:g} s, L={run['latency']:g} s, x{run['numbers']} numbers",
                     "fewer model calls than texts; every text in a model request",
                     f"{t['model_calls']} model calls for {texts} texts, {t['texts_in_a_model_request']} texts in a request, "
                     f"{t['model_replies']} replies ({t['other_replies']} not from the model)", ok, ""))
    for run in _counts(results):
        quick = run["mode"] == "auto"
        rows.append((f"DynamoDB requests per steady turn, {run['mode']}"
                     + (" (quick model: the TwiML path)" if quick else ""),
                     "<= 4" if quick else "report", f"{run['requests_per_turn']:.1f}",
                     run["requests_per_turn"] <= 4 if quick else None, ""))
    loops = _loops(results)
    if loops:
        top = max(loops, key=lambda r: max(r["rss_mb"] or [0.0]))
        rss = max(top["rss_mb"] or [float("nan")])
        rows.append(("RSS per worker at the largest load", "report",
                     f"{rss:.0f} MB (largest worker; {top['mode']}, N={top['texters']}, "
                     f"REPLY_WORKERS={top['settings'].get('REPLY_WORKERS', '?')})", None, ""))
    return rows


def write_section(results: dict[str, Any], path: Path) -> None:
    """Replace part 5 between its markers in ``path`` (appended when missing)."""
    block = "\n".join([START, *section(results["async"], results), END])
    text = path.read_text(encoding="utf-8")
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def section(results: dict[str, Any], run: dict[str, Any] | None = None) -> list[str]:
    """Return part 5 of the note: its targets, how it was measured and its tables.

    ``run`` (the whole run's results) adds the command, date and machine, since
    ``--parts async`` rewrites this section alone.
    """
    out = ["## 5. Replies that outlive the webhook (REPLY_MODE=async and auto)", ""]
    if results.get("skipped"):
        return out + [f"Not measured: {results['skipped']}.", ""]
    if run:
        m = run["machine"]
        load = m["load"]
        out.append(f"Measured by `{run['command']}` on {m['date']} ({m['cores']} cores, load average "
                   f"{load[0]:.1f} at the start; the machine was shared with other work).")
        out.append("")
    out.append("| target | goal | measured | met? |")
    out.append("|---|---|---|---|")
    for target, goal, measured, met, _ in targets(results):
        out.append(f"| {target} | {goal} | {measured} | {'yes' if met else ('no' if met is False else '-')} |")
    out.append("")
    scenarios = results.get("scenarios", [])
    settings = scenarios[0]["settings"] if scenarios else {}
    out.append(
        f"gunicorn started exactly as the Procfile says (`{settings.get('command', '?')}`: "
        f"workers={settings.get('workers', '?')}, threads={settings.get('threads', '?')}) against DynamoDB "
        "Local, the fake model (its own process, answering every request after L seconds) and the fake "
        "Messages API (`localpeers/fake_twilio.py`, its own process too: it answers the sends and posts "
        "each message's status callbacks, sent and delivered, back to the app, signed as Twilio signs "
        "them), which the app's official `twilio` client reaches "
        "through `TWILIO_API_BASE_URL`. Each scenario gets a fresh gunicorn, table and fake. "
        "`REPLY_WORKERS` (background turns in flight per worker) is set to N so that every texter's turn "
        "can wait on the model at once, and `DYNAMODB_READ_TIMEOUT=10` (DynamoDB Local on this shared "
        "machine can take seconds per request under load; with the default 3 s its queue turns into failed "
        "stores, which measures the machine rather than the reply path); everything else is at its default. "
        "Rate limits and budgets are off."
    )
    out.append("")
    out.append(
        "**Closed loop:** N texters with distinct numbers; each sends a signed text, waits until its "
        "reply arrives (in the TwiML answer, or at the fake Messages API) and sends the next at once. "
        "Starts are spread over the first L seconds, so the ideal is N/L turns per second; throughput "
        "counts replies that arrived between L seconds after the start and the end of the load. "
        "*Lost* is a text with no reply at all (TwiML or Messages API), *doubled* a text with more than "
        "one, counted per number from what the fake Messages API recorded plus the TwiML answers, a "
        "second after the last reply. *Webhook* is the time from sending the request to its HTTP "
        "answer (the load generator gives up after 60 s, so 60 s means no answer at all; Twilio gives up "
        "after 15 s, and the text still counts as answered if its reply arrives through the Messages API); "
        "*no answer* counts those webhooks; *reply* the time until the reply arrived. *Offline* replies are ones that are not the "
        "fake model's text (the offline persona answered)."
    )
    out.append("")
    loops = _loops(results)
    if loops:
        out.append("| scenario | N | L s | turns/s | ideal N/L | of ideal | texts | TwiML / REST | lost | doubled | offline | webhook p50 ms | webhook p99 ms | webhook max s | no answer | reply p50 s | reply p99 s | model calls | RSS per worker MB |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for run in loops:
            out.append(
                f"| {run['mode']} | {run['texters']} | {run['latency']:g} | {run['throughput']:.1f} | "
                f"{run['ideal']:.1f} | {run['efficiency']:.0%} | {run['texts']} | {run['via_twiml']} / "
                f"{run['via_rest']} | {run['lost']} | {run['doubled']} | {run['offline_replies']} | "
                f"{run['webhook_p50_ms']:.0f} | {run['webhook_p99_ms']:.0f} | {run['webhook_max_s']:.2f} | "
                f"{run['not_200']} | "
                f"{run['reply_p50_s']:.1f} | {run['reply_p99_s']:.1f} | {run['model_calls']} | "
                f"{', '.join(f'{v:.0f}' for v in run['rss_mb'])} |"
            )
        out.append("")
        for run in loops:
            extra = {k: v for k, v in run["settings"].items()
                     if k in ("REPLY_MODE", "REPLY_WORKERS", "SYNC_REPLY_SECONDS", "RECOVERY_SECONDS",
                              "MODEL_TIMEOUT_SECONDS", "DYNAMODB_READ_TIMEOUT")}
            out.append(f"- {run['mode']}: {run['duration']:g} s of load, {run['wall_s']:.0f} s in all; "
                       + ", ".join(f"`{k}={v}`" for k, v in extra.items())
                       + f"; CPU per turn: app {run['app_cpu_ms_per_turn']:.0f} ms, DynamoDB Local "
                       f"{run.get('ddb_cpu_ms_per_turn', float('nan')):.0f} ms; the machine's 2 cores "
                       f"were {run.get('cpu_busy', float('nan')):.0%} busy (all processes, this run and others').")
        out.append("")
        ceilings = "; ".join(
            f"{r['mode']}: {r['app_cpu_ms_per_turn'] + r.get('ddb_cpu_ms_per_turn', float('nan')):.0f} ms, "
            f"so at most about {2000 / (r['app_cpu_ms_per_turn'] + r.get('ddb_cpu_ms_per_turn', float('nan'))):.0f} "
            f"turns/s against an ideal N/L of {r['ideal']:.0f}/s" for r in loops)
        out.append(
            "What limits it here: a turn's CPU (the app plus DynamoDB Local, which runs on the same cores and "
            "is far heavier per request than the service) caps what 2 cores can finish even with nothing else "
            f"running ({ceilings}), and the machine was shared. Past that the closed loop's "
            "texts queue for the CPU: in DynamoDB Local (so the webhooks' own writes wait behind the background "
            "turns') and in gunicorn's accept queue. In async mode gunicorn's threads are not the limit (a "
            "background turn waits on the model on the reply pool, not on a gunicorn thread); in auto mode each "
            "webhook holds one while it waits for the reply, up to `SYNC_REPLY_SECONDS`."
        )
        out.append("")
    counts = _counts(results)
    if counts:
        out.append(
            "**DynamoDB requests per turn:** for these scenarios only, the app reaches DynamoDB Local "
            "through a counting proxy (`scripts/bench/ddb_counter.py`), so every request of every "
            "worker and its background threads is counted by the operation in `X-Amz-Target` "
            "(\"work item\" marks requests on the work items). A few numbers text one after another "
            "with a quick model (0.2 s); each number's first two turns are not counted (a first text "
            "also creates the number's records). The sweeper's Queries of the work partitions are "
            "background, counted over an idle stretch (two sweeps at the default `RECOVERY_SECONDS`) and given per minute for the whole app (all workers). Delivery "
            "status callbacks are off here (each costs the same requests whichever path sent the reply)."
        )
        out.append("")
        out.append("| scenario | steady turns | TwiML / REST | requests per turn | by operation | background per minute |")
        out.append("|---|---:|---|---:|---|---|")
        for run in counts:
            ops = ", ".join(f"{n:.1f} {op}" for op, n in sorted(run["per_turn"].items()))
            idle = (", ".join(f"{n:.0f} {op}" for op, n in sorted(run["background_per_minute"].items())) or "none"
                    ) if run.get("idle_s") else "not measured here"
            out.append(f"| {run['name']} | {run['turns']} | {run['via_twiml']} / {run['via_rest']} | "
                       f"{run['requests_per_turn']:.1f} | {ops} | {idle} |")
        out.append("")
    bursts = _bursts(results)
    if bursts:
        out.append(
            "**Bursts:** each of several numbers sends 5 texts within 1 s, every webhook in its own "
            "connection without waiting for the one before (as Twilio delivers a burst). Counted per "
            "scenario: replies (TwiML and Messages API), model calls (requests that show the number's "
            "texts; memory summaries excluded) and how many texts appeared in at least one model request."
        )
        out.append("")
        out.append("| scenario | numbers x texts | L s | replies TwiML / REST | not from the model | model calls | texts in a model request | webhook max s |")
        out.append("|---|---|---:|---|---:|---:|---:|---:|")
        for run in bursts:
            t = run["totals"]
            out.append(
                f"| {run['name']} | {run['numbers']} x {run['texts']} | {run['latency']:g} | "
                f"{t['replies_twiml']} / {t['replies_rest']} | {t['other_replies']} | {t['model_calls']} | "
                f"{t['texts_in_a_model_request']} of {run['numbers'] * run['texts']} | {t['webhook_max_s']:.2f} |"
            )
        out.append("")
    return out
