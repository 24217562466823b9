"""Background turns of one process: a bounded pool, a claim heartbeat and a recovery sweeper.

- At most ``REPLY_WORKERS`` turns run at once per process; a turn that finds the pool full
  is not queued: its claim is released and the sweeper (of any instance) takes it later.
- Claims last two thirds of ``RECOVERY_SECONDS``; a heartbeat renews those of running turns
  once half of that has passed since they were taken or last renewed, so a claim lapses
  only when its process is gone (or stuck), and a turn shorter than half a claim (most
  are: the reply's own write renews the claim) costs no renewal at all.
- Every ``RECOVERY_SECONDS / 4`` the sweeper claims work that is due (lapsed claims,
  released or never-claimed work) and runs it here: a text whose process died is answered
  within ``RECOVERY_SECONDS`` (the claim lapses, then the next sweep takes it).

Threads start on first use in the process that serves (gunicorn forks workers after
loading the app: threads made before the fork would not exist in the workers), or when a
gunicorn worker boots (``post_worker_init`` in gunicorn.conf.py calls :meth:`ReplyPool.start`,
so every worker sweeps, even one that has served no text yet), and stop when the process
exits. Tests call :meth:`ReplyPool.sweep` and :meth:`ReplyPool.heartbeat` directly and
:meth:`ReplyPool.drain` to wait for running turns.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from app.handoff import Handoff
from app.logutil import mask_number
from conversation import StorageError
from conversation.store import WorkQueue

log = logging.getLogger("app.webhook")

# run(number, owner, version, handoff, conversation_id) -> finished?
TurnRunner = Callable[[str, str, int, "Handoff | None", "str | None"], bool]


def claim_seconds(recovery_seconds: float) -> float:
    """How long a work claim lasts: renewed at half of it, and swept at most a quarter of the
    recovery time after it lapsed, a dead owner's work is taken up within ``recovery_seconds``."""
    return recovery_seconds * 2 / 3


class ReplyPool:
    """Runs background turns under their work claims, keeps the claims alive, recovers lost work."""

    def __init__(self, storage: WorkQueue, run: TurnRunner, *, workers: int, recovery_seconds: float) -> None:
        self.storage = storage
        self.run_turn = run
        self.workers = workers
        self.recovery_seconds = recovery_seconds
        self.claim_seconds = claim_seconds(recovery_seconds)
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], Future] = {}
        self._renewed: dict[tuple[str, str], float] = {}  # when each running turn's claim was last taken
        self._executor: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ claims

    def new_owner(self) -> str:
        """A claim owner unique to one turn of this process."""
        return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

    def claim(self, number: str, owner: str) -> int | None:
        """Claim a number's work for one turn; its version, or None when another turn has it."""
        return self.storage.claim_work(number, owner, self.claim_seconds)

    # ------------------------------------------------------------------ running

    def submit(self, number: str, owner: str, version: int, handoff: Handoff | None = None,
               conversation_id: str | None = None) -> bool:
        """Run a claimed turn in the pool; False (and the claim released) when the pool is full."""
        executor = self._start()
        with self._lock:
            full = len(self._running) >= self.workers
            if not full:
                future = executor.submit(self._guarded, number, owner, version, handoff, conversation_id)
                self._running[(number, owner)] = future
                self._renewed[(number, owner)] = time.monotonic()
        if full:
            log.warning("reply pool full (%d turns): %s left for recovery", self.workers, mask_number(number))
            self._release(number, owner)
            return False
        return True

    def _guarded(self, number: str, owner: str, version: int, handoff: Handoff | None,
                 conversation_id: str | None) -> None:
        try:
            self.run_turn(number, owner, version, handoff, conversation_id)
        except Exception:
            log.exception("reply turn for %s failed", mask_number(number))
            self._release(number, owner)
        finally:
            if handoff is not None:
                handoff.nothing()
            with self._lock:
                self._running.pop((number, owner), None)
                self._renewed.pop((number, owner), None)

    def _release(self, number: str, owner: str) -> None:
        try:
            self.storage.release_work(number, owner)
        except StorageError as exc:  # the claim lapses by itself
            log.warning("could not release the work of %s: %s", mask_number(number), exc)

    @property
    def running(self) -> int:
        """How many turns run now."""
        with self._lock:
            return len(self._running)

    # ------------------------------------------------------------------ heartbeat and sweeper

    def heartbeat(self, *, every: bool = False) -> int:
        """Renew the claims of running turns taken or renewed half a claim ago (``every``: all);
        return how many were renewed."""
        due_before = time.monotonic() - (0.0 if every else self.claim_seconds / 2)
        with self._lock:
            held = [key for key, at in self._renewed.items() if at <= due_before]
        renewed = 0
        for number, owner in held:
            started = time.monotonic()
            try:
                if self.storage.renew_work(number, owner, self.claim_seconds):
                    renewed += 1
                    with self._lock:
                        if (number, owner) in self._renewed:
                            self._renewed[(number, owner)] = started
            except StorageError as exc:
                log.warning("could not renew the claim on %s: %s", mask_number(number), exc)
        return renewed

    def sweep(self, now: float | None = None) -> int:
        """Claim work that is due and start it here (as many as the pool has room for); return how many."""
        room = self.workers - self.running
        if room <= 0:
            return 0
        try:
            due = self.storage.due_work(time.time() if now is None else now, room)
        except StorageError as exc:
            log.warning("recovery sweep could not list due work: %s", exc)
            return 0
        started = 0
        for number in due:
            owner = self.new_owner()
            try:
                version = self.claim(number, owner)
            except StorageError as exc:
                log.warning("recovery sweep could not claim %s: %s", mask_number(number), exc)
                continue
            if version is None:
                continue  # another instance was quicker
            log.info("recovering the unanswered texts of %s", mask_number(number))
            if not self.submit(number, owner, version):
                break
            started += 1
        return started

    def _start(self) -> ThreadPoolExecutor:
        """Start the pool and the heartbeat/sweeper thread in this process, once."""
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._stop.clear()
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="dadacat-reply")
                self._running.clear()
                self._thread = threading.Thread(target=self._loop, name="dadacat-recovery", daemon=True)
                self._thread.start()
                atexit.register(self.close)
            return self._executor

    def start(self) -> None:
        """Start the threads now (the first webhook does it otherwise)."""
        self._start()

    def _loop(self) -> None:
        beat = max(0.25, self.claim_seconds / 8)
        sweep_every = max(0.5, self.recovery_seconds / 4)
        next_sweep = time.monotonic() + sweep_every / 2
        while not self._stop.wait(beat):
            try:
                self.heartbeat()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_every
                    self.sweep()
            except Exception:
                log.exception("reply heartbeat or sweep failed")

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the turns running now are done; return whether they all are."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._running.values())
            if not pending:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait(pending, timeout=left)

    def close(self) -> None:
        """Stop the heartbeat and sweeper; running turns finish in their threads (claims then lapse)."""
        self._stop.set()
        with self._lock:
            executor, self._executor = self._executor, None
            thread, self._thread = self._thread, None
        if executor is not None:
            executor.shutdown(wait=False)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
