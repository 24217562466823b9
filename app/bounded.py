"""Steps that must not outlast a texter's deadline, and work that no texter waits for.

Twilio waits 15 s for the answer to a text. Once the model has answered, every storage
call left on the response path runs here with only the time left before the reply
deadline (:meth:`Bounded.run`); what the answer does not need (giving back the turn
lease, settling the token budget, the day's figures, storing a reply that missed the
deadline) runs after the answer, in the background (:meth:`Bounded.later`).

A step that runs out of time keeps running in its worker thread until botocore's own
timeouts end it; only the texter stops waiting for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


# Threads running steps within a deadline, and work no texter waits for (storage calls, both).
STEP_WORKERS = 64
BACKGROUND_WORKERS = 8


class OutOfTime(Exception):
    """A step did not finish before the reply deadline."""


class Bounded:
    """Run steps within a deadline, or after the answer.

    Worker threads are made on first use: threads made before gunicorn forks do not
    survive the fork.
    """

    def __init__(self, workers: int = STEP_WORKERS, background_workers: int = BACKGROUND_WORKERS) -> None:
        self.workers = workers
        self.background_workers = background_workers
        self._steps: ThreadPoolExecutor | None = None
        self._background: ThreadPoolExecutor | None = None
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        with self._lock:
            if self._steps is None or self._background is None:
                self._steps = ThreadPoolExecutor(self.workers, thread_name_prefix="dadacat-step")
                self._background = ThreadPoolExecutor(self.background_workers,
                                                      thread_name_prefix="dadacat-after")
            return self._steps, self._background

    def run(self, until: float, step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Return ``step(*args, **kwargs)`` if it finishes before ``until`` (a monotonic instant).

        :raises OutOfTime: when it does not (or no time is left to start it).
        """
        left = until - time.monotonic()
        if left <= 0:
            raise OutOfTime("no time left before the reply deadline")
        future = self._pools()[0].submit(step, *args, **kwargs)
        try:
            return future.result(timeout=left)
        except FutureTimeout:
            future.cancel()
            raise OutOfTime(f"not done within the {left:.1f} s left before the reply deadline") from None

    def later(self, what: str, work: Callable[[], Any]) -> None:
        """Run ``work()`` in the background; a failure is logged with ``what``, never raised."""

        def guarded() -> None:
            try:
                work()
            except Exception:
                log.exception("background work failed: %s", what)

        future = self._pools()[1].submit(guarded)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def pause(self, seconds: float) -> bool:
        """Sleep between retries of background work; False when closing (stop retrying)."""
        return not self._closing.wait(seconds)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the background work queued so far is done; return whether it all is."""
        with self._lock:
            pending = set(self._pending)
        if not pending:
            return True
        _, not_done = wait(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        """Stop taking work and stop retrying; running work finishes in its threads."""
        self._closing.set()
        with self._lock:
            pools, self._steps, self._background = (self._steps, self._background), None, None
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=False)
