"""Wrong operator tokens, counted per client address: past a few in a window, a 429.

The operator API's bearer check and the console's sign-in both ask :meth:`AuthThrottle.judge`.
The counts live in the store (one counter per address and window, with a TTL), so every
worker and instance shares them: an address gets ``OPERATOR_AUTH_MAX_FAILURES`` wrong tokens
per fixed window of ``OPERATOR_AUTH_WINDOW_SECONDS``, then every attempt is refused until the
window ends, the right token included. A success resets nothing.

Cost: a wrong token is one UpdateItem; a right one is one GetItem (is this address over
the limit?). An address known to be over its limit is remembered in the process until the
window ends, so a flood from it costs the store nothing more.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
from dataclasses import dataclass

from conversation.clock import Clock
from conversation.store import Coordination

log = logging.getLogger(__name__)

# Counters outlive their window a little; TTL then sweeps them away.
_TTL_MARGIN = 60
# Addresses remembered as over their limit in one process, at most.
_MEMO_SIZE = 10_000


@dataclass(frozen=True)
class Verdict:
    """What to answer one attempt: go on (``ok``), 401 (neither), or 429 (``retry_after`` > 0)."""

    ok: bool
    retry_after: int = 0

    @property
    def throttled(self) -> bool:
        return self.retry_after > 0


def address_key(address: str | None) -> str:
    """Return what an address is counted under: the address, or an IPv6 address's /64.

    One IPv6 host usually holds a whole /64, so counting single addresses would let it
    pick a fresh one per guess. Anything else (no address, or what a proxy put there) is
    counted as the text it is.
    """
    text = (address or "").strip()
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def shown(address: str | None) -> str:
    """Return an address as a log line may carry it (a proxy may have put anything there)."""
    return repr((address or "")[:64])


class AuthThrottle:
    """Count wrong operator tokens per client address and refuse an address past its limit.

    :param storage: the store's atomic counters (shared by every worker and instance).
    :param max_failures: wrong tokens an address may try per window; the next attempt gets 429.
    :param window_seconds: length of the fixed windows the failures are counted in.
    :param clock: tells the time; tests move it past a window's end.
    """

    def __init__(self, storage: Coordination, *, max_failures: int, window_seconds: float,
                 clock: Clock) -> None:
        self.storage = storage
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.clock = clock
        self._over: dict[str, float] = {}
        self._lock = threading.Lock()

    def _window(self, now: float) -> tuple[int, float]:
        index = int(now // self.window_seconds)
        return index, (index + 1) * self.window_seconds

    def _counter(self, key: str, index: int) -> str:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"op_auth_{index}_{digest}"

    def judge(self, address: str | None, *, right: bool, counted: bool = True, surface: str) -> Verdict:
        """Return the verdict on one attempt whose token was ``right`` (or not).

        A wrong attempt is counted when ``counted`` (a token was presented at all). An
        address over its limit is refused (429) whatever it presents, until the window ends.
        ``surface`` names the entrance in log lines ("api", "console").
        """
        key = address_key(address)
        now = self.clock.time()
        index, ends = self._window(now)
        retry_after = max(1, math.ceil(ends - now))
        if self._remembered(key, now):
            return self._refuse(address, surface, retry_after)
        if right:
            failures = self.storage.get_counter("*", self._counter(key, index))
            if failures < self.max_failures:
                return Verdict(True)
        elif not counted:
            return Verdict(False)
        else:
            failures = self.storage.increment_counter(
                "*", self._counter(key, index), 1, expires_in=self.window_seconds + _TTL_MARGIN)
            if failures <= self.max_failures:
                log.warning("%s: wrong operator token from %s (%d of %d this window)",
                            surface, shown(address), failures, self.max_failures)
                return Verdict(False)
        self._remember(key, ends)
        return self._refuse(address, surface, retry_after)

    def _refuse(self, address: str | None, surface: str, retry_after: int) -> Verdict:
        log.warning("%s: too many wrong operator tokens from %s; refused for %d s more",
                    surface, shown(address), retry_after)
        return Verdict(False, retry_after)

    def _remembered(self, key: str, now: float) -> bool:
        with self._lock:
            ends = self._over.get(key)
            if ends is None:
                return False
            if ends <= now:
                del self._over[key]
                return False
            return True

    def _remember(self, key: str, ends: float) -> None:
        with self._lock:
            if len(self._over) >= _MEMO_SIZE:
                now = self.clock.time()
                self._over = {k: v for k, v in self._over.items() if v > now}
                if len(self._over) >= _MEMO_SIZE:
                    return  # the store still refuses; only the saving is lost
            self._over[key] = ends
