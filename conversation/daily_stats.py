"""Per-day usage figures kept at write time, so a dashboard never scans the table.

Each UTC day has ``SHARDS`` small items, each on its own partition key, and a
turn adds its figures to one of them (picked at random) with a single
``UpdateItem ... ADD``: concurrent turns never conflict, no item grows, and
no partition takes more than its share of the writes. Model latency is kept
as counts per latency bucket, which is enough for percentiles. Reading a
period is BatchGetItem on its ``days * SHARDS`` keys (100 keys per request),
whatever the traffic was. The store keeps the shards (``DailyFigures`` in conversation/store.py);
this module owns the figures, the sharding and the latency buckets.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from conversation.models import utc_now
from conversation.store import Coordination, DailyFigures

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
    ) -> None:
        self.storage = storage
        self.shards = shards
        self.clock = clock
        self.pick = pick

    def add(self, figures: Mapping[str, int], *, latency_ms: float | None = None) -> None:
        """Add figures (names from FIGURES) and one model latency to today, in one write."""
        amounts = {name: int(value) for name, value in figures.items() if value}
        unknown = set(amounts) - set(FIGURES)
        if unknown:
            raise ValueError(f"unknown figures: {', '.join(sorted(unknown))}")
        if latency_ms is not None:
            amounts[f"lat_{latency_bucket(latency_ms)}"] = 1
        if not amounts:
            return
        now = self.clock()
        self.storage.add_figures(now.date().isoformat(), self.pick(self.shards), amounts,
                                 expires_at=int(now.timestamp()) + KEEP_DAYS * 86400)

    def first_text_today(self, number: str) -> bool:
        """Count a text from ``number`` today; True when it is the number's first of the day.

        One UpdateItem on a per-number counter that TTL removes after two days.
        """
        day = self.clock().strftime("%Y%m%d")
        return self.storage.increment_counter(number, f"seen_{day}", 1, expires_in=2 * 86400) == 1

    def read(self, days: int) -> list[DayStats]:
        """Return the last ``days`` UTC days, oldest first (today last); days without traffic are zeros."""
        if not 1 <= days <= KEEP_DAYS:
            raise ValueError(f"days must be between 1 and {KEEP_DAYS}")
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
