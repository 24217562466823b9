"""An OpenAI Agents SDK session kept in the DadaCat conversation table.

``DynamoDBSession`` implements the SDK's ``Session`` protocol (``get_items``,
``add_items``, ``pop_item``, ``clear_session``) over a ConversationStore
(:class:`DynamoDBStorage` in production), so ``Runner.run(agent, text,
session=session)`` remembers earlier turns.

Layout: a session is one conversation, id ``session``, of the user
``agent:<session_id>`` (same partition scheme, header and TTL as an SMS
conversation). Each SDK item is one message item whose ``content`` is the item
as JSON text, so floats, nesting, key order and lone surrogates come back
exactly, with no Decimal. Items are keyed by a per-session sequence number
kept in the header (an atomic ``ADD``), so they come back in the order they
were added, whatever the clocks of the processes that added them. Roles:
``user`` messages are ``user``, ``system``/``developer`` messages are
``system``, and everything else (assistant messages, tool calls, tool outputs,
reasoning) is ``assistant``; the item's ``type`` is kept in the
message metadata as ``sdk_type``.

This module needs ``openai-agents`` (the ``agents`` extra: ``pip install openai-agents==0.24.0``);
``conversation`` itself never imports it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

try:
    from agents.memory import SessionSettings
    from agents.memory.session_settings import coerce_session_settings, resolve_session_limit
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "conversation.agents_session needs the OpenAI Agents SDK: pip install openai-agents==0.24.0"
    ) from exc

from conversation.ids import check_user_id
from conversation.models import MAX_PAGE_SIZE, Message, isoformat, utc_now
from conversation.store import ConversationStore

SESSION_CONVERSATION_ID = "session"
DEFAULT_USER_PREFIX = "agent:"

_T = TypeVar("_T")


def _role_for(item: Any) -> str:
    """Map an SDK item to one of the store's three roles."""
    role = item.get("role") if isinstance(item, dict) else None
    if role == "user":
        return "user"
    if role in ("system", "developer"):
        return "system"
    return "assistant"


def _type_of(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("type") or ("message" if "role" in item else "unknown"))
    return "unknown"


def _encode(item: Any) -> str:
    """Encode an item as JSON text that DynamoDB (UTF-8) can store and give back exactly.

    A lone surrogate (half of an emoji's UTF-16 pair) has no UTF-8 form; such
    an item is written with ASCII escapes (``\\ud83d``), which ``json.loads``
    turns back into the same string.
    """
    text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(item, ensure_ascii=True, separators=(",", ":"))
    return text


async def _finish_even_if_cancelled(awaitable: Awaitable[_T]) -> _T:
    """Await a write to its end, then re-raise a cancellation that came meanwhile.

    A write running in a worker thread cannot be stopped; returning early would
    let the caller believe it did not happen.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # consumed so it is not reported as never retrieved
        raise cancelled
    return task.result()


class DynamoDBSession:
    """Keep an agent's conversation history in DynamoDB (OpenAI Agents SDK ``Session``).

    :param session_id: the SDK session id; with its prefix it must be a valid user
        id (``conversation.ids``: at most 256 characters, no whitespace or ``# / ? % \\``).
    :param storage: the conversation store; its ``ttl_days`` applies here too.
    :param session_settings: the SDK's settings; ``limit`` is the default for ``get_items``.
    :param user_prefix: prepended to ``session_id`` to form the store's user id,
        keeping agent sessions apart from phone numbers.
    """

    def __init__(
        self,
        session_id: str,
        storage: ConversationStore,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        user_prefix: str = DEFAULT_USER_PREFIX,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        # The same rule as every other user id, so the operator API and CLI
        # can read, export and erase the session (InvalidUserId is a ValueError).
        user_id = check_user_id(f"{user_prefix}{session_id}")
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings) if session_settings is not None else SessionSettings()
        )
        self.storage = storage
        self.user_id = user_id
        self.conversation_id = SESSION_CONVERSATION_ID

    def __repr__(self) -> str:
        return f"DynamoDBSession({self.session_id!r}, store={self.storage!r})"

    # ----------------------------------------------------------- the protocol

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """Return the newest ``limit`` items (all when None), oldest first."""
        resolved = resolve_session_limit(limit, self.session_settings)
        return await asyncio.to_thread(self._get_items, resolved)

    async def add_items(self, items: list[Any]) -> None:
        """Append items in order with one transaction (per 99 items or 3.5 MB).

        :raises MessageTooLarge: an item is too big for DynamoDB; nothing was written.
        """
        if not items:
            return
        timestamp = isoformat(utc_now())
        # Encoding happens here, before any write: an unencodable item refuses the batch.
        messages = [
            Message(
                content=_encode(item),
                role=_role_for(item),
                timestamp=timestamp,
                metadata={"sdk_type": _encode(_type_of(item))[1:-1]},
            )
            for item in items
        ]
        # Sequenced: the order is the order of the calls, not of the clock
        # (two calls in one microsecond, or a clock stepping back).
        await _finish_even_if_cancelled(
            asyncio.to_thread(
                self.storage.append_many,
                self.user_id,
                messages,
                conversation_id=self.conversation_id,
                create=True,
                sequenced=True,
            )
        )

    async def pop_item(self) -> Any | None:
        """Remove and return the newest item; None when the session is empty."""
        return await _finish_even_if_cancelled(asyncio.to_thread(self._pop_item))

    async def clear_session(self) -> None:
        """Delete every item of the session and its header."""
        await _finish_even_if_cancelled(
            asyncio.to_thread(self.storage.clear_conversation, self.user_id, self.conversation_id)
        )

    # ---------------------------------------------------------- sync helpers

    def _get_items(self, limit: int | None) -> list[Any]:
        # Like SQLiteSession: 0 means nothing, a negative limit means everything.
        if limit == 0:
            return []
        newest_first = limit is not None and limit > 0
        wanted = limit if newest_first else None
        items: list[Any] = []
        cursor = None
        while True:
            page_size = MAX_PAGE_SIZE if wanted is None else min(MAX_PAGE_SIZE, wanted - len(items))
            page = self.storage.list_messages(
                self.user_id,
                self.conversation_id,
                limit=page_size,
                cursor=cursor,
                newest_first=newest_first,
            )
            for message in page.items:
                try:
                    items.append(json.loads(message.content))
                except ValueError:
                    continue  # not an SDK item; skipped as SQLiteSession skips bad rows
            cursor = page.cursor
            if cursor is None or (wanted is not None and len(items) >= wanted):
                break
        if newest_first:
            items.reverse()
        return items

    def _pop_item(self) -> Any | None:
        while True:
            message = self.storage.pop_newest(self.user_id, self.conversation_id)
            if message is None:
                return None
            try:
                return json.loads(message.content)
            except ValueError:
                continue  # drop an undecodable item and keep looking, as SQLiteSession does
