"""Per-day usage figures kept at write time, so a dashboard never scans the table.

Each UTC day has ``SHARDS`` small items, each on its own partition key, and a
turn adds its figures to one of them (picked at random) with a single
``UpdateItem ... ADD``: concurrent turns never conflict, no item grows, and
no partition takes more than its share of the writes. Model latency is kept
as counts per latency bucket, which is enough for percentiles. Reading a
period is BatchGetItem on its ``days * SHARDS`` keys (100 keys per request),
whatever the traffic was. The store keeps the shards (``DailyFigures`` in conversation/store.py);
this module owns the figures, the sharding and the latency buckets.

The bot does not write per turn: :meth:`DailyStats.defer` sums a turn's figures in
the process and a flush writes each day's sum with one such UpdateItem, at most
once per ``flush_seconds`` (a timer started on the first deferred figure, in the
process that serves), before every read, and when the process exits. A process
killed outright (SIGKILL) loses at most the figures of its last ``flush_seconds``.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from conversation.errors import StorageError
from conversation.models import utc_now
from conversation.store import Coordination, DailyFigures

log = logging.getLogger(__name__)

SHARDS = 4
# Upper bounds of the latency buckets, in milliseconds; one more bucket holds the rest.
LATENCY_BOUNDS_MS = (100, 250, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 12000)
FIGURES = (
    "texts",             # new inbound texts stored (retries of one text count once)
    "replies",           # replies stored, whoever wrote them
    "fallbacks",         # replies not written by the configured first model
    "tokens",            # model tokens (prompt and completion)
    "segments",          # SMS segments of the replies
    "model_calls",       # requests to the model, retries included
    "delivery_failures", # replies Twilio reported undelivered or failed
    "active_numbers",    # numbers whose first text of the UTC day this was
)
# Aggregates outlive the longest dashboard period comfortably, then TTL removes them.
KEEP_DAYS = 400
# Deferred figures are written at most this often per process (and at exit).
FLUSH_SECONDS = 10.0


def _start_timer(seconds: float, work: Callable[[], None]) -> None:
    """Run ``work`` once after ``seconds`` on a daemon thread (the default scheduler)."""
    timer = threading.Timer(seconds, work)
    timer.daemon = True
    timer.name = "dadacat-daily-figures"
    timer.start()


@dataclass
class DayStats:
    """The figures of one UTC day, summed over its shards."""

    day: date
    figures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIGURES, 0))
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def __getitem__(self, name: str) -> int:
        return self.figures[name]

    @property
    def fallback_rate(self) -> float | None:
        """Return the share of replies written by a fallback, or None without replies."""
        replies = self.figures["replies"]
        return self.figures["fallbacks"] / replies if replies else None

    def latency_percentile(self, share: float) -> int | None:
        """Return the bucket bound under which ``share`` of model latencies fall (ms), or None.

        A latency over the last bound reports as that bound's double: the figure
        is an upper estimate, never an invented precision.
        """
        total = sum(self.latency)
        if not total:
            return None
        wanted = share * total
        running = 0
        for index, count in enumerate(self.latency):
            running += count
            if running >= wanted and count:
                return bucket_bound(index)
        return bucket_bound(len(self.latency) - 1)


def bucket_bound(index: int) -> int:
    """Return the upper bound (ms) of latency bucket ``index``."""
    if index < len(LATENCY_BOUNDS_MS):
        return LATENCY_BOUNDS_MS[index]
    return LATENCY_BOUNDS_MS[-1] * 2


class DailyFiguresStore(DailyFigures, Coordination, Protocol):
    """What the day's figures need of a store: the figure shards, and a counter per number."""


def latency_bucket(latency_ms: float) -> int:
    """Return the index of the bucket a latency falls in."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


class DailyStats:
    """Add a turn's figures to today's aggregates and read them back per day.

    :param storage: the store that keeps the figure shards (DynamoDB, or in memory).
    :param clock: returns the current aware UTC datetime; tests move days with it.
    """

    def __init__(
        self,
        storage: DailyFiguresStore,
        *,
        shards: int = SHARDS,
        clock: Callable[[], datetime] = utc_now,
        pick: Callable[[int], int] = random.randrange,
        flush_seconds: float = FLUSH_SECONDS,
        schedule: Callable[[float, Callable[[], None]], None] = _start_timer,
    ) -> None:
        self.storage = storage
        self.shards = shards
        self.clock = clock
        self.pick = pick
        self.flush_seconds = flush_seconds
        self.schedule = schedule
        # Figures deferred in this process and not written yet, per UTC day.
        self._pending: dict[date, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._flush_due = False
        self._pid: int | None = None  # the process whose exit flushes (a forked child re-registers)

    def add(self, figures: Mapping[str, int], *, latency_ms: float | None = None) -> None:
        """Add figures (names from FIGURES) and one model latency to today, in one write."""
        amounts = _amounts(figures, latency_ms)
        if amounts:
            self._write(self.clock().date(), amounts)

    def defer(self, figures: Mapping[str, int], *, latency_ms: float | None = None) -> None:
        """Add figures to today without a write now: summed in this process and written by
        the next flush (at most ``flush_seconds`` away, before a read, or at exit)."""
        amounts = _amounts(figures, latency_ms)
        if not amounts:
            return
        today = self.clock().date()
        with self._lock:
            pending = self._pending.setdefault(today, {})
            for name, value in amounts.items():
                pending[name] = pending.get(name, 0) + value
            if self._pid != os.getpid():
                # Registered lazily, in the process that serves (gunicorn forks after create_app).
                self._pid, self._flush_due = os.getpid(), False
                atexit.register(self._flush_later)
            start = not self._flush_due
            self._flush_due = True
        if start:
            self.schedule(self.flush_seconds, self._flush_later)

    def _flush_later(self) -> None:
        """Flush from the timer or at exit: a failure is logged, never raised."""
        try:
            self.flush()
        except StorageError as exc:  # kept for the next flush
            log.warning("could not write the day's figures (kept for the next try): %s", exc)
        except Exception:
            log.exception("could not write the day's figures")

    def flush(self) -> None:
        """Write the deferred figures: one write per day with any.

        Figures a failed write could not store are kept for the next flush, and the
        error is raised.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flush_due = False
        failure: StorageError | None = None
        for day, amounts in sorted(pending.items()):
            try:
                self._write(day, amounts)
            except StorageError as exc:
                failure = exc
                with self._lock:
                    kept = self._pending.setdefault(day, {})
                    for name, value in amounts.items():
                        kept[name] = kept.get(name, 0) + value
        if failure is not None:
            with self._lock:
                start = not self._flush_due
                self._flush_due = True
            if start:
                self.schedule(self.flush_seconds, self._flush_later)
            raise failure

    def _write(self, day: date, amounts: dict[str, int]) -> None:
        """Add ``amounts`` (figures and latency buckets) to one shard of ``day``."""
        now = self.clock()
        self.storage.add_figures(day.isoformat(), self.pick(self.shards), amounts,
                                 expires_at=int(now.timestamp()) + KEEP_DAYS * 86400)

    def first_text_today(self, number: str) -> bool:
        """Count a text from ``number`` today; True when it is the number's first of the day.

        One UpdateItem on a per-number counter that TTL removes after two days.
        """
        day = self.clock().strftime("%Y%m%d")
        return self.storage.increment_counter(number, f"seen_{day}", 1, expires_in=2 * 86400) == 1

    def read(self, days: int) -> list[DayStats]:
        """Return the last ``days`` UTC days, oldest first (today last); days without traffic are zeros.

        This process's deferred figures are written first, so they are included.
        """
        if not 1 <= days <= KEEP_DAYS:
            raise ValueError(f"days must be between 1 and {KEEP_DAYS}")
        try:
            self.flush()
        except StorageError as exc:
            log.warning("could not write the day's figures before reading them: %s", exc)
        today = self.clock().date()
        wanted = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
        found = self.storage.read_figures(
            [(day.isoformat(), shard) for day in wanted for shard in range(self.shards)])
        result = []
        for day in wanted:
            stats = DayStats(day)
            for shard in range(self.shards):
                figures = found.get((day.isoformat(), shard))
                if figures is None:
                    continue
                for name in FIGURES:
                    stats.figures[name] += figures.get(name, 0)
                for index in range(len(stats.latency)):
                    stats.latency[index] += figures.get(f"lat_{index}", 0)
            result.append(stats)
        return result


def _amounts(figures: Mapping[str, int], latency_ms: float | None) -> dict[str, int]:
    """Return the non-zero figures and the latency's bucket as attribute amounts."""
    amounts = {name: int(value) for name, value in figures.items() if value}
    unknown = set(amounts) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figures: {', '.join(sorted(unknown))}")
    if latency_ms is not None:
        amounts[f"lat_{latency_bucket(latency_ms)}"] = 1
    return amounts
