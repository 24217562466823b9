"""Leases and counters in memory (one process only): the Coordination part of MemoryStore."""

from __future__ import annotations

import threading
import time

from conversation.guards import LEASE, OPTED_OUT, GuardFailed, TextGuard
from conversation.models import User


class MemoryCoordination:
    """Turn leases and named counters kept in dictionaries under a lock."""

    def __init__(self) -> None:
        self._coordination_lock = threading.RLock()
        self._leases: dict[str, tuple[str, float]] = {}
        self._lease_taken: dict[str, float] = {}
        self._counters: dict[tuple[str, str], tuple[int, float | None]] = {}

    def acquire_lease(self, user_id: str, owner: str, seconds: float) -> bool:
        """Take the number's lease unless another owner holds a live one."""
        now = time.time()
        with self._coordination_lock:
            held = self._leases.get(user_id)
            if held is not None and held[0] != owner and held[1] >= now:
                return False
            self._leases[user_id] = (owner, now + seconds)
            self._lease_taken[user_id] = now
            return True

    def lease_taken_at(self, user_id: str) -> float | None:
        """Return when the number's live lease was taken, or None when none is live."""
        with self._coordination_lock:
            held = self._leases.get(user_id)
            if held is None or held[1] < time.time():
                return None
            return self._lease_taken.get(user_id)

    def release_lease(self, user_id: str, owner: str) -> None:
        """Give the lease back if ``owner`` holds it."""
        with self._coordination_lock:
            if user_id in self._leases and self._leases[user_id][0] == owner:
                del self._leases[user_id]

    def increment_counter(
        self, scope: str, name: str, amount: int = 1, *, expires_in: float
    ) -> int:
        """Add ``amount`` to a counter and return its value; an expired counter starts again."""
        if not expires_in or expires_in <= 0:
            raise ValueError("a counter needs a positive expires_in (seconds)")
        now = time.time()
        with self._coordination_lock:
            value, expires = self._counters.get((scope, name), (0, None))
            if expires is not None and expires <= now:
                value, expires = 0, None
            if expires is None:
                expires = now + expires_in
            value += int(amount)
            self._counters[(scope, name)] = (value, expires)
            return value

    def reserve_counter(
        self, scope: str, name: str, amount: int, *, below: int, expires_in: float
    ) -> int | None:
        """Add ``amount`` only while the counter is below ``below``; the new value, or None."""
        with self._coordination_lock:
            if self.get_counter(scope, name) >= below:
                return None
            return self.increment_counter(scope, name, amount, expires_in=expires_in)

    def get_counter(self, scope: str, name: str) -> int:
        """Return a counter's value (0 when missing or expired)."""
        with self._coordination_lock:
            value, expires = self._counters.get((scope, name), (0, None))
            return 0 if expires is not None and expires <= time.time() else value

    def guarded(self, user_id: str, guard: TextGuard | None, release_lease: str | None,
                user: User | None, failed: list[str] | None = None) -> None:
        """Check a guarded append's conditions (GuardFailed names what does not hold, with the
        ``failed`` the caller found), then take its lease, count its counters and give
        ``release_lease``'s lease back."""
        now = time.time()
        failed = list(failed or [])
        with self._coordination_lock:
            if guard is not None:
                held = self._leases.get(user_id)
                if guard.not_opted_out and user is not None and user.opted_out:
                    failed.append(OPTED_OUT)
                if guard.lease_owner and held is not None and held[0] != guard.lease_owner and held[1] >= now:
                    failed.append(LEASE)
                failed += [cap.name for cap in guard.caps if self.get_counter(user_id, cap.name) >= cap.below]
            if failed:
                raise GuardFailed(failed)
            if guard is not None:
                if guard.lease_owner:
                    self._leases[user_id] = (guard.lease_owner, now + guard.lease_seconds)
                    self._lease_taken[user_id] = now
                for cap in guard.caps:
                    self.increment_counter(user_id, cap.name, 1, expires_in=cap.expires_in)
            if release_lease:
                self.release_lease(user_id, release_lease)

    def forget(self, user_id: str) -> int:
        """Drop a number's lease and counters; return how many records went."""
        with self._coordination_lock:
            counters = [key for key in self._counters if key[0] == user_id]
            for key in counters:
                del self._counters[key]
            return len(counters) + (self._leases.pop(user_id, None) is not None)
