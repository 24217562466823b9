"""A clock a test sets and advances; waiting on it takes no time (implements conversation.clock.Clock)."""

from __future__ import annotations

import time


class FakeClock:
    """Settable wall time (``now``) and a monotonic time that moves only when slept on or advanced."""

    def __init__(self, now: float = 1_767_225_630.0) -> None:  # 2026-01-01T00:00:30Z
        self.now = now
        # Starts at the real monotonic time, so deadlines handed to a real model client still make sense.
        self.mono = time.monotonic()
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds
