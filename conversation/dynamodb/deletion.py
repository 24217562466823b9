"""Deletion and export: soft and hard deletes of a conversation, erasing and exporting a number.

Deletes are paginated batch writes ordered so that a crash midway leaves an
item to retry from; every operation is safe to re-run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from conversation.dynamodb import codec, keys
from conversation.dynamodb.codec import s
from conversation.dynamodb.conversations import Conversations
from conversation.dynamodb.listings import Listings
from conversation.dynamodb.table import Table
from conversation.errors import ConversationNotFound
from conversation.models import Conversation, isoformat, utc_now

# An erase reads and deletes again while texts keep landing, this many times at most.
ERASE_ROUNDS = 5


class Deletion:
    """Remove what is stored for a conversation or a whole number, and read it all out."""

    def __init__(self, table: Table, conversations: Conversations, listings: Listings) -> None:
        self.table = table
        self.conversations = conversations
        self.listings = listings

    def soft_delete(self, user_id: str, conversation_id: str) -> Conversation:
        """Hide a conversation from listings and archive it; its items stay."""
        if self.conversations.get(user_id, conversation_id) is None:
            raise ConversationNotFound(conversation_id)
        self.conversations.archive_if_active(user_id, conversation_id)
        removed = ", ".join(keys.ACTIVITY_ATTRIBUTES)
        return self.conversations.update_existing(
            user_id,
            conversation_id,
            "SET deleted_at = if_not_exists(deleted_at, :now), is_active = :f, updated_at = :now "
            f"REMOVE {removed}",
            {":now": s(isoformat(utc_now())), ":f": codec.b(False)},
        )

    def hard_delete(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation's header, messages and markers; return items deleted.

        Safe to re-run: a half-finished deletion is completed by the next call.
        """
        existed = self.conversations.get(user_id, conversation_id) is not None
        self.conversations.archive_if_active(user_id, conversation_id)
        message_keys = []
        marker_keys = []
        attributes = ("sk", "message_id", "marked")
        for item in self.listings.partition(user_id, keys.messages_prefix(conversation_id), attributes):
            message_keys.append(keys.sort_key_of(item))
            if item.get("marked", {}).get("BOOL"):
                marker_keys.append(keys.marker_sk(item["message_id"]["S"]))
        # Markers first, header last: a retry after a crash still finds the header.
        deleted = self.table.delete(user_id, marker_keys)
        deleted += self.table.delete(user_id, message_keys)
        if existed:
            deleted += self.table.delete(user_id, [keys.conversation_sk(conversation_id)])
        elif not message_keys:
            raise ConversationNotFound(conversation_id)
        return deleted

    def erase_user(self, user_id: str) -> int:
        """Delete every item stored for a user; return how many were deleted.

        Paginated batch deletes, repeated until a read finds nothing left (at
        most ``ERASE_ROUNDS`` times): a text that lands while the erase runs is
        erased too. Safe to re-run (a second run deletes nothing).
        """
        deleted = 0
        for _ in range(ERASE_ROUNDS):
            sort_keys = [
                keys.sort_key_of(item) for item in self.listings.partition(user_id, None, ("sk",))
            ]
            if not sort_keys:
                break
            # The user item goes last so a crash midway leaves a record to retry from.
            sort_keys.sort(key=lambda sk: keys.kind_of(sk) == "user")
            deleted += self.table.delete(user_id, sort_keys)
        return deleted

    def export(self, user_id: str) -> Iterator[dict[str, Any]]:
        """Yield the user, conversations and messages stored for a number as plain dicts."""
        for item in self.listings.partition(user_id, None, None):
            kind = keys.kind_of(keys.sort_key_of(item))
            if kind == "message":
                yield {"type": "message", **codec.message_from_item(item).to_dict()}
            elif kind == "conversation":
                yield {"type": "conversation", **codec.conversation_from_item(item).to_dict()}
            elif kind == "user":
                yield {"type": "user", **codec.user_from_item(user_id, item).to_dict()}
