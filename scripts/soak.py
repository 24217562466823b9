"""Soak run: the Procfile's gunicorn against DynamoDB Local under steady mixed traffic.

``make soak`` (or ``python -m scripts.soak --seconds 600``) starts DynamoDB Local, a fake
model (localpeers/fake_openai.py, answering after ``--latency`` seconds) and gunicorn exactly as
the Procfile says, then keeps sending a mix of traffic for the set time: texts from new and
known numbers, bursts from one number, Twilio-style retries of a text already answered,
resets, STOP / text / START, operator reads and erasures. Every text is signed as Twilio
signs it; the rate limits stay at their defaults.

It reports per period (a minute by default): texts, replies, losses, duplicates, errors,
p50/p99 reply time and the resident memory of each worker (a leak shows as a slope), and at
the end compares what DynamoDB Local holds with what the traffic should have left there.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from localpeers.dynamodb_local import DynamoDBLocal
from scripts.bench.bench_concurrency import TOKEN, Server
from scripts.bench.common import fake_aws_credentials, percentile, rss_mb

MIN_SECONDS, MAX_SECONDS = 10, 3600
ADMIN_TOKEN = "soak-admin-token-" + uuid.uuid4().hex
REPLY = "mrrp. the soak cat answers every text"
BOT_NUMBER = "+15005550006"
# Share of actions of each kind; a burst is four texts at once from one number.
MIX = {"new": 20, "text": 33, "burst": 8, "retry": 10, "reset": 5, "stop_start": 5, "read": 12, "erase": 7}
TIMEOUT = 30.0


def seconds_from(text: str | None) -> float:
    """Return the soak length in seconds, bounded to [10, 3600]."""
    value = float(text) if text else 600.0
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"the soak lasts {MIN_SECONDS} to {MAX_SECONDS} seconds, not {value:g}"
        )
    return value


@dataclass
class Period:
    """Figures for one period of the run."""

    texts: int = 0
    replies: int = 0
    losses: int = 0
    duplicates: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    actions: Counter = field(default_factory=Counter)


class Soak:
    """The traffic generator and its bookkeeping."""

    def __init__(self, server: Server, seconds: float, period: float, rate: float, seed: int) -> None:
        self.server = server
        self.seconds = seconds
        self.period = period
        self.rate = rate
        self.rng = random.Random(seed)
        self.validator = RequestValidator(TOKEN)
        self.url = f"http://127.0.0.1:{server.port}/sms"
        self.started = 0.0
        self.periods: dict[int, Period] = defaultdict(Period)
        self.lock = threading.Lock()
        self.numbers: list[str] = []          # live numbers (not erased)
        self.busy: set[str] = set()           # numbers with an action in flight
        self.erased: set[str] = set()
        self.stored_texts: dict[str, set[str]] = defaultdict(set)    # number -> sids answered 200
        self.answered: dict[str, str] = {}                             # sid -> reply body
        self.sent: dict[str, dict[str, str]] = {}                      # sid -> form (for retries)

    # ------------------------------------------------------------ bookkeeping

    def _now_period(self) -> Period:
        return self.periods[int((time.monotonic() - self.started) // self.period)]

    def _take_number(self, new: bool) -> str | None:
        with self.lock:
            if new or not self.numbers:
                number = f"+1555{self.rng.randrange(10**7):07d}"
                if number in self.erased or number in self.numbers:
                    return None
                self.numbers.append(number)
            else:
                free = [n for n in self.numbers if n not in self.busy]
                if not free:
                    return None
                number = self.rng.choice(free)
            self.busy.add(number)
            return number

    def _release(self, number: str) -> None:
        with self.lock:
            self.busy.discard(number)

    # ---------------------------------------------------------------- requests

    def _http(self, method: str, path: str, body: str | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=TIMEOUT)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def text(self, number: str, body: str, *, sid: str | None = None, opt_out: str | None = None) -> None:
        """Send one signed text (or re-send a known one); count what came back."""
        retry = sid is not None
        form = self.sent.get(sid) if retry else None
        if form is None:
            sid = "SM" + uuid.uuid4().hex
            form = {"MessageSid": sid, "AccountSid": "AC" + "1" * 32, "From": number, "To": BOT_NUMBER,
                    "Body": body, "NumMedia": "0", "NumSegments": "1"}
            if opt_out:
                form["OptOutType"] = opt_out
            self.sent[sid] = form
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": self.validator.compute_signature(self.url, form)}
        started = time.monotonic()
        try:
            status, data = self._http("POST", "/sms", urlencode(form), headers)
            messages = [m.text or "" for m in ET.fromstring(data).iter("Message")] if status == 200 else None
        except (OSError, http.client.HTTPException, ET.ParseError):
            status, messages = 0, None
        elapsed = time.monotonic() - started
        with self.lock:
            period = self._now_period()
            period.latencies.append(elapsed)
            if not retry:
                period.texts += 1
            if messages is None:
                period.losses += 1
                return
            self.stored_texts[number].add(sid)
            reply = messages[0] if messages else None
            if retry:
                if self.answered.get(sid) != reply:
                    period.duplicates += 1  # a retry must get the same answer, or none twice
            elif reply is not None:
                self.answered[sid] = reply
                period.replies += 1

    def api(self, method: str, path: str) -> tuple[int, Any]:
        """Call the operator API; count anything but a 2xx as an error."""
        try:
            status, data = self._http(method, f"/api/v1{path}",
                                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            document = json.loads(data) if data else None
        except (OSError, http.client.HTTPException, ValueError):
            status, document = 0, None
        if not 200 <= status < 300:
            with self.lock:
                self._now_period().errors += 1
        return status, document

    # ----------------------------------------------------------------- actions

    def act(self, kind: str) -> None:
        """Do one action of the mix on a number nobody else is using."""
        number = self._take_number(new=kind == "new")
        if number is None:
            return
        try:
            with self.lock:
                self._now_period().actions[kind] += 1
            if kind in ("new", "text"):
                self.text(number, f"hello cat, soak text {self.rng.randrange(10**6)}")
            elif kind == "burst":
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda i: self.text(number, f"burst {i}"), range(4)))
            elif kind == "retry":
                sids = [sid for sid in self.stored_texts.get(number, ()) if sid in self.answered]
                if sids:
                    self.text(number, "", sid=self.rng.choice(sorted(sids)))
                else:
                    self.text(number, "first text before a retry")
            elif kind == "reset":
                self.text(number, "reset")
            elif kind == "stop_start":
                self.text(number, "STOP", opt_out="STOP")
                self.text(number, "are you still there?")  # recorded, unanswered
                self.text(number, "START", opt_out="START")
            elif kind == "read":
                self.api("GET", f"/numbers/{number}/conversations")
            elif kind == "erase":
                status, _ = self.api("DELETE", f"/numbers/{number}")
                if status == 200:
                    with self.lock:
                        self.numbers.remove(number)
                        self.erased.add(number)
                        self.stored_texts.pop(number, None)
        finally:
            self._release(number)

    def run(self) -> None:
        """Send the mix at a steady rate for the set time, sampling worker memory each period."""
        kinds = list(MIX)
        weights = [MIX[k] for k in kinds]
        self.started = time.monotonic()
        ends = self.started + self.seconds
        next_sample = self.started
        interval = 1.0 / self.rate
        with ThreadPoolExecutor(32) as pool:
            tick = self.started
            while (now := time.monotonic()) < ends:
                if now >= next_sample:
                    rss = [rss_mb(pid) for pid in sorted(self.server.worker_pids())]
                    with self.lock:
                        self._now_period().rss = rss
                    next_sample += self.period
                pool.submit(self.act, self.rng.choices(kinds, weights)[0])
                tick += interval
                time.sleep(max(0.0, tick - time.monotonic()))
        # The pool's exit waited for the last texts; the memory at the very end belongs to the last period.
        last = max(self.periods) if self.periods else 0
        self.periods[last].rss = [rss_mb(pid) for pid in sorted(self.server.worker_pids())]

    # ------------------------------------------------------------------ checks

    def check_store(self) -> dict[str, Any]:
        """Compare what the operator export and DynamoDB Local hold with what the traffic left."""
        expected_texts = sum(len(sids) for sids in self.stored_texts.values())
        found_texts = found_replies = duplicate_replies = missing = 0
        live_items = 0
        for number in list(self.numbers):
            _, document = self.api("GET", f"/numbers/{number}/export")
            conversations = (document or {}).get("conversations", [])
            live_items += int(bool((document or {}).get("user"))) + len(conversations)
            messages = [m for c in conversations for m in c.get("messages", [])]
            live_items += len(messages)
            texts = {m["message_id"] for m in messages if m["role"] == "user"}
            # A reply answers its own text and every text of a burst it names (``covers``). A rate
            # notice is not an answer: a burst's turn may read a text before its notice is stored.
            covering = [
                ({m.get("reply_to"), *((m.get("metadata") or {}).get("covers") or ())} - {None},
                 bool((m.get("metadata") or {}).get("notice")))
                for m in messages if m["role"] == "assistant"
            ]
            replies = Counter(sid for sids, notice in covering if not notice for sid in sids)
            noticed = {sid for sids, notice in covering if notice for sid in sids}
            found_texts += len(texts & self.stored_texts[number])
            missing += len(self.stored_texts[number] - texts)
            found_replies += sum(1 for sid in set(replies) | noticed if sid in self.answered)
            duplicate_replies += sum(count - 1 for count in replies.values() if count > 1)
        leftovers = 0
        for number in self.erased:
            _, document = self.api("GET", f"/numbers/{number}/export")
            document = document or {}
            leftovers += len(document.get("conversations", [])) + int(bool(document.get("user")))
        expected_replies = sum(1 for number in self.numbers for sid in self.stored_texts[number]
                               if self.answered.get(sid) is not None)
        return {
            "texts_expected": expected_texts, "texts_found": found_texts, "texts_missing": missing,
            "replies_expected": expected_replies, "replies_found": found_replies,
            "duplicate_replies": duplicate_replies, "erased_numbers": len(self.erased),
            "erased_leftovers": leftovers, "live_numbers": len(self.numbers),
            "items_for_live_numbers": live_items, "items_in_table": count_items(self.server),
        }


def count_items(server: Server) -> int:
    """Count every item in the soak's table (a paginated Scan with Select=COUNT)."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=server.endpoint_url, region_name="us-east-1")
    total, kwargs = 0, {"TableName": server.table, "Select": "COUNT"}
    while True:
        page = client.scan(**kwargs)
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            client.close()
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def report(soak: Soak, store: dict[str, Any], args: argparse.Namespace, took: float) -> str:
    """Return the run as Markdown: settings, one row per period, totals and the store check."""
    unit = "min" if args.period == 60 else f"{args.period:g} s"
    lines = [
        f"Soak: {args.seconds:g} s of mixed traffic at {args.rate:g} actions/s "
        f"(mix: {', '.join(f'{k} {v}%' for k, v in MIX.items())}), fake model latency {args.latency:g} s, "
        f"gunicorn {soak.server.settings.get('workers')} workers x {soak.server.settings.get('threads')} "
        f"threads, DynamoDB Local in memory; whole run {took:.0f} s.",
        "",
        f"| {unit} | texts | replies | losses | duplicates | errors | p50 s | p99 s | RSS per worker MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    total = Period()
    for index in sorted(soak.periods):
        period = soak.periods[index]
        for name in ("texts", "replies", "losses", "duplicates", "errors"):
            setattr(total, name, getattr(total, name) + getattr(period, name))
        total.latencies += period.latencies
        p50 = percentile(period.latencies, 50) if period.latencies else float("nan")
        p99 = percentile(period.latencies, 99) if period.latencies else float("nan")
        rss = ", ".join(f"{value:.0f}" for value in period.rss) or "-"
        lines.append(f"| {index + 1} | {period.texts} | {period.replies} | {period.losses} | "
                     f"{period.duplicates} | {period.errors} | {p50:.2f} | {p99:.2f} | {rss} |")
    p50 = percentile(total.latencies, 50) if total.latencies else float("nan")
    p99 = percentile(total.latencies, 99) if total.latencies else float("nan")
    lines.append(f"| all | {total.texts} | {total.replies} | {total.losses} | {total.duplicates} | "
                 f"{total.errors} | {p50:.2f} | {p99:.2f} | |")
    lines += [
        "",
        f"Store: texts stored {store['texts_found']} of {store['texts_expected']} expected "
        f"({store['texts_missing']} missing); replies stored {store['replies_found']} of "
        f"{store['replies_expected']} expected; {store['duplicate_replies']} texts with more than one reply; "
        f"{store['erased_numbers']} numbers erased, {store['erased_leftovers']} of their records left; "
        f"DynamoDB Local holds {store['items_in_table']} items, {store['items_for_live_numbers']} of them "
        f"the {store['live_numbers']} live numbers' user, conversation and message items (the rest are "
        "MessageSid markers, rate counters and daily figures).",
    ]
    return "\n".join(lines)


def failures(soak: Soak, store: dict[str, Any]) -> list[str]:
    """Return what went wrong in a way that must fail the soak."""
    problems = []
    losses = sum(p.losses for p in soak.periods.values())
    duplicates = sum(p.duplicates for p in soak.periods.values()) + store["duplicate_replies"]
    if losses:
        problems.append(f"{losses} texts got no answer")
    if duplicates:
        problems.append(f"{duplicates} duplicate answers")
    if store["texts_missing"]:
        problems.append(f"{store['texts_missing']} answered texts are not stored")
    if store["erased_leftovers"]:
        problems.append(f"{store['erased_leftovers']} records of erased numbers remain")
    if sum(p.errors for p in soak.periods.values()):
        problems.append("operator API errors")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its report; exit 1 when texts were lost, duplicated or left behind."""
    parser = argparse.ArgumentParser(prog="python -m scripts.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=seconds_from, default=seconds_from(os.environ.get("SOAK_SECONDS")),
                        help=f"seconds of traffic, {MIN_SECONDS}-{MAX_SECONDS} (default 600 or SOAK_SECONDS)")
    parser.add_argument("--period", type=float, default=60.0, help="seconds per report row (default 60)")
    parser.add_argument("--rate", type=float, default=4.0, help="actions started per second (default 4)")
    parser.add_argument("--latency", type=float, default=0.5, help="fake model latency, s (default 0.5)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    fake_aws_credentials()
    began = time.monotonic()
    with DynamoDBLocal() as ddb:
        extra = {"ADMIN_API_TOKEN": ADMIN_TOKEN, "RATE_LIMIT_PER_MINUTE": "6", "RATE_LIMIT_PER_DAY": "200"}
        ddb_pid = ddb.process.pid if ddb.process else None
        with Server(ddb.endpoint_url, args.latency, REPLY, extra, ddb_pid) as server:
            print(f"soak: {args.seconds:g} s on port {server.port}", file=sys.stderr, flush=True)
            soak = Soak(server, args.seconds, args.period, args.rate, args.seed)
            soak.run()
            store = soak.check_store()
    took = time.monotonic() - began
    print(report(soak, store, args, took))
    if args.json:
        names = ("texts", "replies", "losses", "duplicates", "errors")
        periods = {index: {**{k: getattr(p, k) for k in names},
                           "p50": percentile(p.latencies, 50) if p.latencies else None,
                           "p99": percentile(p.latencies, 99) if p.latencies else None,
                           "rss_mb": p.rss, "actions": dict(p.actions)}
                   for index, p in sorted(soak.periods.items())}
        with open(args.json, "w") as out:
            json.dump({"periods": periods, "store": store, "seconds": args.seconds}, out, indent=1)
    problems = failures(soak, store)
    for problem in problems:
        print(f"soak: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
