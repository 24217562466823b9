"""Abuse and cost control, and one-at-a-time turns per number.

Everything that must hold across gunicorn workers and instances lives in
DynamoDB (atomic counters with TTL, a conditional lease item), never in
process memory. Windows are fixed (the current UTC minute, the current UTC
day), which costs one UpdateItem per window per text.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.config import Settings
from conversation.clock import Clock, SystemClock
from conversation.guards import CounterCap
from conversation.store import Coordination

log = logging.getLogger(__name__)

# Counters outlive their window a little, so a late reader still sees them;
# TTL then sweeps them away for free.
_MINUTE_TTL = 180
_DAY_TTL = 2 * 86400


def normalize_number(number: str) -> str:
    """Return a phone number without spaces, dashes, dots or brackets (E.164 stays as is)."""
    return "".join(char for char in number.strip() if char not in " -.()\t")


@dataclass(frozen=True)
class RateVerdict:
    """Whether a number may have this text answered by the model.

    ``notice`` names the window ("minute" or "day") whose limit this text is the
    first to exceed: that text gets one short notice, later ones silence.
    """

    allowed: bool
    notice: str | None = None
    minute_count: int = 0
    day_count: int = 0


@dataclass(frozen=True)
class Reservation:
    """Tokens reserved against the budget of ``day`` for one model call (0: no token budget)."""

    day: str
    tokens: int = 0


class Limits:
    """Per-number rate limits, a global daily model budget and allow/block lists.

    :param storage: a store with ``increment_counter``, ``reserve_counter`` and ``get_counter``.
    :param clock: tells the time (the system's by default); tests pin it to stay inside one window.
    """

    def __init__(
        self,
        storage: Coordination,
        *,
        per_minute: int = 0,
        per_day: int = 0,
        call_budget: int = 0,
        token_budget: int = 0,
        allowed: Iterable[str] = (),
        blocked: Iterable[str] = (),
        clock: Clock | None = None,
    ) -> None:
        self.storage = storage
        self.per_minute = per_minute
        self.per_day = per_day
        self.call_budget = call_budget
        self.token_budget = token_budget
        self.allowed = frozenset(normalize_number(n) for n in allowed)
        self.blocked = frozenset(normalize_number(n) for n in blocked)
        self.clock: Clock = clock or SystemClock()

    @classmethod
    def from_settings(cls, storage: Coordination, settings: Settings, clock: Clock | None = None) -> Limits:
        """Build the limits described by the app's settings."""
        return cls(
            storage,
            per_minute=settings.rate_limit_per_minute,
            per_day=settings.rate_limit_per_day,
            call_budget=settings.daily_model_call_budget,
            token_budget=settings.daily_token_budget,
            allowed=settings.allowed_numbers,
            blocked=settings.blocked_numbers,
            clock=clock,
        )

    # ------------------------------------------------------------ who

    def admits(self, number: str) -> bool:
        """Return whether texts from this number are answered at all (no storage call)."""
        key = normalize_number(number)
        if key in self.blocked:
            return False
        return not self.allowed or key in self.allowed

    # ------------------------------------------------------- how often

    def _minute(self) -> str:
        return str(int(self.clock.time() // 60))

    def _day(self) -> str:
        return datetime.fromtimestamp(self.clock.time(), UTC).strftime("%Y%m%d")

    def caps(self) -> tuple[CounterCap, ...]:
        """Return the rate counters a text may add one to while under the limits.

        Stored with the text in one write (the quick path): a text whose counters are
        all under their caps is counted and allowed, the same verdict
        :meth:`check_rate` gives; past a cap nothing is written and the caller counts
        and judges the text with :meth:`check_rate` (which also picks the notice).
        """
        caps = []
        if self.per_minute:
            caps.append(CounterCap(f"rate_m_{self._minute()}", below=self.per_minute, expires_in=_MINUTE_TTL))
        if self.per_day:
            caps.append(CounterCap(f"rate_d_{self._day()}", below=self.per_day, expires_in=_DAY_TTL))
        return tuple(caps)

    def check_rate(self, number: str) -> RateVerdict:
        """Count this text against the number's minute and day windows and judge it.

        Every text counts, also refused ones: someone texting in a loop stays over the limit.
        """
        minute = day = 0
        if self.per_minute:
            minute = self.storage.increment_counter(
                number, f"rate_m_{self._minute()}", 1, expires_in=_MINUTE_TTL
            )
        if self.per_day:
            day = self.storage.increment_counter(number, f"rate_d_{self._day()}", 1, expires_in=_DAY_TTL)
        if self.per_day and day > self.per_day:
            return RateVerdict(False, "day" if day == self.per_day + 1 else None, minute, day)
        if self.per_minute and minute > self.per_minute:
            return RateVerdict(False, "minute" if minute == self.per_minute + 1 else None, minute, day)
        return RateVerdict(True, None, minute, day)

    # ------------------------------------------------------- how much

    def reserve_model_call(self, tokens: int = 0) -> Reservation | None:
        """Reserve one model call and up to ``tokens`` tokens of today's budgets; None when spent.

        The tokens are reserved before the call in one conditional write, so texts
        arriving together cannot all pass a check made before any of them was counted:
        once reservations reach the budget, later texts are refused. :meth:`settle`
        replaces the reservation with what the call really used.
        """
        day = self._day()
        reserved = 0
        if self.token_budget:
            reserved = max(1, int(tokens))
            total = self.storage.reserve_counter(
                "*", f"tokens_{day}", reserved, below=self.token_budget, expires_in=_DAY_TTL
            )
            if total is None:
                return None
        if self.call_budget:
            calls = self.storage.increment_counter("*", f"model_calls_{day}", 1, expires_in=_DAY_TTL)
            if calls > self.call_budget:
                if reserved:
                    self.storage.increment_counter("*", f"tokens_{day}", -reserved, expires_in=_DAY_TTL)
                return None
        return Reservation(day=day, tokens=reserved)

    def settle(self, reservation: Reservation, used: int) -> None:
        """Replace a reservation's tokens with the ``used`` ones (gives back what was not used)."""
        if not reservation.tokens:
            return
        difference = max(0, int(used)) - reservation.tokens
        if difference:
            self.storage.increment_counter(
                "*", f"tokens_{reservation.day}", difference, expires_in=_DAY_TTL
            )

    def tokens_today(self) -> int:
        """Return the model tokens used today across all numbers."""
        return self.storage.get_counter("*", f"tokens_{self._day()}")

    def budget_status(self) -> dict[str, Any]:
        """Return today's budget use and whether it is spent (for /health and logs)."""
        status: dict[str, Any] = {"spent": False}
        if self.call_budget:
            calls = self.storage.get_counter("*", f"model_calls_{self._day()}")
            status.update(model_calls=calls, model_call_budget=self.call_budget)
            status["spent"] = calls >= self.call_budget
        if self.token_budget:
            tokens = self.tokens_today()
            status.update(tokens=tokens, token_budget=self.token_budget)
            status["spent"] = status["spent"] or tokens >= self.token_budget
        return status


class TurnLease:
    """A number's turn: a conditional lease item in DynamoDB, held while one text is answered.

    The lease expires by itself after ``seconds``, so a worker that dies
    mid-turn blocks its number only that long.
    """

    def __init__(self, storage: Coordination, number: str, seconds: float, owner: str | None = None) -> None:
        self.storage = storage
        self.number = number
        self.seconds = seconds
        # Unique per attempt: a retried delivery must not inherit the first attempt's lease.
        self.owner = owner or uuid.uuid4().hex
        self.held = False

    def taken(self) -> None:
        """Note that the lease was taken with the text's own write (the quick path)."""
        self.held = True

    def given_back(self) -> None:
        """Note that the lease went back with the reply's own write."""
        self.held = False

    def try_acquire(self) -> bool:
        """Take the lease if nobody else holds a live one."""
        self.held = self.storage.acquire_lease(self.number, self.owner, self.seconds)
        return self.held

    def release(self) -> None:
        """Give the lease back (no-op when not held)."""
        if self.held:
            self.held = False
            self.storage.release_lease(self.number, self.owner)


def backoff_delays(first: float = 0.02, factor: float = 1.6, cap: float = 0.3) -> Iterable[float]:
    """Yield growing, jittered poll delays."""
    delay = first
    while True:
        yield delay * (0.5 + random.random())
        delay = min(cap, delay * factor)
