"""Rolling memory: which messages fold into a conversation's running summary, and how.

The model sees the newest messages (the window) with every text. Older messages
are folded into a summary that travels with the window, so what a texter said
long ago is not lost, while the prompt stays the same size however long the
conversation grows.

The policy, with window ``W`` messages and an update every ``K`` messages:

* an update is due once ``W`` messages are not yet covered by the summary;
* it folds every uncovered message except the newest ``W - K`` still in the
  window (fewer when the character budget makes the window shorter), so the
  summary overlaps the window a little instead of leaving a gap;
* so it runs about once every ``K`` messages, never for the same messages twice
  (the store's claim says who may update it), and folds at most
  ``max_fold`` messages per update (a long conversation catches up over a few).

This module builds the request and bounds the answer; calling a model and
scheduling the work belong to the application.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conversation import defaults
from conversation.models import Conversation, Message
from conversation.window import context_window

log = logging.getLogger(__name__)

# Asks a model for a summary: chat messages in, (summary text or None, tokens used) out.
Summariser = Callable[[list[dict[str, str]]], tuple[str | None, int]]

SUMMARY_INSTRUCTIONS = (
    "You keep the memory of a text-message conversation between a person and DadaCat, a "
    "surreal chatbot cat. Rewrite the memory so that it also covers the new messages. Keep "
    "what the person said about themselves and the people, pets, places, plans, likes and "
    "dates they mentioned, the running jokes, and anything they asked DadaCat to remember; "
    "drop small talk. Newer facts replace older ones they contradict. Write short plain "
    "sentences in the third person, no lists or headings, at most {max_chars} characters. "
    "Answer with the memory only."
)
MEMORY_HEADING = "Memory so far:"
NEW_HEADING = "New messages:"
NO_MEMORY = "(nothing yet)"
# How the persona is told about the summary (a system message before the window).
SUMMARY_PREFIX = (
    "What you remember from earlier in this conversation (older messages are no longer "
    "shown): "
)
SPEAKERS = {"user": "Person", "assistant": "DadaCat"}
# Longest text of one message put into a summary request.
MESSAGE_CHARS = 600


@dataclass(frozen=True)
class MemoryPolicy:
    """When to update a conversation's summary, what to fold, and how big it may be."""

    window_messages: int = defaults.HISTORY_MAX_MESSAGES
    window_chars: int = defaults.HISTORY_MAX_CHARS
    update_every: int = defaults.MEMORY_UPDATE_EVERY
    max_chars: int = defaults.MEMORY_SUMMARY_MAX_CHARS
    max_fold: int = 200

    def __post_init__(self) -> None:
        if self.update_every < 1:
            raise ValueError("update_every must be at least 1")
        if self.max_chars < 1:
            raise ValueError("max_chars must be at least 1")

    @property
    def keep(self) -> int:
        """How many of the newest messages stay out of the summary after an update."""
        return max(0, self.window_messages - self.update_every)

    def uncovered(self, conversation: Conversation) -> int:
        """Return how many messages the summary does not cover yet."""
        covered = conversation.summary.count if conversation.summary else 0
        return max(0, conversation.message_count - covered)

    def due(self, conversation: Conversation, *, added: int = 0) -> bool:
        """Return whether an update is due, from the header's counts (plus ``added`` since read)."""
        return self.uncovered(conversation) + added >= max(self.window_messages, self.update_every)

    def window(self, messages: Sequence[Message]) -> list[Message]:
        """Return the newest messages the model sees with a text (``conversation.window``)."""
        return context_window(messages, max_messages=self.window_messages, max_chars=self.window_chars)

    def to_fold(self, uncovered: Sequence[Message], *, complete: bool) -> list[Message]:
        """Choose the messages to fold from the oldest uncovered ones.

        ``complete`` says ``uncovered`` runs to the newest message; when it does
        not (more than one update's worth is waiting), the oldest ``max_fold``
        are folded and the rest wait for the next update.
        """
        uncovered = list(uncovered)
        if complete:
            in_window = len(self.window(uncovered))
            keep = max(0, in_window - self.update_every)
            chosen = uncovered[: len(uncovered) - keep]
            # Fewer than K is worth folding only when some already left the window.
            if len(chosen) < self.update_every and len(uncovered) <= in_window:
                return []
        else:
            chosen = uncovered
        return chosen[: self.max_fold]

    def request(self, previous: str | None, messages: Sequence[Message]) -> list[dict[str, str]]:
        """Return the chat messages asking a model to fold ``messages`` into ``previous``."""
        lines = []
        for message in messages:
            speaker = SPEAKERS.get(message.role)
            if speaker is None:
                continue  # system notes are not conversation
            content = " ".join(message.content.split())[:MESSAGE_CHARS]
            if message.media_urls:
                content = (content + " [sent a picture]").strip()
            if content:
                lines.append(f"{speaker}: {content}")
        body = "\n".join(
            [MEMORY_HEADING, (previous or "").strip() or NO_MEMORY, "", NEW_HEADING, *lines]
        )
        return [
            {"role": "system", "content": SUMMARY_INSTRUCTIONS.format(max_chars=self.max_chars)},
            {"role": "user", "content": body},
        ]

    def bound(self, text: str | None) -> str | None:
        """Return the model's summary cut to ``max_chars`` on a sentence or word end; None if empty."""
        text = " ".join((text or "").split())
        if not text:
            return None
        if len(text) <= self.max_chars:
            return text
        cut = text[: self.max_chars]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        if end >= self.max_chars // 2:
            return cut[: end + 1]
        space = cut.rfind(" ")
        return (cut[:space] if space >= self.max_chars // 2 else cut).rstrip()


def summary_message(text: str | None) -> dict[str, str] | None:
    """Return the system message that gives the persona its memory, or None without one."""
    if not text or not text.strip():
        return None
    return {"role": "system", "content": SUMMARY_PREFIX + text.strip()}


def update_summary(
    storage: Any,
    user_id: str,
    conversation_id: str,
    summarise: Summariser,
    policy: MemoryPolicy,
    *,
    claim_seconds: float = 60.0,
) -> str:
    """Fold what is due into the conversation's summary; return what happened.

    Outcomes: ``"updated"``, ``"not_due"``, ``"busy"`` (another worker holds the
    claim or got there first), ``"failed"`` (the model gave nothing; the
    previous summary, or none, stays) and ``"gone"`` (no such conversation).
    The claim is taken before the model is asked, so no two workers on any
    instance summarise the same messages; the save is conditional on it.
    """
    conversation = storage.get_conversation(user_id, conversation_id)
    if conversation is None or conversation.deleted_at:
        return "gone"
    if not policy.due(conversation):
        return "not_due"
    previous = conversation.summary
    upto = previous.upto if previous else None
    owner = secrets.token_hex(8)
    if not storage.claim_summary(user_id, conversation_id, owner, claim_seconds, upto=upto):
        return "busy"
    try:
        limit = policy.max_fold + policy.window_messages
        uncovered = storage.messages_after(user_id, conversation_id, upto, limit)
        fold = policy.to_fold(uncovered, complete=len(uncovered) < limit)
        if not fold:
            storage.release_summary_claim(user_id, conversation_id, owner)
            return "not_due"
        text, tokens = summarise(policy.request(previous.text if previous else None, fold))
        text = policy.bound(text)
        if text is None:
            storage.release_summary_claim(user_id, conversation_id, owner)
            return "failed"
        count = (previous.count if previous else 0) + len(fold)
        saved = storage.save_summary(
            user_id, conversation_id, owner, text, upto=fold[-1].position, count=count, tokens=tokens
        )
        return "updated" if saved else "busy"
    except BaseException:
        try:
            storage.release_summary_claim(user_id, conversation_id, owner)
        except Exception:  # the claim lapses on its own
            log.warning("could not release a summary claim; it lapses in %.0f s", claim_seconds)
        raise
