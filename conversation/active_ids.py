"""The active conversation id of recently seen numbers, remembered by one process.

A turn touches the active conversation three times (store the text, read the
window, store the reply); looking its id up in the user record each time costs a
read per call. :class:`ActiveIds` remembers the id the manager last read or wrote
for a number, so the next call can go straight to the conversation.

A remembered id is only ever a hint, never the truth:

- a write with it is conditioned on the conversation still being active (the
  store's append refuses an archived, deleted or erased conversation and then
  looks the active one up), so a stale id cannot add to an archived conversation;
- a read with it checks the conversation's header (``is_active``) and falls back
  to the user record when the id has gone stale;
- this process forgets a number's id when it resets, archives, deletes or erases
  (another process's changes are caught by the two rules above).

The memory is bounded (least recently used numbers are forgotten first) and safe
to share between threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

# Numbers remembered per process; an id is ~30 bytes, so this stays well under a few MB.
DEFAULT_CAPACITY = 10_000


class ActiveIds:
    """A bounded, thread-safe map from a number to its last known active conversation id."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, user_id: str) -> str | None:
        """Return the id remembered for ``user_id``, or None."""
        with self._lock:
            conversation_id = self._ids.get(user_id)
            if conversation_id is not None:
                self._ids.move_to_end(user_id)
            return conversation_id

    def remember(self, user_id: str, conversation_id: str | None) -> None:
        """Note that ``conversation_id`` was just seen active for ``user_id`` (None forgets)."""
        if not conversation_id:
            self.forget(user_id)
            return
        with self._lock:
            self._ids[user_id] = conversation_id
            self._ids.move_to_end(user_id)
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)

    def forget(self, user_id: str, conversation_id: str | None = None) -> None:
        """Forget ``user_id``'s id (only if it is ``conversation_id``, when given)."""
        with self._lock:
            if conversation_id is None or self._ids.get(user_id) == conversation_id:
                self._ids.pop(user_id, None)
