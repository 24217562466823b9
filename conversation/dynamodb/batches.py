"""Batches of messages for agent sessions: ordered multi-item appends, pop the newest, clear."""

from __future__ import annotations

from conversation.dynamodb import keys
from conversation.dynamodb.conversations import Conversations
from conversation.dynamodb.listings import Listings
from conversation.dynamodb.messages import TX_ATTEMPTS, Messages
from conversation.dynamodb.table import ConditionFailed, Table, TransactionCancelled, pause
from conversation.errors import ConversationNotFound, StorageError
from conversation.models import Message

# One transaction holds at most 100 actions and 4 MB: 99 messages plus their header.
BATCH_MESSAGES = 99
BATCH_BYTES = 3_500_000
_POP_ATTEMPTS = 200


class Batches:
    """Append many messages in order, take the newest back, delete a whole conversation."""

    def __init__(
        self, table: Table, conversations: Conversations, messages: Messages, listings: Listings
    ) -> None:
        self.table = table
        self.conversations = conversations
        self.messages = messages
        self.listings = listings

    def append_many(
        self,
        user_id: str,
        messages: list[Message],
        *,
        conversation_id: str | None = None,
        create: bool = False,
        counters: dict[str, int] | None = None,
        sequenced: bool = False,
    ) -> list[Message]:
        """Append messages in the given order with as few transactions as possible.

        Every item is size-checked before anything is written, so one oversized
        message refuses the whole batch (MessageTooLarge). A batch that fits one
        transaction (99 messages and about 3.5 MB; DynamoDB allows 100 actions and
        4 MB) is all-or-nothing. A larger batch is written as consecutive
        transactions in order, each all-or-nothing: a failure midway leaves a
        prefix of the batch stored, never a gap. Positions share one time and end
        in the item's index, so order holds even with equal timestamps.
        With ``create`` the header of ``conversation_id`` is made if missing;
        without ``conversation_id`` the user's active conversation is used.
        ``counters`` are added to the header with the first transaction.
        With ``sequenced`` (it needs ``conversation_id``) the messages are keyed
        by numbers reserved from the header's ``seq`` counter instead of the
        clock, so the order is the order of the calls, across processes, however
        the clocks of the writers disagree.
        """
        if not messages:
            return []
        if (create or sequenced) and conversation_id is None:
            raise ValueError("create and sequenced need a conversation_id")
        probe_sk = keys.longest_position(conversation_id)
        sizes = [
            self.table.check_size(self.messages.item(user_id, message, probe_sk), "message")
            for message in messages
        ]
        chunks: list[list[int]] = [[]]
        budget = 0
        for index, size in enumerate(sizes):
            if chunks[-1] and (len(chunks[-1]) >= BATCH_MESSAGES or budget + size > BATCH_BYTES):
                chunks.append([])
                budget = 0
            chunks[-1].append(index)
            budget += size
        if sequenced:
            assert conversation_id is not None
            first = self.conversations.reserve_sequence(
                user_id, conversation_id, len(messages), create=create
            )
            positions = keys.sequence_positions(first, len(messages))
        else:
            positions = keys.batch_positions(messages[0].timestamp, len(messages))
        cid = conversation_id
        for number, chunk in enumerate(chunks):
            settle = counters if number == 0 else None
            self._append_chunk(user_id, messages, chunk, positions, cid, create, settle)
            cid = messages[chunk[0]].conversation_id
        return messages

    def _append_chunk(
        self,
        user_id: str,
        messages: list[Message],
        chunk: list[int],
        positions: list[str],
        cid: str | None,
        create: bool,
        counters: dict[str, int] | None,
    ) -> None:
        pinned = cid is not None
        batch = [messages[i] for i in chunk]
        target: str | None = None
        for attempt in range(TX_ATTEMPTS):
            target = cid if cid is not None else self.conversations.active_id(user_id, stale=target)
            actions = [
                (f"message {i}", self.messages.put(self.messages.item(user_id, messages[i], sk)))
                for i in chunk
                for sk in [keys.message_sk(target, positions[i])]
            ]
            header = self.conversations.messages_added(
                user_id, target, batch, counters, pinned=pinned, create=create
            )
            actions.append(("header", header))
            try:
                self.table.transact(actions)
            except TransactionCancelled as cancelled:
                if cancelled.failed("header"):
                    if pinned:
                        raise ConversationNotFound(f"{target} is missing or deleted") from None
                    continue  # archived under us: use the new active conversation
                if cancelled.conflict:
                    pause(attempt)
                    continue
                raise StorageError(f"batch append failed: {cancelled.codes}") from None
            for i in chunk:
                messages[i].conversation_id = target
                messages[i].position = positions[i]
            return
        raise StorageError("batch append failed: too much contention on this conversation")

    def pop_newest(self, user_id: str, conversation_id: str) -> Message | None:
        """Delete and return a conversation's newest message; None when it has none.

        Safe under concurrent callers: the delete is conditional on the item still
        existing, so a message goes to one caller only; the others move on to the
        next newest. The header's counts drop in the same transaction. (A marker
        from an idempotent append is left; ``get_message`` then finds nothing.)
        """
        for attempt in range(_POP_ATTEMPTS):
            newest = self.messages.recent(user_id, conversation_id, 1)
            if not newest:
                return None
            message = newest[0]
            assert message.position is not None
            delete = {
                "Delete": {
                    "TableName": self.table.name,
                    "Key": keys.key(user_id, keys.message_sk(conversation_id, message.position)),
                    "ConditionExpression": "attribute_exists(sk)",
                }
            }
            header = self.conversations.message_removed(user_id, conversation_id, message.role)
            try:
                self.table.transact([("message", delete), ("header", header)])
            except TransactionCancelled as cancelled:
                if cancelled.failed("message"):
                    continue  # another caller took it: try the next newest
                if cancelled.failed("header"):
                    # No header (being cleared): take the message alone.
                    try:
                        self.table.call("delete_item", **delete["Delete"])
                    except ConditionFailed:
                        continue
                    return message
                if cancelled.conflict:
                    pause(attempt, base=0.005, cap=0.2)
                    continue
                raise StorageError(f"pop failed: {cancelled.codes}") from None
            return message
        raise StorageError("pop failed: too much contention on this conversation")

    def clear_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation's messages, then its header; return items deleted.

        Paginated batch deletes, safe to re-run. Meant for conversations written
        without message-id markers (agent sessions) and never made active;
        ``hard_delete_conversation`` also removes markers and the user's pointer.
        """
        items = self.listings.partition(user_id, keys.messages_prefix(conversation_id), ("sk",))
        sort_keys = [keys.sort_key_of(item) for item in items]
        # Header last, so a crash midway leaves something to retry from.
        return self.table.delete(user_id, sort_keys) + self.table.delete(
            user_id, [keys.conversation_sk(conversation_id)]
        )

