"""Work items in memory (one process only): the WorkQueue part of MemoryStore."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from conversation.guards import WORK, ReplyGuard, WorkNote
from conversation.ids import check_user_id
from conversation.store import WORK_QUIET_SECONDS, WORK_TTL_SECONDS, WorkItem


@dataclass(frozen=True)
class _Work:
    item: WorkItem
    noted_at: float
    expires_at: float


class MemoryWork:
    """One work item per number in a dictionary under a lock (see conversation.store.WorkQueue)."""

    def __init__(self) -> None:
        super().__init__()
        self._work_lock = threading.RLock()
        self._work: dict[str, _Work] = {}

    def _live(self, user_id: str, now: float) -> _Work | None:
        work = self._work.get(user_id)
        if work is not None and work.expires_at <= now:
            del self._work[user_id]
            return None
        return work

    def note_text(self, user_id: str) -> int:
        with self._work_lock:
            self.work_apply(check_user_id(user_id), WorkNote(), None)
            return self._work[user_id].item.version

    def work_failures(self, user_id: str, note: WorkNote | None, reply: ReplyGuard | None) -> list[str]:
        """What a guarded append's work conditions find wrong (hold ``_work_lock`` until applied)."""
        now = time.time()
        work = self._live(user_id, now)
        held = work.item if work is not None else None
        if note is not None and note.owner and held is not None and held.owner not in (None, note.owner) \
                and (held.claimed_until or 0) >= now:
            return [WORK]
        if reply is not None and (held is None or held.owner != reply.owner):
            return [WORK]
        return []

    def work_apply(self, user_id: str, note: WorkNote | None, reply: ReplyGuard | None) -> bool:
        """Make a guarded append's work writes (its conditions hold); True when the work ended."""
        now = time.time()
        with self._work_lock:
            work = self._live(user_id, now)
            if note is not None:
                since = work.item.since if work is not None else now
                if note.owner:  # the claim covers every text so far: the version starts again
                    item = WorkItem(user_id, 0, since, note.owner, now + note.seconds)
                elif work is None:
                    item = WorkItem(user_id, 1, now, None, None)
                else:
                    item = replace(work.item, version=work.item.version + 1)
                self._work[user_id] = _Work(item, now, now + WORK_TTL_SECONDS)
            if reply is not None and work is not None:
                if reply.finish_version is not None and work.item.version == reply.finish_version:
                    del self._work[user_id]
                    return True
                renewed = replace(work.item, claimed_until=now + reply.seconds)
                self._work[user_id] = replace(work, item=renewed)
            return False

    def claim_work(self, user_id: str, owner: str, seconds: float) -> int | None:
        now = time.time()
        with self._work_lock:
            work = self._live(user_id, now)
            if work is None:
                return None
            held = work.item
            if held.owner is not None and held.owner != owner and (held.claimed_until or 0) >= now:
                return None
            self._work[user_id] = replace(work, item=replace(held, owner=owner, claimed_until=now + seconds))
            return held.version

    def renew_work(self, user_id: str, owner: str, seconds: float) -> bool:
        now = time.time()
        with self._work_lock:
            work = self._live(user_id, now)
            if work is None or work.item.owner != owner:
                return False
            self._work[user_id] = replace(work, item=replace(work.item, claimed_until=now + seconds))
            return True

    def finish_work(self, user_id: str, owner: str, version: int) -> bool:
        with self._work_lock:
            work = self._live(user_id, time.time())
            if work is None or work.item.owner != owner or work.item.version != version:
                return False
            del self._work[user_id]
            return True

    def release_work(self, user_id: str, owner: str) -> None:
        with self._work_lock:
            work = self._live(user_id, time.time())
            if work is not None and work.item.owner == owner:
                self._work[user_id] = replace(work, item=replace(work.item, owner=None, claimed_until=None))

    def get_work(self, user_id: str) -> WorkItem | None:
        with self._work_lock:
            work = self._live(user_id, time.time())
            return None if work is None else work.item

    def due_work(self, now: float, limit: int) -> list[str]:
        with self._work_lock:
            found = []
            for user_id in list(self._work):
                work = self._live(user_id, now)
                if work is None:
                    continue
                until = work.item.claimed_until
                if (until is not None and until < now) or (
                    until is None and work.noted_at < now - WORK_QUIET_SECONDS
                ):
                    found.append(user_id)
            return found[:limit]

    def forget_work(self, user_id: str) -> int:
        """Drop the number's work item (erasure); 1 if there was one."""
        with self._work_lock:
            return int(self._work.pop(user_id, None) is not None)
