"""The hand-off in ``auto`` mode: the webhook that started a turn waits a while for its reply.

The webhook and the background turn meet here, in one process. Exactly one of them
delivers the reply, decided under this object's lock *before* the reply is stored:

- the turn :meth:`Handoff.offer` s its reply; if the webhook is still waiting the offer
  is taken (the reply is then stored with delivery ``twiml`` and returned as TwiML);
- if the webhook stopped waiting first (:meth:`Handoff.wait` timed out), the offer is
  refused and the turn sends the reply through the Messages API;
- a taken offer the turn could not store as sent (the number opted out meanwhile) is
  :meth:`Handoff.withdraw` n: the webhook answers empty.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

WAITING, OFFERED, STORED, NOTHING, GONE, WITHDRAWN = (
    "waiting", "offered", "stored", "nothing", "gone", "withdrawn")


@dataclass(frozen=True)
class HandedOver:
    """A reply the webhook answers with: its text and the SID of the text it replies to."""

    content: str
    reply_to_sid: str | None


class Handoff:
    """One webhook's wait for the reply of the turn it started."""

    def __init__(self, sid: str | None = None) -> None:
        self.sid = sid  # the text whose webhook waits (its answer carries the reply)
        self._changed = threading.Condition()
        self._state = WAITING
        self._reply: HandedOver | None = None

    @property
    def state(self) -> str:
        with self._changed:
            return self._state

    def offer(self, content: str, reply_to_sid: str | None) -> bool:
        """Offer the reply to the webhook; True when it takes it (then store it, then :meth:`stored`)."""
        with self._changed:
            if self._state != WAITING:
                return False
            self._state, self._reply = OFFERED, HandedOver(content, reply_to_sid)
            self._changed.notify_all()
            return True

    def stored(self, content: str) -> None:
        """Say the offered reply is stored (as ``content``: the one stored first, if another was)."""
        with self._changed:
            if self._reply is not None:
                self._reply = HandedOver(content, self._reply.reply_to_sid)
            self._state = STORED
            self._changed.notify_all()

    def withdraw(self) -> None:
        """Take a taken offer back: the webhook answers empty (nothing is to be sent)."""
        with self._changed:
            self._state, self._reply = WITHDRAWN, None
            self._changed.notify_all()

    def nothing(self) -> None:
        """Say this turn has no reply for the webhook to carry (its text was already answered)."""
        with self._changed:
            if self._state == WAITING:
                self._state = NOTHING
                self._changed.notify_all()

    def wait(self, ready_by: float, stored_by: float) -> HandedOver | None:
        """Wait for the reply until ``ready_by`` (monotonic); None when the webhook answers empty.

        An offer taken in time is waited for until it is stored, at most until ``stored_by``;
        past that it is answered anyway (it is stored after the answer, as in sync mode).
        """
        with self._changed:
            self._changed.wait_for(lambda: self._state != WAITING,
                                   timeout=max(0.0, ready_by - time.monotonic()))
            if self._state == WAITING:
                self._state = GONE  # from now on the turn sends through the Messages API
                return None
            if self._state == NOTHING:
                return None
            self._changed.wait_for(lambda: self._state in (STORED, WITHDRAWN),
                                   timeout=max(0.0, stored_by - time.monotonic()))
            return self._reply
