"""One text's turn as plain data: its timings and figures, and the outcome the handler returns.

No Flask here: the view starts a ``Turn`` with the reply deadline, the text handler
fills it in and returns an ``Outcome``, and the view logs the turn and answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.replies import Reply
from conversation import StorageError
from conversation.clock import Clock, SystemClock
from conversation.daily_stats import DailyStats
from conversation.models import Message

# The webhook's logger: operators filter the turn's lines by this one name.
log = logging.getLogger("app.webhook")

# Time kept back from the model for storing its reply before the deadline: this many
# seconds, or this share of the deadline when that is less.
REPLY_STORE_SECONDS = 1.5
REPLY_STORE_SHARE = 0.15


@dataclass(frozen=True)
class Outcome:
    """How a text was answered: a name for the log and metrics, the line to send (or none),
    and whether Twilio should report the reply's delivery."""

    kind: str
    answer: str | None = None
    track_delivery: bool = False
    # The text the answer replies to, when not the one posted (a burst answered at once).
    reply_to_sid: str | None = None


@dataclass
class Turn:
    """Timings and outcome of one request, logged as one line at the end."""

    clock: Clock = field(default_factory=SystemClock, repr=False)
    started: float = 0.0
    deadline: float = 0.0
    sid: str = "-"
    number: str | None = None
    marks: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # Figures for the day's aggregates (conversation.daily_stats), written once at the end.
    figures: dict[str, int] = field(default_factory=dict)
    latency_ms: float | None = None
    # Work the answer does not need, run in order after it (see app/bounded.py).
    after: list[Callable[[], Any]] = field(default_factory=list)
    # Run after all of that (the turn lease's release, so the next text waits for it all).
    last: list[Callable[[], Any]] = field(default_factory=list)

    @classmethod
    def begin(cls, deadline_seconds: float, clock: Clock | None = None) -> Turn:
        """Start timing a request that must be answered within ``deadline_seconds`` (on ``clock``)."""
        turn = cls(clock=clock or SystemClock())
        turn.started = turn.clock.monotonic()
        turn.deadline = turn.started + deadline_seconds
        return turn

    @property
    def model_deadline(self) -> float:
        """Return the instant the model must answer by, leaving time to store its reply."""
        total = self.deadline - self.started
        return self.deadline - min(REPLY_STORE_SECONDS, REPLY_STORE_SHARE * total)

    def run_after(self) -> None:
        """Run the work queued for after the answer, in order; one failure does not stop the rest."""
        for work in [*self.after, *self.last]:
            try:
                work()
            except Exception:
                log.exception("sms sid=%s: work after the answer failed", self.sid)

    def mark(self, name: str, since: float) -> None:
        """Record how long a step took, in milliseconds."""
        self.marks[name] = (self.clock.monotonic() - since) * 1000

    def count(self, **figures: int) -> None:
        """Add figures to this turn's contribution to today's aggregates."""
        for name, value in figures.items():
            self.figures[name] = self.figures.get(name, 0) + int(value)

    def add_reply(self, reply: Message, counters: dict[str, int]) -> None:
        """Count a newly stored reply and what it used."""
        self.count(replies=1, fallbacks=int(bool(reply.metadata.get("fallback"))), **counters)


def add_figures(stats: DailyStats, turn: Turn) -> None:
    """Add a finished turn's figures to today's aggregates (after the answer); a failure is logged.

    They are summed in the process and written with others' at most every few seconds
    (see conversation.daily_stats), not once per turn.
    """
    try:
        stats.defer(turn.figures, latency_ms=turn.latency_ms)
    except StorageError as exc:
        log.warning("sms sid=%s: could not add to the daily figures: %s", turn.sid, exc)


def tokens_of(reply: Reply) -> int:
    """The total tokens a reply used (0 when it says nothing)."""
    usage = getattr(reply, "usage", None) or {}
    return int(usage.get("total_tokens") or 0)
