"""Conversation headers: start, activate, archive, reset, rename, and the counters each message adds."""

from __future__ import annotations

from typing import Any

from conversation.dynamodb import codec, keys
from conversation.dynamodb.codec import n, s
from conversation.dynamodb.table import ConditionFailed, Table, TransactionCancelled, pause
from conversation.dynamodb.users import Users
from conversation.errors import ConversationNotFound, StorageError
from conversation.models import Conversation, Message, isoformat, preview_of, utc_now

# Starting a conversation retries while a racing erase or reset keeps cancelling it.
_START_ATTEMPTS = 12


class Conversations:
    """Read and write conversation headers (and the user's pointer to the active one)."""

    def __init__(self, table: Table, users: Users) -> None:
        self.table = table
        self.users = users

    def get(self, user_id: str, conversation_id: str) -> Conversation | None:
        """Return one conversation header (without messages), or None."""
        item = self.table.get(user_id, keys.conversation_sk(conversation_id))
        return None if item is None else codec.conversation_from_item(item)

    def get_active(self, user_id: str) -> Conversation | None:
        """Return the active conversation's header, or None if there is none."""
        user = self.users.get(user_id)
        if user is None or not user.active_conversation_id:
            return None
        conversation = self.get(user_id, user.active_conversation_id)
        if conversation is None or not conversation.is_active:
            return None
        return conversation

    def start(self, user_id: str, *, replacing: str | None = None) -> str:
        """Make a new active conversation unless another one became active first.

        Returns the id of the conversation that is active afterwards.
        ``replacing`` is a pointer the caller found dangling; it is replaced.
        """
        for attempt in range(_START_ATTEMPTS):
            started = self._start_once(user_id, replacing)
            if started is not None:
                return started
            # Cancelled with no usable pointer (a racing erase or reset): retry.
            pause(attempt)
        raise StorageError("could not start a conversation: the user record kept changing")

    def _start_once(self, user_id: str, replacing: str | None) -> str | None:
        now = isoformat(utc_now())
        conversation_id = keys.new_conversation_id()
        header = codec.header_item(
            user_id, conversation_id, created_at=now, active=True, expires_at=self.table.expires_at()
        )
        pointer = self.users.pointer_update(
            user_id, conversation_id, now, refresh_ttl=True, replacing=replacing
        )
        try:
            self.table.transact([("header", self._put_new(header)), ("user", pointer)])
        except TransactionCancelled:
            user = self.users.get(user_id)
            active = user.active_conversation_id if user is not None else None
            if active and active != replacing:
                return active
            return None
        return conversation_id

    def active_id(self, user_id: str, *, stale: str | None = None) -> str:
        """Return the active conversation's id, starting a conversation when there is none.

        ``stale`` is an id an append just found archived or missing: if the user
        item still names it and its header is gone (an erase or hard delete ran
        midway), a new conversation replaces the dangling pointer.
        """
        user = self.users.get(user_id)
        active = user.active_conversation_id if user is not None else None
        if not active:
            return self.start(user_id)
        if active == stale and self.get(user_id, active) is None:
            return self.start(user_id, replacing=active)
        return active

    def create(
        self,
        user_id: str,
        conversation_id: str,
        *,
        created_at: str,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Create an archived conversation with a given id (imports); False if it exists."""
        header = codec.header_item(
            user_id,
            conversation_id,
            created_at=created_at,
            active=False,
            metadata=metadata,
            expires_at=self.table.expires_at(),
        )
        try:
            self.table.call("put_item", **self._put_new(header)["Put"])
        except ConditionFailed:
            return False
        return True

    def _put_new(self, header: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table.name,
                "Item": header,
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        }

    def activate(self, user_id: str, conversation_id: str) -> bool:
        """Make a conversation the active one if the user has none; False otherwise."""
        now = isoformat(utc_now())
        try:
            self.table.transact(
                [
                    (
                        "header",
                        {
                            "Update": {
                                "TableName": self.table.name,
                                "Key": keys.key(user_id, keys.conversation_sk(conversation_id)),
                                "UpdateExpression": "SET is_active = :t",
                                "ConditionExpression": (
                                    "attribute_exists(pk) AND attribute_not_exists(deleted_at)"
                                ),
                                "ExpressionAttributeValues": {":t": codec.b(True)},
                            }
                        },
                    ),
                    ("user", self.users.pointer_update(user_id, conversation_id, now)),
                ]
            )
        except TransactionCancelled:
            return False
        return True

    def archive(self, user_id: str, conversation_id: str) -> bool:
        """Mark a conversation inactive; the next message starts a new one.

        Returns False when it was already archived.
        """
        now = isoformat(utc_now())
        header = {
            "Update": {
                "TableName": self.table.name,
                "Key": keys.key(user_id, keys.conversation_sk(conversation_id)),
                "UpdateExpression": "SET is_active = :f, updated_at = :now, archived_at = :now",
                "ConditionExpression": "attribute_exists(pk) AND is_active = :t",
                "ExpressionAttributeValues": {
                    ":f": codec.b(False),
                    ":t": codec.b(True),
                    ":now": s(now),
                },
            }
        }
        try:
            self.table.transact(
                [("header", header), ("user", self.users.pointer_clear(user_id, conversation_id, now))]
            )
        except TransactionCancelled as cancelled:
            if cancelled.failed("header"):
                if self.get(user_id, conversation_id) is None:
                    raise ConversationNotFound(conversation_id) from None
                return False
            raise StorageError(f"archive failed: {cancelled.codes}") from None
        return True

    def archive_if_active(self, user_id: str, conversation_id: str) -> None:
        """Archive the conversation if it is active; do nothing if it is missing or archived."""
        try:
            self.archive(user_id, conversation_id)
        except ConversationNotFound:
            pass

    def reset(self, user_id: str) -> str | None:
        """Archive the user's active conversation; return its id (None if none)."""
        user = self.users.get(user_id)
        conversation_id = user.active_conversation_id if user is not None else None
        if not conversation_id:
            return None
        try:
            self.archive(user_id, conversation_id)
        except ConversationNotFound:
            self.users.drop_dangling_pointer(user_id, conversation_id)  # header hard-deleted
        return conversation_id

    def update(
        self,
        user_id: str,
        conversation_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        """Set a conversation's title and/or metadata; return the new header."""
        sets = ["updated_at = :now"]
        values: dict[str, Any] = {":now": s(isoformat(utc_now()))}
        if title is not None:
            sets.append("title = :title")
            values[":title"] = s(title)
        if metadata is not None:
            sets.append("metadata = :meta")
            values[":meta"] = codec.metadata_value(metadata)
        return self.update_existing(user_id, conversation_id, "SET " + ", ".join(sets), values)

    def update_existing(
        self, user_id: str, conversation_id: str, expression: str, values: dict[str, Any]
    ) -> Conversation:
        """Apply an update to an existing header and return it; ConversationNotFound if missing."""
        try:
            response = self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=keys.key(user_id, keys.conversation_sk(conversation_id)),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ConditionFailed:
            raise ConversationNotFound(conversation_id) from None
        return codec.conversation_from_item(response["Attributes"])

    # ------------------------------------------------------------------ counters

    def reserve_sequence(self, user_id: str, conversation_id: str, count: int, *, create: bool) -> int:
        """Reserve ``count`` consecutive sequence numbers in the header; return the first.

        One atomic ``ADD seq`` with ``ReturnValues``: two writers never get the same
        numbers, and numbers only grow. With ``create`` a missing header is made.
        """
        now = isoformat(utc_now())
        sets = ["updated_at = if_not_exists(updated_at, :now)"]
        values: dict[str, Any] = {":n": n(count), ":now": s(now)}
        condition = self._header_sets(user_id, conversation_id, sets, values, create=create)
        try:
            response = self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=keys.key(user_id, keys.conversation_sk(conversation_id)),
                UpdateExpression="SET " + ", ".join(sets) + " ADD seq :n",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )
        except ConditionFailed:
            raise ConversationNotFound(f"{conversation_id} is missing or deleted") from None
        return int(response["Attributes"]["seq"]["N"]) - count + 1

    def messages_added(
        self,
        user_id: str,
        conversation_id: str,
        batch: list[Message],
        counters: dict[str, int] | None,
        *,
        pinned: bool,
        create: bool = False,
    ) -> dict[str, Any]:
        """Return the header update that goes with appending ``batch``, in the same transaction.

        It counts the messages (per role), adds ``counters``, sets the preview and
        moves the header in the activity index. Unless ``pinned``, it fails when
        the conversation is no longer active (a reset won the race); with
        ``create`` it makes the header if missing.
        """
        now = isoformat(utc_now())
        last = batch[-1]
        names: dict[str, str] = {}
        index_keys = keys.activity_keys(now, user_id, conversation_id)
        values: dict[str, Any] = {
            ":n": n(len(batch)),
            ":now": s(now),
            ":ts": s(last.timestamp),
            ":preview": s(preview_of(last)),
            ":role": s(last.role),
            ":gpk": index_keys["gsi1pk"],
            ":gsk": index_keys["gsi1sk"],
        }
        adds = ["message_count :n"]
        per_role: dict[str, int] = {}
        for message in batch:
            per_role[message.role] = per_role.get(message.role, 0) + 1
        for index, (role, count) in enumerate(sorted(per_role.items())):
            names[f"#r{index}"] = codec.role_count_attribute(role)
            values[f":r{index}"] = n(count)
            adds.append(f"#r{index} :r{index}")
        adds += self._counter_adds(counters, names, values)
        sets = [
            "updated_at = :now",
            "last_message_at = :ts",
            "preview = :preview",
            "last_role = :role",
            "gsi1pk = :gpk",
            "gsi1sk = :gsk",
        ]
        condition = self._header_sets(user_id, conversation_id, sets, values, create=create)
        if not create and not pinned:
            condition += " AND is_active = :t"
            values[":t"] = codec.b(True)
        update: dict[str, Any] = {
            "TableName": self.table.name,
            "Key": keys.key(user_id, keys.conversation_sk(conversation_id)),
            "UpdateExpression": "SET " + ", ".join(sets) + " ADD " + ", ".join(adds),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        return {"Update": update}

    def _header_sets(
        self,
        user_id: str,
        conversation_id: str,
        sets: list[str],
        values: dict[str, Any],
        *,
        create: bool,
    ) -> str:
        """Add the expiry (and, with ``create``, a new header's fields) to a header update.

        Return its condition: the header exists (or, with ``create``, may be made) and
        is not deleted.
        """
        expires = self.table.expires_at()
        if expires is not None:
            sets.append("expires_at = :exp")
            values[":exp"] = n(expires)
        if not create:
            return "attribute_exists(pk) AND attribute_not_exists(deleted_at)"
        sets += [
            "entity = :entity",
            "user_id = :uid",
            "conversation_id = :cid",
            "created_at = if_not_exists(created_at, :now)",
            "is_active = if_not_exists(is_active, :t)",
        ]
        values.update(
            {
                ":entity": s("conversation"),
                ":uid": s(user_id),
                ":cid": s(conversation_id),
                ":t": codec.b(True),
            }
        )
        return "attribute_not_exists(deleted_at)"

    def counters_added(self, user_id: str, conversation_id: str, counters: dict[str, int]) -> dict[str, Any]:
        """Return the header update that adds usage ``counters`` (in a transaction)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        adds = self._counter_adds(counters, names, values)
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": keys.key(user_id, keys.conversation_sk(conversation_id)),
                "UpdateExpression": "ADD " + ", ".join(adds),
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def message_removed(self, user_id: str, conversation_id: str, role: str) -> dict[str, Any]:
        """Return the header update that un-counts one message of ``role`` (in a transaction)."""
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": keys.key(user_id, keys.conversation_sk(conversation_id)),
                "UpdateExpression": "ADD message_count :m, #rc :m",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeNames": {"#rc": codec.role_count_attribute(role)},
                "ExpressionAttributeValues": {":m": n(-1)},
            }
        }

    @staticmethod
    def _counter_adds(
        counters: dict[str, int] | None, names: dict[str, str], values: dict[str, Any]
    ) -> list[str]:
        adds = []
        for index, (name, amount) in enumerate(sorted((counters or {}).items())):
            names[f"#c{index}"] = codec.counter_attribute(name)
            values[f":c{index}"] = n(int(amount))
            adds.append(f"#c{index} :c{index}")
        return adds
