"""Storing an inbound text once: the quick path (one guarded write) or the slow path.

The quick path is one DynamoDB transaction: the text, on the condition that the
number has not opted out, with the number's turn lease taken (sync mode) or, in
auto/async, the text noted on the number's work item and its claim taken, and its
rate counters counted under their caps. When only the lease or the claim is taken (a
burst), the text is written again without taking it (still noted: the turn running
now answers it too). When anything else does not hold, nothing is written and the
text takes the slow path: read the number's state, store the text, then let the
handler count it and wait for the turn (or note it) separately, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from app.limits import Limits, RateVerdict, TurnLease
from app.turn import Turn
from app.twilio_form import InboundText
from conversation import ConversationManager
from conversation.guards import LEASE, WORK, GuardFailed, TextGuard, WorkNote
from conversation.models import Message

# The names of the turn's checks a burst may find taken (then the text is stored without them).
_BUSY = frozenset({LEASE, WORK})


@dataclass(frozen=True)
class TextRecorded:
    """A text as stored: whether it is new and what its own write also did.

    ``verdict``: the rate limits counted it in its write (None: not counted there).
    ``noted``: it was noted on the number's work item; ``claimed``: its write also took
    the work's claim (at version 0) for the owner it was given.
    """

    message: Message
    created: bool
    verdict: RateVerdict | None = None
    noted: bool = False
    claimed: bool = False


def record_text(
    manager: ConversationManager, limits: Limits, text: InboundText, command: str | None,
    lease: TurnLease | None, turn: Turn, work: WorkNote | None = None,
) -> TextRecorded:
    """Store the text once (idempotent on MessageSid); say whether it is new and, when its
    write also counted it against the rate limits, the verdict.

    ``lease`` is taken with the text on the quick path (``lease.held`` says so); ``work``
    (auto/async) notes the text on the number's work and takes its claim.
    """
    metadata = text.metadata()
    if command:
        metadata["command"] = command
    guard = TextGuard(
        not_opted_out=True, lease_owner=lease.owner if lease else None,
        lease_seconds=lease.seconds if lease else 0.0, caps=limits.caps(), work=work,
    )
    for attempt in range(2):
        try:
            quick = manager.record_user_message(
                text.number, text.body, message_id=text.sid,
                media_urls=text.media_urls, metadata=dict(metadata), guard=guard,
            )
        except GuardFailed as failed:
            # Logged as why this text took the slow path: opted_out, lease and/or rate.
            turn.details["slow"] = ",".join(sorted({"rate" if name.startswith("rate_") else name
                                                    for name in failed.failed}))
            if failed.failed <= _BUSY and attempt == 0:
                # Only the turn is busy (a burst): store the text with the other checks
                # still made in its write; the handler then waits for the turn (sync), or
                # the running turn answers it (the text is still noted on the work).
                guard = replace(guard, lease_owner=None, work=WorkNote() if work is not None else None)
                continue
            break
        if not quick.created:
            return TextRecorded(quick.message, False)
        if lease is not None and guard.lease_owner:
            lease.taken()
        return TextRecorded(quick.message, True, RateVerdict(True), noted=guard.work is not None,
                        claimed=guard.work is not None and guard.work.owner is not None)
    # One read gives both the opt-out state and the conversation to append to.
    state = manager.get_user_state(text.number)
    if state["opted_out"]:
        # Twilio would refuse to deliver a reply (error 21610): keep the text, skip the model.
        metadata["unanswered"] = "opted_out"
    recorded = manager.record_user_message(
        text.number, text.body, message_id=text.sid,
        media_urls=text.media_urls, metadata=metadata,
        conversation_hint=state["active_conversation_id"],
    )
    return TextRecorded(recorded.message, recorded.created)
