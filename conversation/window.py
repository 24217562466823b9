"""The context window: which earlier messages go to the model with a new text.

One policy for the whole bot. Walk back from the newest message, keeping only
conversation (user and assistant messages with something in them; never system
notes, never the text being answered, never anything stored after it), and stop
at the first message that would break either limit, a number of messages or a
number of characters. The window is therefore always the newest contiguous run
of the conversation, oldest first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from conversation.models import Message

T = TypeVar("T")

CONVERSATION_ROLES = ("user", "assistant")


def field_of(item: Any, name: str, default: Any = None) -> Any:
    """Read a field from a Message or from a plain dict of its fields."""
    if isinstance(item, dict):
        return item.get(name, default)
    return getattr(item, name, default)


def context_window(
    history: Sequence[T],
    *,
    max_messages: int,
    max_chars: int,
    text: Message | None = None,
    text_id: str | None = None,
    size: Callable[[T], int] | None = None,
) -> list[T]:
    """Return the messages of ``history`` (oldest first) that go with a new text.

    :param text: the stored text being answered: it and whatever sorts after it are left out.
    :param text_id: the id of the text being answered, when only that is known.
    :param size: how many characters a message takes in the prompt (its content by default).
    """
    measure = size or (lambda item: len(field_of(item, "content", "") or ""))
    skip_id = text.message_id if text is not None else text_id
    kept: list[T] = []
    used = 0
    for item in reversed(list(history)):
        if len(kept) >= max_messages:
            break
        if field_of(item, "role", "user") not in CONVERSATION_ROLES:
            continue
        if skip_id is not None and field_of(item, "message_id") == skip_id:
            continue
        if text is not None and isinstance(item, Message) and not item.precedes(text):
            continue
        chars = measure(item)
        if not chars:
            continue
        if used + chars > max_chars:
            break
        used += chars
        kept.append(item)
    kept.reverse()
    return kept
