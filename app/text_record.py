"""Storing an inbound text once: the quick path (one guarded write) or the slow path.

The quick path is one DynamoDB transaction: the text, on the condition that the
number has not opted out, with the number's turn lease taken (sync mode; in
auto/async the work item's claim is the turn) and its rate counters counted under
their caps. When only the lease is taken (a burst), the text is written again
without it and waits for the turn. When anything else does not hold, nothing is
written and the text takes the slow path: read the number's state, store the text,
then let the handler count it and wait for the turn separately, as before.
"""

from __future__ import annotations

from dataclasses import replace

from app.limits import Limits, RateVerdict, TurnLease
from app.turn import Turn
from app.twilio_form import InboundText
from conversation import ConversationManager
from conversation.guards import LEASE, GuardFailed, TextGuard
from conversation.models import Message


def record_text(
    manager: ConversationManager, limits: Limits, text: InboundText, command: str | None,
    lease: TurnLease | None, turn: Turn,
) -> tuple[Message, bool, RateVerdict | None]:
    """Store the text once (idempotent on MessageSid); return it, whether it is new and,
    when its write also counted it against the rate limits, the verdict.

    ``lease`` is taken with the text on the quick path (``lease.held`` says so).
    """
    metadata = text.metadata()
    if command:
        metadata["command"] = command
    guard = TextGuard(
        not_opted_out=True, lease_owner=lease.owner if lease else None,
        lease_seconds=lease.seconds if lease else 0.0, caps=limits.caps(),
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
            if failed.failed == {LEASE} and attempt == 0:
                # Only the turn is busy (a burst): store the text with the other checks
                # still made in its write; the handler then waits for the turn.
                guard = replace(guard, lease_owner=None)
                continue
            break
        if not quick.created:
            return quick.message, False, None
        if lease is not None and guard.lease_owner:
            lease.taken()
        return quick.message, True, RateVerdict(True)
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
    return recorded.message, recorded.created, None
