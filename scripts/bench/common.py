"""Shared pieces of the benchmarks: capacity metering, statistics, texts, machine facts."""

from __future__ import annotations

import os
import platform
import random
import statistics
import string
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Realistic SMS sizes: a texter writes about one short sentence, DadaCat
# answers within two segments (REPLY_MAX_CHARS is 306, two GSM-7 segments).
USER_CHARS = 80
REPLY_CHARS = 250

READ_OPS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
DATA_OPS = READ_OPS | WRITE_OPS


def fake_aws_credentials() -> None:
    """Point boto3 at throwaway credentials (DynamoDB Local ignores them)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


def sms_text(rng: random.Random, chars: int) -> str:
    """Return a GSM-7 text of exactly ``chars`` characters made of short words."""
    words: list[str] = []
    length = 0
    while length < chars:
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 8)))
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars]


@dataclass
class Usage:
    """Requests, capacity and bytes consumed by a stretch of DynamoDB calls."""

    requests: int = 0
    rcu: float = 0.0
    wcu: float = 0.0
    write_bytes: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    # WCU DynamoDB Local reported for writes other than transactions, and the
    # items of each successful transaction, priced afterwards by ``billed_wcu``.
    plain_wcu: float = 0.0
    tx_items: list[dict[str, Any]] = field(default_factory=list)


class CapacityMeter:
    """Count DynamoDB requests, consumed capacity and bytes sent by write requests.

    Attached to a boto3 client through botocore's event hooks, so the code under
    test is unchanged: the hook adds ``ReturnConsumedCapacity=TOTAL`` to every
    data-plane call that accepts it and sums what DynamoDB reports back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.usage = Usage()

    def attach(self, client: Any) -> Any:
        """Register the hooks on a client and return the client."""
        events = client.meta.events
        events.register("before-parameter-build.dynamodb.*", self._ask_for_capacity)
        events.register("before-send.dynamodb.*", self._count_request)
        events.register("after-call.dynamodb.*", self._add_capacity)
        return client

    def _ask_for_capacity(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in DATA_OPS and "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")
        if model.name == "TransactWriteItems":
            self._local.tx = list(params.get("TransactItems", []))

    def _count_request(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if operation not in DATA_OPS:
            return None
        body = request.body or b""
        with self._lock:
            self.usage.requests += 1
            self.usage.calls[operation] = self.usage.calls.get(operation, 0) + 1
            if operation in WRITE_OPS:
                self.usage.write_bytes += len(body)
        return None  # a value here would replace the HTTP response

    def _add_capacity(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name not in DATA_OPS:
            return
        consumed = parsed.get("ConsumedCapacity") or []
        # Single-item calls return one dict; transactions and batches a list.
        if isinstance(consumed, dict):
            consumed = [consumed]
        read = write = 0.0
        for entry in consumed:
            units = float(entry.get("CapacityUnits", 0.0))
            if "ReadCapacityUnits" in entry or "WriteCapacityUnits" in entry:
                read += float(entry.get("ReadCapacityUnits", 0.0))
                write += float(entry.get("WriteCapacityUnits", 0.0))
            elif model.name in READ_OPS:
                read += units
            else:
                write += units
        code = (parsed.get("Error") or {}).get("Code")
        tx = getattr(self._local, "tx", None) if model.name == "TransactWriteItems" else None
        self._local.tx = None
        with self._lock:
            self.usage.rcu += read
            self.usage.wcu += write
            if code:
                self.usage.errors[code] = self.usage.errors.get(code, 0) + 1
            elif tx is not None:
                self.usage.tx_items.extend(tx)
            elif model.name in WRITE_OPS:
                self.usage.plain_wcu += write

    @contextmanager
    def measure(self) -> Iterator[Usage]:
        """Yield a Usage filled in with what the calls inside the block consumed."""
        result = Usage()
        with self._lock:
            self.usage = Usage()
        yield result
        with self._lock:
            used, self.usage = self.usage, Usage()
        result.__dict__.update(used.__dict__)


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), = value.items()
    if kind in ("S", "B"):
        return len(inner.encode() if isinstance(inner, str) else inner)
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(v)) for v in inner)
    return 0


def item_size(item: dict[str, Any]) -> int:
    """Return an item's size by DynamoDB's documented rules (names plus values)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def billed_wcu(usage: Usage, client: Any) -> float:
    """Price a stretch of writes by AWS's documented rules.

    DynamoDB Local reports a transaction's capacity as if items with the same
    rounded size were one item (three 300-byte puts report 2.0, not 6.0), so
    transactions are priced here instead: 2 WCU per started KB of each item,
    Puts by the item sent, Updates by the stored item read back afterwards
    (its size after the write; before it is a few bytes smaller at most).
    Index writes are not included (see the report).
    """
    total = usage.plain_wcu
    for entry in usage.tx_items:
        (kind, spec), = entry.items()
        if kind == "Put":
            size = item_size(spec["Item"])
        else:
            response = client.get_item(TableName=spec["TableName"], Key=spec["Key"], ConsistentRead=True)
            size = item_size(response.get("Item") or spec["Key"])
        total += 2 * max(1, -(-size // 1024))
    return total


def median(values: list[float]) -> float:
    """Return the median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], pct: float) -> float:
    """Return the nearest-rank percentile (pct in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(pct / 100.0 * len(ordered) + 0.4999))))
    return ordered[rank - 1]


class Stopwatch:
    """Measure wall time with perf_counter."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def machine() -> dict[str, Any]:
    """Describe the machine: CPU model, cores, memory, Python, OS, load, date."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    java = "unknown"
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        java = (out.stderr or out.stdout).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "os": platform.platform(),
        "java": java,
        "load": os.getloadavg(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def rss_mb(pid: int) -> float:
    """Return a process's resident memory in MB from /proc (NaN if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """Return a process's user + system CPU time so far, all threads (NaN if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """Return (busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick
