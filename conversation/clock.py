"""The time seam: what code that reads the time or waits asks for, so tests can pass their own.

``SystemClock`` is the real one (the default everywhere); a test passes any object with the
same three methods (tests/fake_clock.py) to open and close windows or to wait without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for windows and ages, a monotonic time for deadlines, and a way to wait."""

    def time(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait this long."""
        ...


class SystemClock:
    """The machine's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
