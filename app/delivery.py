"""Sending a stored reply through the Messages API exactly once, and recovering one left midway.

A reply to be sent by REST is stored straight as ``delivery = sending`` (with its owner and
the time), in a write that also checks the opt-out again (STOP between text and reply: it is
stored ``not_sent`` and nothing is sent) and renews the number's work claim (an erased
number, or a claim another instance took over: nothing is stored or sent here); see
:mod:`app.background_turn`. Then it is sent (:meth:`Delivery.send_fresh`) and recorded
``sent`` with Twilio's message SID (``outbound_sid``) in one write that also ends the
number's work when no text came meanwhile.

A reply found ``queued`` (stored by an earlier version, which sent in two steps) is sent the
careful way (:meth:`Delivery.deliver`): the opt-out is read and the claim renewed, a
conditional write on its delivery keys moves it to ``sending`` (of two instances only one
moves it), then it is sent and recorded ``sent``.

A reply found in ``sending`` (its sender died or lost touch midway) is recovered: the owner
is moved to the one recovering it (conditionally again), then the Messages API is asked for
messages to the number since the send began; one with the same body means it was sent (its
SID is recorded), none means it was not (it is sent now). The window left: a send whose
message Twilio has accepted but does not list yet when the recovery asks (Twilio lists a
message as soon as it has created it, so this is the time between Twilio creating it and
the first send's caller dying, plus the recovery delay of at least two thirds of ``RECOVERY_SECONDS``:
in practice a crash inside the send request itself), or a reply whose exact body was also
sent moments before (it would be taken as sent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from app.logutil import mask_number
from app.outbound import ReplySender, SendFailed, SendRefused, Sent
from conversation import StorageError
from conversation.errors import ConversationNotFound, StaleMetadata
from conversation.models import Message
from conversation.store import ConversationStore

log = logging.getLogger("app.webhook")

# States of a reply's ``delivery`` metadata (``twiml``: it went in the webhook's answer).
QUEUED, SENDING, SENT, NOT_SENT, REFUSED, TWIML = "queued", "sending", "sent", "not_sent", "refused", "twiml"
PENDING = (QUEUED, SENDING)
# Attempts at a send that failed for now, and the pauses between them.
SEND_PAUSES = (0.0, 0.5, 2.0)
# How far before the recorded start of a send the recovery looks (clock skew).
RECOVERY_SLACK_SECONDS = 60.0


@dataclass(frozen=True)
class Delivery:
    """Sends stored replies for one app: the store, the sender and how status callbacks are named."""

    storage: ConversationStore
    sender: ReplySender
    callback_url: Callable[[Message], str | None]
    claim_seconds: float
    pauses: tuple[float, ...] = SEND_PAUSES

    def deliver(
        self, number: str, reply: Message, text: Message, owner: str, *, renewed: bool = False
    ) -> str:
        """Send ``reply`` (the reply to ``text``) unless it is sent; return its delivery state.

        ``"unsure"`` means neither sent nor known to be unsent: leave the work claimed-then-released
        so a later pass (or another instance) recovers it. ``renewed``: the caller has just
        renewed the claim (after the reply was decided), so it is not renewed again.
        """
        state = reply.metadata.get("delivery")
        if state not in PENDING:
            return str(state)
        user = self.storage.get_user(number)
        if user is None or user.opted_out:
            reason = "opted_out" if user is not None else "erased"
            if user is not None:
                self._mark(number, reply, {"delivery": NOT_SENT, "not_sent": reason})
            log.info("reply to %s not sent: %s", mask_number(number), reason)
            return NOT_SENT
        if not renewed and not self.storage.renew_work(number, owner, self.claim_seconds):
            log.warning("reply to %s not sent here: the work is gone or another instance has it",
                        mask_number(number))
            return "lost"
        since = float(reply.metadata.get("sending_at") or time.time())
        moved = {"delivery": SENDING, "sending_owner": owner, "sending_at": time.time()}
        try:
            self.storage.set_delivery(
                number, reply, moved,
                expect={"delivery": state, "sending_owner": reply.metadata.get("sending_owner")},
            )
        except StaleMetadata:
            return "taken"
        except ConversationNotFound:
            return NOT_SENT
        reply = with_delivery(reply, moved)
        if state == SENDING:  # its sender died or lost touch midway: was it sent?
            found = self._already_sent(number, reply.content, since - RECOVERY_SLACK_SECONDS)
            if found is None:
                return "unsure"
            if found:
                self._mark(number, reply, {"delivery": SENT, "outbound_sid": found, "recovered": True})
                log.info("reply to %s was sent before (%s); recorded", mask_number(number), found)
                return SENT
        return self._send(number, reply, text)[0]

    def send_fresh(
        self, number: str, reply: Message, text: Message, owner: str, version: int
    ) -> tuple[str, bool]:
        """Send a reply just stored ``sending`` under ``owner``'s renewed claim; return its delivery
        state and whether the write that recorded it also ended the number's work (at ``version``)."""
        return self._send(number, reply, text, finish=(owner, version))

    def _send(self, number: str, reply: Message, text: Message,
              finish: tuple[str, int] | None = None) -> tuple[str, bool]:
        """Send a reply held in ``sending``; retry a failure for now only after asking whether it went.

        Returns the delivery state, and whether ``finish`` (owner, version) ended the work with it.
        """
        to_from = text.metadata.get("to") or None
        started = float(reply.metadata.get("sending_at") or time.time())
        for attempt, pause in enumerate(self.pauses):
            time.sleep(pause)
            if attempt:  # the failed attempt may have been sent after all
                found = self._already_sent(number, reply.content, started - RECOVERY_SLACK_SECONDS)
                if found:
                    return SENT, self._mark(number, reply, {"delivery": SENT, "outbound_sid": found}, finish)
                if found is None:
                    continue
            try:
                sent: Sent = self.sender.send(
                    to=number, from_=to_from, body=reply.content,
                    status_callback=self.callback_url(text),
                )
            except SendRefused as refused:
                log.warning("reply to %s refused by Twilio (code %s)", mask_number(number), refused.code)
                updates: dict[str, object] = {"delivery": REFUSED, "delivery_error_code": refused.code}
                return REFUSED, self._mark(number, reply, updates, finish)
            except SendFailed as exc:
                log.warning("reply to %s: send failed for now (%s)", mask_number(number), exc)
                continue
            return SENT, self._mark(number, reply, {"delivery": SENT, "outbound_sid": sent.sid}, finish)
        return "unsure", False

    def _already_sent(self, number: str, body: str, since: float) -> str | None | bool:
        """The SID of a message with this body sent to ``number`` since ``since``; False if none;
        None when the Messages API could not be asked."""
        try:
            for sid, sent_body in self.sender.recent_to(number, since):
                if sent_body == body:
                    return sid
        except SendFailed as exc:
            log.warning("could not list the messages sent to %s: %s", mask_number(number), exc)
            return None
        return False

    def _mark(self, number: str, reply: Message, updates: dict[str, object],
              finish: tuple[str, int] | None = None) -> bool:
        """Record a delivery step (and with ``finish``, end the work in the same write when no
        text came since); a failure is logged (the sent SID may then be missing). Returns
        whether the work was ended."""
        try:
            return self.storage.set_delivery(number, reply, dict(updates), finish=finish)
        except StorageError as exc:
            log.error("could not record the delivery of a reply to %s: %s", mask_number(number), exc)
        except ConversationNotFound:
            pass  # erased meanwhile
        return False


def with_delivery(reply: Message, updates: dict[str, object]) -> Message:
    """A copy of ``reply`` whose delivery keys carry ``updates``."""
    return replace(reply, metadata={**reply.metadata, **updates})
