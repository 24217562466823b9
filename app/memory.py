"""Keeps each conversation's running summary up to date, off the reply path.

After a reply is sent, the webhook hands the conversation to :class:`MemoryKeeper`,
which folds what is due (``conversation.memory``) on a small pool of background
threads. The texter never waits for it; a full queue drops the work, and a later
text brings it back.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from app.config import Settings
from app.limits import Limits
from app.replies import Responder, Summariser
from conversation import StorageError
from conversation.memory import MemoryPolicy, update_summary
from conversation.store import ConversationStore

log = logging.getLogger(__name__)

# Summary requests may take longer than a reply: nobody is waiting on them.
SUMMARY_TIMEOUT_SECONDS = 30.0
CLAIM_SECONDS = 90.0
# Threads updating running summaries, per process.
SUMMARY_WORKERS = 2


class MemoryKeeper:
    """Schedules summary updates on at most ``workers`` threads, ``max_pending`` queued."""

    def __init__(self, storage: ConversationStore, responder: Summariser, policy: MemoryPolicy, *,
                 limits: Limits | None = None, workers: int = SUMMARY_WORKERS, max_pending: int = 64) -> None:
        self.storage = storage
        self.responder = responder
        self.policy = policy
        self.limits = limits
        self.workers = workers
        self.max_pending = max_pending
        self._pending: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._executor: ThreadPoolExecutor | None = None

    def schedule(self, user_id: str, conversation_id: str) -> bool:
        """Queue an update of this conversation's summary; False when queued already or full."""
        key = (user_id, conversation_id)
        with self._lock:
            if key in self._pending or len(self._pending) >= self.max_pending:
                return False
            self._pending.add(key)
            if self._executor is None:  # made on first use: threads do not survive a fork
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="dadacat-memory")
            executor = self._executor
        try:
            executor.submit(self._run, key)
        except RuntimeError:  # shutting down
            self._done(key)
            return False
        return True

    def _run(self, key: tuple[str, str]) -> None:
        try:
            outcome = self.update(*key)
            log.info("summary update: %s", outcome)
        except StorageError as exc:
            log.warning("summary update skipped: store failed: %s", exc)
        except Exception:  # a bug here must not kill the worker
            log.exception("summary update failed")
        finally:
            self._done(key)

    def _done(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._pending.discard(key)
            self._idle.notify_all()

    def update(self, user_id: str, conversation_id: str) -> str:
        """Fold what is due now, in this thread; return the outcome (see ``update_summary``)."""
        return update_summary(self.storage, user_id, conversation_id, self._summarise,
                              self.policy, claim_seconds=CLAIM_SECONDS)

    def _summarise(self, messages: list[dict[str, str]]) -> tuple[str | None, int]:
        # About four characters a token, with room for the model to run over.
        max_tokens = self.policy.max_chars // 3 + 50
        reservation = None
        if self.limits is not None:
            estimate = sum(len(m["content"]) for m in messages) // 4 + max_tokens
            reservation = self.limits.reserve_model_call(estimate)
            if reservation is None:
                log.info("summary update skipped: today's model budget is spent")
                return None, 0
        text, tokens = self.responder.summarise(
            messages, max_tokens=max_tokens, timeout=SUMMARY_TIMEOUT_SECONDS
        )
        if reservation is not None and self.limits is not None:
            self.limits.settle(reservation, tokens)
        return text, tokens

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no update is queued or running; False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        """Stop taking work and let running updates finish in the background."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def build_keeper(
    settings: Settings, storage: ConversationStore, responder: Responder, limits: Limits | None
) -> MemoryKeeper | None:
    """Build the keeper when the summary is on and a model can write it (None otherwise)."""
    if not settings.memory_summary or not isinstance(responder, Summariser):
        return None
    policy = MemoryPolicy(
        window_messages=settings.history_max_messages,
        window_chars=settings.history_max_chars,
        update_every=settings.memory_update_every,
        max_chars=settings.memory_summary_max_chars,
    )
    return MemoryKeeper(storage, responder, policy, limits=limits)
