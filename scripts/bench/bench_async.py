"""Part 5: replies that outlive the webhook (REPLY_MODE=async and auto) under gunicorn.

gunicorn runs with the Procfile's settings against DynamoDB Local, the fake model
(localpeers/fake_openai.py in its own process, answering after L seconds) and the
fake Messages API (localpeers/fake_twilio.py, in a process of its own), which the app's
official ``twilio`` client reaches through TWILIO_API_BASE_URL. Scenarios:

- **closed loop**: N texters with distinct numbers, each sends a signed text, waits
  until its reply arrives (in the TwiML answer, or at the fake Messages API) and sends
  the next at once; starts are spread over the first L seconds, so the ideal is N/L
  turns per second from then on. Every text must get exactly one reply.
- **bursts**: several numbers each send 5 texts within 1 s (each webhook in its own
  connection, not waiting for the last); counted are the replies, the model calls and
  whether every text reached the model in some request.

Everything the texters see is checked against what the fake Messages API recorded
and what the fake model was asked, not against the app's own logs.
"""

from __future__ import annotations

import http.client
import importlib.util
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from scripts.bench.bench_concurrency import TOKEN, Server
from scripts.bench.common import cpu_seconds, machine_busy, median, percentile, rss_mb
from scripts.bench.ddb_counter import CountingProxy

MODEL_REPLY = "prrt. the slow cat thought it over: the moon is a cursor blinking over tuesday, meow."
ACCOUNT_SID = "AC" + "2" * 32
BOT_NUMBER = "+15005550006"
DEADLINE = 15.0  # Twilio gives up on a webhook after about 15 s
POLL = 0.05  # seconds between looks at the fake Messages API's record


def is_model_reply(body: str) -> bool:
    """Return True when a reply is the fake model's text (the app may trim it on a word boundary)."""
    return body[:40] == MODEL_REPLY[:40]


class Outbox:
    """The messages the fake Messages API received, by recipient, with the time each was seen.

    One thread looks at the fake's record every POLL seconds and wakes the texters
    waiting on a number; ``seen`` times are at most POLL late.
    """

    def __init__(self, messages: Callable[[], list[dict[str, Any]]]) -> None:
        self._messages = messages
        self._taken = 0
        self._by_number: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-outbox", daemon=True)

    def start(self) -> Outbox:
        """Start watching."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (after one last look)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._look()

    def _look(self) -> None:
        messages = self._messages()
        if len(messages) <= self._taken:
            return
        now = time.monotonic()
        with self._changed:
            for message in messages[self._taken:]:
                self._by_number[str(message.get("to") or message.get("To"))].append(
                    (now, str(message.get("body") or message.get("Body") or "")))
            self._taken = len(messages)
            self._changed.notify_all()

    def _watch(self) -> None:
        while not self._stop.wait(POLL):
            self._look()

    def count(self, number: str) -> int:
        """Return how many messages have been sent to ``number`` so far."""
        with self._changed:
            return len(self._by_number.get(number, ()))

    def received(self, number: str) -> list[tuple[float, str]]:
        """Return (seen at, body) of every message sent to ``number``."""
        with self._changed:
            return list(self._by_number.get(number, ()))

    def wait_beyond(self, number: str, count: int, timeout: float) -> tuple[float, str] | None:
        """Wait until ``number`` has more than ``count`` messages; return the next one, or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._by_number.get(number, ())) <= count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return self._by_number[number][count]

    def total(self) -> int:
        """Return how many messages have been sent in all."""
        with self._changed:
            return self._taken


@dataclass
class Turn:
    """One text and what became of it."""

    number: str
    sent_at: float
    webhook_s: float
    status: int
    via: str  # "twiml", "rest" or "none" (no reply within the wait)
    answered_at: float | None = None
    reply: str | None = None


class Phone:
    """One number texting the bot, signing each request as Twilio does."""

    def __init__(self, port: int, number: str) -> None:
        self.port = port
        self.number = number
        self.url = f"http://127.0.0.1:{port}/sms"
        self.validator = RequestValidator(TOKEN)

    def post(self, body: str) -> tuple[int, float, list[str]]:
        """Send one text; return (HTTP status, seconds to the answer, TwiML message bodies)."""
        form = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": ACCOUNT_SID, "From": self.number,
                "To": BOT_NUMBER, "Body": body, "NumMedia": "0", "NumSegments": "1"}
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": self.validator.compute_signature(self.url, form)}
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", "/sms", body=urlencode(form), headers=headers)
            response = connection.getresponse()
            data = response.read()
            status = response.status
            bodies = [m.text or "" for m in ET.fromstring(data).iter("Message")] if status == 200 else []
        except (OSError, http.client.HTTPException, ET.ParseError):
            status, bodies = 0, []
        finally:
            connection.close()
        return status, time.monotonic() - started, bodies


def turn(phone: Phone, outbox: Outbox, body: str, answer_timeout: float) -> Turn:
    """Send one text and wait for its reply, in the TwiML answer or at the Messages API."""
    before = outbox.count(phone.number)
    sent_at = time.monotonic()
    status, seconds, bodies = phone.post(body)
    record = Turn(phone.number, sent_at, seconds, status, "none")
    if bodies:
        record.via, record.answered_at, record.reply = "twiml", sent_at + seconds, bodies[0]
        return record
    arrived = outbox.wait_beyond(phone.number, before, max(0.0, sent_at + answer_timeout - time.monotonic()))
    if arrived is not None:
        record.via, record.answered_at, record.reply = "rest", arrived[0], arrived[1]
    return record


@dataclass
class Sampler:
    """Peak resident memory of each gunicorn worker, sampled while a load runs."""

    server: Server
    peak: dict[int, float] = field(default_factory=dict)

    def sample(self) -> None:
        """Read every worker's RSS once."""
        for pid in self.server.worker_pids():
            self.peak[pid] = max(self.peak.get(pid, 0.0), rss_mb(pid))


def closed_loop(server: Server, outbox: Outbox, *, texters: int, latency: float, duration: float,
                answer_timeout: float) -> dict[str, Any]:
    """Run N closed-loop texters for ``duration`` seconds; return the figures."""
    turns: list[Turn] = []
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + duration
    prefix = uuid.uuid4().hex[:4]

    def loop(index: int) -> None:
        # Spread the starts over the first L seconds: from then on the loop is steady.
        time.sleep(index * latency / texters)
        phone = Phone(server.port, f"+1556{index:07d}")
        count = 0
        while time.monotonic() < stop_at:
            record = turn(phone, outbox, f"text {count} from {prefix}-{index}: what colour is tuesday?",
                          answer_timeout)
            count += 1
            with lock:
                turns.append(record)

    sampler = Sampler(server)
    workers = server.worker_pids()
    cpu_before = sum(cpu_seconds(pid) for pid in workers)
    ddb_before = cpu_seconds(server.ddb_pid) if server.ddb_pid else float("nan")
    busy_before = machine_busy()
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(texters)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        sampler.sample()
        if time.monotonic() > stop_at + answer_timeout + 5:
            break
        time.sleep(0.5)
    cpu = sum(cpu_seconds(pid) for pid in workers) - cpu_before
    ddb_cpu = (cpu_seconds(server.ddb_pid) if server.ddb_pid else float("nan")) - ddb_before
    busy_after = machine_busy()
    machine_load = (busy_after[0] - busy_before[0]) / max(1e-9, busy_after[1] - busy_before[1])
    hung = sum(thread.is_alive() for thread in threads)
    time.sleep(1.0)  # a reply sent twice would arrive around now
    outbox_counts = {number: outbox.count(number) for number in {t.number for t in turns}}
    figures = summarise(turns, outbox_counts, hung=hung, start=start, stop_at=stop_at, texters=texters,
                        latency=latency, duration=duration, sampler=sampler, cpu_seconds=cpu,
                        model_calls=count_model_calls(server.model_requests(), prefix))
    figures["ddb_cpu_ms_per_turn"] = ddb_cpu * 1000 / max(1, len(turns))
    figures["cpu_busy"] = machine_load
    return figures


def count_model_calls(requests: list[Any], tag: str) -> int:
    """Return how many model requests (not memory summaries) mention ``tag``."""
    return sum(1 for body in requests if tag in _request_text(body) and not _is_summary(body))


def _request_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    parts = []
    for message in body.get("messages") or body.get("input") or []:
        content = message.get("content") if isinstance(message, dict) else message
        parts.append(content if isinstance(content, str) else str(content))
    return "\n".join(parts)


def _is_summary(body: Any) -> bool:
    return isinstance(body, dict) and "Memory so far:" in _request_text(body)


def summarise(turns: list[Turn], outbox_counts: dict[str, int], *, hung: int, start: float, stop_at: float,
              texters: int, latency: float, duration: float, sampler: Sampler, cpu_seconds: float,
              model_calls: int) -> dict[str, Any]:
    """Turn the texters' records into the scenario's figures."""
    texts: dict[str, int] = defaultdict(int)
    twiml: dict[str, int] = defaultdict(int)
    for record in turns:
        texts[record.number] += 1
        twiml[record.number] += record.via == "twiml"
    lost = doubled = 0
    for number, sent in texts.items():
        replies = twiml[number] + outbox_counts.get(number, 0)
        lost += max(0, sent - replies)
        doubled += max(0, replies - sent)
    window_start = start + latency
    window = max(1e-9, stop_at - window_start)
    # Only the model's replies are turns: an offline reply (a failed store, say) comes back at once
    # and would flatter the figure.
    in_window = [t for t in turns if t.answered_at is not None and window_start <= t.answered_at <= stop_at
                 and is_model_reply(t.reply or "")]
    webhook = [t.webhook_s for t in turns]
    reply_times = [t.answered_at - t.sent_at for t in turns if t.answered_at is not None]
    ideal = texters / latency
    throughput = len(in_window) / window
    answered = [t for t in turns if t.via != "none"]
    return {
        "texters": texters,
        "latency": latency,
        "duration": duration,
        "texts": len(turns),
        "still_waiting": hung,
        "answered": len(answered),
        "via_twiml": sum(t.via == "twiml" for t in turns),
        "via_rest": sum(t.via == "rest" for t in turns),
        "unanswered": len(turns) - len(answered) + hung,
        "lost": lost + hung,
        "doubled": doubled,
        "offline_replies": sum(1 for t in answered if not is_model_reply(t.reply or "")),
        "not_200": sum(1 for t in turns if t.status != 200),
        "model_calls": model_calls,
        "throughput": throughput,
        "ideal": ideal,
        "efficiency": throughput / ideal,
        "webhook_p50_ms": median(webhook) * 1000,
        "webhook_p99_ms": percentile(webhook, 99) * 1000,
        "webhook_max_s": max(webhook, default=float("nan")),
        "webhook_over_15s": sum(1 for s in webhook if s > DEADLINE),
        "reply_p50_s": median(reply_times),
        "reply_p99_s": percentile(reply_times, 99),
        "rss_mb": sorted(round(v, 1) for v in sampler.peak.values()),
        "app_cpu_ms_per_turn": cpu_seconds * 1000 / max(1, len(turns)),
    }


def bursts(server: Server, outbox: Outbox, *, numbers: int, texts: int, spread: float,
           latency: float) -> dict[str, Any]:
    """Send ``texts`` texts within ``spread`` seconds from each of ``numbers`` numbers at once."""
    prefix = uuid.uuid4().hex[:4]
    results: dict[str, list[tuple[int, float, list[str]]]] = defaultdict(list)
    lock = threading.Lock()

    def send(phone: Phone, index: int, body: str) -> None:
        time.sleep(index * spread / max(1, texts - 1))
        answer = phone.post(body)
        with lock:
            results[phone.number].append(answer)

    phones = {f"+1557{i:07d}": Phone(server.port, f"+1557{i:07d}") for i in range(numbers)}
    tags = {number: f"{prefix}-{i}" for i, number in enumerate(phones)}
    bodies = {number: [f"burst {tags[number]} text {k}: hey" for k in range(texts)] for number in phones}
    threads = [threading.Thread(target=send, args=(phone, k, bodies[number][k]), daemon=True)
               for number, phone in phones.items() for k in range(texts)]
    for thread in threads:
        thread.start()
    # Done when every webhook has answered, every text reached the model and each model
    # call has its reply; then a moment more for anything sent twice.
    deadline = time.monotonic() + 4 * latency + 60
    requests: list[Any] = []
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if any(thread.is_alive() for thread in threads):
            continue
        requests = server.model_requests()
        if all(_settled(number, bodies[number], tags[number], requests, results, outbox)
               for number in phones):
            break
    time.sleep(2.0)
    requests = server.model_requests()
    rows = []
    for number in phones:
        texts_seen = [body for body in bodies[number] if any(body in _request_text(r) for r in requests)]
        twiml = sum(len(answer[2]) for answer in results[number])
        rest = outbox.received(number)
        replies = [b for answer in results[number] for b in answer[2]] + [body for _, body in rest]
        rows.append({
            "texts": texts,
            "webhooks_200": sum(1 for answer in results[number] if answer[0] == 200),
            "webhook_max_s": max((answer[1] for answer in results[number]), default=float("nan")),
            "replies_twiml": twiml,
            "replies_rest": len(rest),
            "model_replies": sum(1 for body in replies if is_model_reply(body)),
            "other_replies": sum(1 for body in replies if not is_model_reply(body)),
            "model_calls": count_model_calls(requests, tags[number]),
            "texts_in_a_model_request": len(texts_seen),
        })
    return {"numbers": numbers, "texts": texts, "spread": spread, "latency": latency, "rows": rows,
            "totals": {key: sum(row[key] for row in rows) for key in rows[0] if key != "webhook_max_s"}
            | {"webhook_max_s": max(row["webhook_max_s"] for row in rows)}}


def _settled(number: str, bodies: list[str], tag: str, requests: list[Any],
             results: dict[str, list[tuple[int, float, list[str]]]], outbox: Outbox) -> bool:
    seen = all(any(body in _request_text(r) for r in requests) for body in bodies)
    replies = sum(len(answer[2]) for answer in results[number]) + outbox.count(number)
    return seen and replies >= count_model_calls(requests, tag)


def request_counts(server: Server, outbox: Outbox, counter: CountingProxy, *, phones: int, turns: int,
                   latency: float, idle: float) -> dict[str, Any]:
    """Count the DynamoDB requests of steady turns (numbers that have texted before).

    ``phones`` numbers text in parallel, each waiting for its reply before the next text. The
    sweeper's Queries of the work partitions are background work, not a turn's: they are
    counted over ``idle`` seconds with no texts (0: not measured) and given per minute.
    """
    numbers = [Phone(server.port, f"+1558{i:07d}") for i in range(phones)]

    def texts(count: int, label: str) -> list[Turn]:
        out: list[Turn] = []
        lock = threading.Lock()

        def one(phone: Phone) -> None:
            for k in range(count):
                record = turn(phone, outbox, f"{label} {k}: what colour is tuesday?", latency + 60)
                with lock:
                    out.append(record)

        threads = [threading.Thread(target=one, args=(phone,)) for phone in numbers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1.0)  # the turn's last writes come after the reply
        return out

    texts(2, "first")  # a number's first text also creates its records
    before = counter.counts()
    time.sleep(idle)
    background = _minus(counter.counts(), before) if idle else {}
    before = counter.counts()
    records = texts(turns, "steady")
    used = _minus(counter.counts(), before)
    sweeps = {op: n for op, n in used.items() if op.startswith("Query (work item)")}
    per_turn = {op: n / len(records) for op, n in used.items() if op not in sweeps}
    return {
        "turns": len(records),
        "via_twiml": sum(r.via == "twiml" for r in records),
        "via_rest": sum(r.via == "rest" for r in records),
        "unanswered": sum(r.via == "none" for r in records),
        "per_turn": per_turn,
        "requests_per_turn": sum(per_turn.values()),
        "background_per_minute": {op: n * 60 / idle for op, n in background.items()},
        "idle_s": idle,
        "webhook_p50_ms": median([r.webhook_s for r in records]) * 1000,
    }


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {op: n - before.get(op, 0) for op, n in after.items() if n - before.get(op, 0)}


@dataclass
class Scenario:
    """One load to run: a mode, a model latency and a shape of traffic."""

    name: str
    mode: str
    latency: float
    texters: int = 0  # closed loop
    duration: float = 0.0
    burst_numbers: int = 0  # bursts
    count_requests: bool = False  # DynamoDB requests per steady turn
    idle: float = 0.0  # seconds without texts over which background requests are counted
    env: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Return "bursts", "requests" or "closed loop"."""
        return "bursts" if self.burst_numbers else ("requests" if self.count_requests else "closed loop")


def default_scenarios(*, texters: int, async_latency: float, auto_latency: float, duration: float | None,
                      burst_numbers: int, burst_latency: float, names: list[str]) -> list[Scenario]:
    """Return the issue's scenarios, scaled by the command line."""
    every = {
        "async": Scenario("async", "async", async_latency, texters=texters,
                          duration=duration or 4 * async_latency),
        "auto": Scenario("auto", "auto", auto_latency, texters=texters,
                         duration=duration or 15 * auto_latency),
        "sync": Scenario("sync", "sync", auto_latency, texters=texters,
                         duration=duration or 15 * auto_latency),
        "bursts-auto": Scenario("bursts-auto", "auto", burst_latency, burst_numbers=burst_numbers),
        "bursts-async": Scenario("bursts-async", "async", burst_latency, burst_numbers=burst_numbers),
        # A quick model (TwiML path in auto), then the same turns in async mode; the sweeper's
        # background is counted once, over two sweeps (RECOVERY_SECONDS / 4 apart by default).
        "requests-auto": Scenario("requests-auto", "auto", 0.2, count_requests=True),
        "requests-async": Scenario("requests-async", "async", 0.2, count_requests=True, idle=30.0),
    }
    return [every[name] for name in names]


SCENARIOS = ("async", "auto", "bursts-auto", "bursts-async", "requests-auto", "requests-async", "sync")


def app_env(scenario: Scenario, fake_twilio_url: str) -> dict[str, str]:
    """Return the app settings a scenario runs with (on top of the concurrency part's)."""
    env = {
        "REPLY_MODE": scenario.mode,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_API_BASE_URL": fake_twilio_url,
        # Every text in flight may wait on the model at once: allow N per worker (the
        # setting bounds turns in flight per process; a full pool leaves work to the sweeper).
        "REPLY_WORKERS": str(max(32, scenario.texters)),
        # DynamoDB Local on a shared 2-core machine can take seconds per request under this
        # load (the service does not); with the default 3 s a queue there turns into failed
        # stores and offline replies, which would measure the machine, not the reply path.
        "DYNAMODB_READ_TIMEOUT": "10",
    }
    env.update(scenario.env)
    return env


def fake_messages_api(callbacks: bool = True) -> Any:
    """Return the fake Messages API (localpeers/fake_twilio.py) in a process of its own, not yet started."""
    from scripts.bench.remote_twilio import RemoteFakeTwilio

    # The app's account and token: the fake checks the REST calls' Basic auth with them and
    # signs the delivery status callbacks it posts back to the app, as Twilio does.
    return RemoteFakeTwilio(ACCOUNT_SID, TOKEN, callbacks=callbacks)


def run(endpoint_url: str, *, scenarios: list[Scenario], log: Callable[[str], None],
        fake_twilio: Callable[[bool], Any] = fake_messages_api, ddb_pid: int | None = None) -> dict[str, Any]:
    """Run each scenario on a fresh gunicorn, fake model and fake Messages API."""
    if fake_twilio is fake_messages_api and importlib.util.find_spec("localpeers.fake_twilio") is None:
        log("  async: no fake Messages API (localpeers/fake_twilio.py); skipped")
        return {"skipped": "the fake Messages API (localpeers/fake_twilio.py) was not available"}
    out: dict[str, Any] = {"scenarios": []}
    for scenario in scenarios:
        # Status callbacks are posted as Twilio posts them, except while counting requests: a
        # TwiML reply's callbacks would not be posted by the fake, so neither path gets them there.
        with fake_twilio(not scenario.count_requests) as messages_api, CountingProxy(endpoint_url) as counter:
            outbox = Outbox(lambda api=messages_api: api_messages(api)).start()
            env = app_env(scenario, messages_api.base_url)
            # Only the counting scenario goes through the proxy: it costs a hop per request.
            storage_url = counter.endpoint_url if scenario.count_requests else endpoint_url
            try:
                with AsyncServer(storage_url, scenario.latency, MODEL_REPLY, env, ddb_pid) as server:
                    started = time.monotonic()
                    if scenario.count_requests:
                        figures = request_counts(server, outbox, counter, phones=4, turns=5,
                                                 latency=scenario.latency, idle=scenario.idle)
                    elif scenario.kind == "bursts":
                        figures = bursts(server, outbox, numbers=scenario.burst_numbers, texts=5, spread=1.0,
                                         latency=scenario.latency)
                    else:
                        figures = closed_loop(server, outbox, texters=scenario.texters,
                                              latency=scenario.latency, duration=scenario.duration,
                                              answer_timeout=scenario.latency + 90)
                    figures["wall_s"] = time.monotonic() - started
                    figures["settings"] = {**server.settings, **{k: v for k, v in env.items()
                                                                 if not k.startswith("TWILIO_")}}
            finally:
                outbox.stop()
        figures.update(name=scenario.name, mode=scenario.mode, kind=scenario.kind)
        out["scenarios"].append(figures)
        log("  " + describe(figures))
    return out


def api_messages(api: Any) -> list[dict[str, Any]]:
    """Return the messages the fake Messages API recorded, as dicts with "to" and "body"."""
    records = api.messages
    return [record if isinstance(record, dict) else vars(record) for record in records]


class AsyncServer(Server):
    """The concurrency part's gunicorn and fake model, warmed without waiting on replies."""

    def warm(self) -> None:
        """Send one text per worker thread's worth of numbers; their replies are not counted."""
        phones = [Phone(self.port, f"+1555000{i:04d}") for i in range(4)]
        threads = [threading.Thread(target=phone.post, args=("warming up",)) for phone in phones]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def describe(figures: dict[str, Any]) -> str:
    """Return one console line for a scenario's figures."""
    if figures["kind"] == "requests":
        ops = ", ".join(f"{n:.1f} {op}" for op, n in sorted(figures["per_turn"].items()))
        return (f"{figures['name']}: {figures['requests_per_turn']:.1f} DynamoDB requests per steady turn "
                f"({ops}); {figures['via_twiml']} TwiML / {figures['via_rest']} REST of {figures['turns']}; "
                f"background per minute {figures['background_per_minute']}")
    if figures["kind"] == "bursts":
        t = figures["totals"]
        return (f"{figures['name']}: {figures['numbers']} numbers x {figures['texts']} texts in "
                f"{figures['spread']:g} s, L={figures['latency']:g} s: replies {t['replies_twiml']} TwiML + "
                f"{t['replies_rest']} REST ({t['other_replies']} not from the model), model calls "
                f"{t['model_calls']}, texts in a model request {t['texts_in_a_model_request']} of "
                f"{figures['numbers'] * figures['texts']}, webhook max {t['webhook_max_s']:.2f} s")
    return (f"{figures['name']}: N={figures['texters']} L={figures['latency']:g} s: "
            f"{figures['throughput']:.1f} turns/s of ideal {figures['ideal']:.1f} "
            f"({figures['efficiency']:.0%}); "
            f"texts {figures['texts']}, answered {figures['answered']} ({figures['via_twiml']} TwiML, "
            f"{figures['via_rest']} REST), lost {figures['lost']}, doubled {figures['doubled']}, "
            f"offline {figures['offline_replies']}; webhook p50 {figures['webhook_p50_ms']:.0f} ms "
            f"p99 {figures['webhook_p99_ms']:.0f} ms max {figures['webhook_max_s']:.2f} s; reply p50 "
            f"{figures['reply_p50_s']:.1f} s p99 {figures['reply_p99_s']:.1f} s; RSS {figures['rss_mb']} MB; "
            f"CPU ms per turn app {figures['app_cpu_ms_per_turn']:.0f} / DynamoDB Local "
            f"{figures['ddb_cpu_ms_per_turn']:.0f}, machine {figures['cpu_busy']:.0%} busy")


__all__ = ["SCENARIOS", "Scenario", "default_scenarios", "run", "describe", "Outbox"]
