"""Messages: append (idempotent, as a reply, with counters), read back, update metadata."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from conversation.dynamodb import codec, keys
from conversation.dynamodb.codec import s
from conversation.dynamodb.conversations import Conversations
from conversation.dynamodb.coordination import Coordination
from conversation.dynamodb.table import Table, TransactionCancelled, pause
from conversation.dynamodb.work import Work
from conversation.errors import ConversationNotFound, StorageError
from conversation.guards import LEASE, OPTED_OUT, WORK, GuardFailed, ReplyGuard, TextGuard
from conversation.models import Message, Recorded

# Transactions retried on contention (another writer on the same header).
TX_ATTEMPTS = 12
# A guard's counter actions are named with this prefix (GuardFailed names the counter).
_CAP = "cap:"
# The reply's write that ends the number's work (ReplyGuard.finish_version).
_FINISH = "finish"


def _guard_name(action: str) -> str:
    return action.removeprefix(_CAP)


class Messages:
    """Write and read message items (and the message-id markers of idempotent appends)."""

    def __init__(
        self, table: Table, conversations: Conversations, coordination: Coordination, work: Work
    ) -> None:
        self.table = table
        self.conversations = conversations
        self.coordination = coordination
        self.work = work

    def item(self, user_id: str, message: Message, sk: str) -> dict[str, Any]:
        """Return the item ``message`` is stored as under ``sk``."""
        return codec.message_item(user_id, message, sk, expires_at=self.table.expires_at())

    def put(self, item: dict[str, Any]) -> dict[str, Any]:
        """Return the transaction action that writes a new item (never overwriting one)."""
        return {
            "Put": {
                "TableName": self.table.name,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        }

    def append(
        self,
        user_id: str,
        message: Message,
        *,
        conversation_id: str | None = None,
        idempotent: bool = False,
        reply_to: Message | None = None,
        counters: dict[str, int] | None = None,
        active_hint: str | None = None,
        guard: TextGuard | None = None,
        release_lease: str | None = None,
        reply_guard: ReplyGuard | None = None,
    ) -> Recorded:
        """Append a message with one transactional write; return it and whether it is new.

        With ``idempotent`` the message id is reserved by a marker item, so a
        second append with the same id stores nothing and returns the first.
        With ``reply_to`` the message is stored as *the* reply to that message
        (one per message), right after it, in the same conversation.
        ``counters`` are added to the conversation header's counters atomically.
        ``active_hint`` is the active conversation id if the caller just read it;
        it saves a read, and a stale hint only costs a retry.

        ``guard`` adds its conditions to the same transaction (a ConditionCheck on the
        user item, the lease's Put, a capped ADD per counter): one of them failing
        raises GuardFailed naming all that failed, and nothing is written. (A repeated
        idempotent append still returns the first copy.) ``release_lease`` adds the
        lease's conditional Delete: if another owner holds the lease by then, the
        message is stored without it. ``reply_guard`` adds the work claim's renewal or
        end and the opt-out check (see :class:`ReplyGuard`).
        """
        if reply_to is not None:
            if not reply_to.position or not reply_to.conversation_id:
                raise ValueError("reply_to must be a stored message")
            conversation_id = reply_to.conversation_id
            message.reply_to = reply_to.message_id
        self.table.check_size(self.item(user_id, message, keys.longest_position()), "message")
        pinned = conversation_id is not None
        cid: str | None = None
        for attempt in range(TX_ATTEMPTS):
            if conversation_id is not None:
                cid = conversation_id
            elif attempt == 0 and active_hint:
                cid = active_hint
            else:
                cid = self.conversations.active_id(user_id, stale=cid)
            if reply_to is not None and reply_to.position is not None:
                position = keys.reply_position(reply_to.position)
            else:
                position = keys.new_position(message.timestamp)
            sk = keys.message_sk(cid, position)
            try:
                actions = self._actions(user_id, cid, sk, message, idempotent, pinned, counters)
                actions += self._guard_actions(user_id, guard, release_lease)
                actions += self._reply_guard_actions(user_id, reply_guard)
                self.table.transact(actions)
            except TransactionCancelled as cancelled:
                if idempotent and cancelled.failed("marker"):
                    existing = self.get(user_id, message.message_id)
                    if existing is not None:
                        return Recorded(existing, created=False)
                    # The marker outlived its message (TTL race); treat as new.
                    self.table.delete(user_id, [keys.marker_sk(message.message_id)])
                    continue
                if cancelled.failed("message"):
                    if reply_to is not None:
                        existing = self.at(user_id, cid, position)
                        if existing is not None:
                            return Recorded(existing, created=False)
                    continue
                if reply_guard is not None and cancelled.failed(_FINISH):
                    # Newer texts came (or the claim is gone): store it renewing the claim instead.
                    reply_guard = replace(reply_guard, finish_version=None)
                    continue
                failed = [name for name, _ in self._guard_actions(user_id, guard, None)
                          + self._reply_guard_actions(user_id, reply_guard) if cancelled.failed(name)]
                if failed:
                    raise GuardFailed([_guard_name(name) for name in failed]) from None
                if release_lease and cancelled.failed("release"):
                    release_lease = None  # another owner holds the lease now: not ours to give back
                    continue
                if cancelled.failed("header"):
                    if pinned:
                        if self.conversations.get(user_id, cid) is None:
                            raise ConversationNotFound(cid) from None
                        raise ConversationNotFound(f"{cid} is deleted") from None
                    # The conversation was archived (or erased) under us: use the
                    # new one, after a pause if this keeps happening.
                    if attempt:
                        pause(attempt, base=0.005, cap=0.2)
                    continue
                if cancelled.conflict:
                    pause(attempt)
                    continue
                raise StorageError(f"append failed: {cancelled.codes}") from None
            message.conversation_id = cid
            message.position = position
            finished = reply_guard is not None and reply_guard.finish_version is not None
            return Recorded(message, created=True, finished=finished)
        raise StorageError("append failed: too much contention on this conversation")

    def _actions(
        self,
        user_id: str,
        cid: str,
        sk: str,
        message: Message,
        idempotent: bool,
        pinned: bool,
        counters: dict[str, int] | None,
    ) -> list[tuple[str, dict[str, Any]]]:
        item = self.item(user_id, message, sk)
        actions = [("message", self.put(item))]
        if idempotent:
            # The message says it has a marker, so a hard delete removes exactly those.
            item["marked"] = codec.b(True)
            marker = {**keys.key(user_id, keys.marker_sk(message.message_id)), "msg_sk": s(sk)}
            if "expires_at" in item:
                marker["expires_at"] = item["expires_at"]
            actions.append(("marker", self.put(marker)))
        header = self.conversations.messages_added(user_id, cid, [message], counters, pinned=pinned)
        actions.append(("header", header))
        return actions

    def _guard_actions(
        self, user_id: str, guard: TextGuard | None, release_lease: str | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Return the guard's conditions and the lease's release as named transaction actions."""
        coordination = self.coordination
        actions: list[tuple[str, dict[str, Any]]] = []
        if guard is not None:
            if guard.not_opted_out:
                actions.append((OPTED_OUT, self.conversations.users.not_opted_out(user_id)))
            if guard.lease_owner:
                put = coordination.lease_put(user_id, guard.lease_owner, guard.lease_seconds)
                actions.append((LEASE, {"Put": put}))
            for cap in guard.caps:
                add = coordination.capped_add(user_id, cap.name, below=cap.below, expires_in=cap.expires_in)
                actions.append((_CAP + cap.name, add))
            if guard.work is not None:
                actions.append((WORK, {"Update": self.work.note_update(user_id, guard.work)}))
        if release_lease:
            actions.append(("release", {"Delete": coordination.lease_delete(user_id, release_lease)}))
        return actions

    def _reply_guard_actions(
        self, user_id: str, guard: ReplyGuard | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Return a reply's checks on the number: not opted out, and the work's renewal or end."""
        if guard is None:
            return []
        actions: list[tuple[str, dict[str, Any]]] = []
        if guard.not_opted_out:
            actions.append((OPTED_OUT, self.conversations.users.not_opted_out(user_id)))
        if guard.finish_version is not None:
            finish = self.work.finish_delete(user_id, guard.owner, guard.finish_version)
            actions.append((_FINISH, {"Delete": finish}))
        else:
            actions.append((WORK, {"Update": self.work.renew_update(user_id, guard.owner, guard.seconds)}))
        return actions

    # ------------------------------------------------------------------ reads

    def at(self, user_id: str, conversation_id: str, position: str) -> Message | None:
        """Return the message at a position of a conversation, or None."""
        item = self.table.get(user_id, keys.message_sk(conversation_id, position))
        return None if item is None else codec.message_from_item(item)

    def get(self, user_id: str, message_id: str) -> Message | None:
        """Return a message by the id it was appended with idempotently, or None."""
        marker = self.table.get(user_id, keys.marker_sk(message_id))
        if marker is None:
            return None
        item = self.table.get(user_id, marker["msg_sk"]["S"])
        return None if item is None else codec.message_from_item(item)

    def reply_to(self, user_id: str, message: Message) -> Message | None:
        """Return the reply stored for a message, or None if it has none yet."""
        if not message.position or not message.conversation_id:
            return None
        return self.at(user_id, message.conversation_id, keys.reply_position(message.position))

    def from_end(self, user_id: str, conversation_id: str, *, forward: bool, limit: int) -> list[Message]:
        """Return up to ``limit`` live messages from one end of a conversation (one Query)."""
        query = self.table.live_query(user_id, keys.messages_prefix(conversation_id), forward=forward)
        response = self.table.call("query", **query, Limit=limit)
        return [codec.message_from_item(item) for item in response.get("Items", [])]

    def after(self, user_id: str, conversation_id: str, position: str | None, limit: int) -> list[Message]:
        """Return up to ``limit`` messages after ``position`` (from the start when None), oldest first."""
        if limit <= 0:
            return []
        query = self.table.live_query(user_id, keys.messages_prefix(conversation_id), forward=True)
        if position:
            query["ExclusiveStartKey"] = keys.key(user_id, keys.message_sk(conversation_id, position))
        items, _ = self.table.query_up_to(query, limit)
        return [codec.message_from_item(item) for item in items]

    def recent(self, user_id: str, conversation_id: str, limit: int) -> list[Message]:
        """Return the newest ``limit`` messages, oldest first, with one Query."""
        if limit <= 0:
            return []
        messages = self.from_end(user_id, conversation_id, forward=False, limit=limit)
        messages.reverse()
        return messages
