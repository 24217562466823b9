"""Updates of stored messages: metadata merges, and the steps of a reply's delivery.

A reply's delivery keys (``DELIVERY_FIELDS``) are kept in their own attributes (see
:mod:`conversation.dynamodb.codec`), so each delivery step is one conditional write on
them alone, which a status callback's merge of the other metadata cannot disturb.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from conversation.dynamodb import codec, keys
from conversation.dynamodb.conversations import Conversations
from conversation.dynamodb.messages import TX_ATTEMPTS, Messages
from conversation.dynamodb.table import ConditionFailed, Table, TransactionCancelled, pause
from conversation.dynamodb.work import Work
from conversation.errors import ConversationNotFound, StaleMetadata, StorageError
from conversation.models import DELIVERY_FIELDS, Message

# The delivery step's write that ends the number's work.
_FINISH = "finish"


class MessageUpdates:
    """Merge metadata into stored messages and record their delivery steps."""

    def __init__(self, table: Table, conversations: Conversations, messages: Messages, work: Work) -> None:
        self.table = table
        self.conversations = conversations
        self.messages = messages
        self.work = work

    def update_metadata(
        self,
        user_id: str,
        message: Message,
        updates: dict[str, Any],
        *,
        counters: dict[str, int] | None = None,
        expect: dict[str, Any] | None = None,
    ) -> Message:
        """Merge keys into a stored message's metadata (e.g. a delivery status).

        ``counters`` are added to the conversation header in the same transaction.
        The write is conditioned on the metadata read, so concurrent merges both land;
        with ``expect`` the read must also hold those values (else StaleMetadata), so a
        merge that raced ahead of this one makes it fail instead of landing on top.
        """
        if not message.position or not message.conversation_id:
            raise ValueError("message must be a stored message")
        sk = keys.message_sk(message.conversation_id, message.position)
        for attempt in range(TX_ATTEMPTS):
            item = self.table.get(user_id, sk)
            if item is None:
                raise ConversationNotFound(f"message {message.message_id} not found")
            current = codec.message_from_item(item)
            if expect and any(current.metadata.get(name) != value for name, value in expect.items()):
                raise StaleMetadata(f"message {message.message_id} metadata is not as expected")
            merged = {**current.metadata, **updates}
            update = self._metadata_update(user_id, sk, item, updates)
            actions = [("message", {"Update": update})]
            if counters:
                actions.append(
                    ("header", self.conversations.counters_added(user_id, message.conversation_id, counters))
                )
            try:
                self.table.transact(actions)
            except TransactionCancelled as cancelled:
                if cancelled.failed("message") or cancelled.conflict:
                    pause(attempt, base=0.005, cap=0.2)
                    continue
                raise StorageError(f"metadata update failed: {cancelled.codes}") from None
            current.metadata = merged
            return current
        raise StorageError("metadata update failed: too much contention on this message")

    def _metadata_update(
        self, user_id: str, sk: str, item: dict[str, Any], updates: dict[str, Any]
    ) -> dict[str, Any]:
        """Return the ``Update`` that merges ``updates`` into the message ``item`` as read:
        delivery keys into their own attributes, the rest into the JSON, on the condition
        that neither changed since the read."""
        rest = {key: value for key, value in updates.items() if key not in DELIVERY_FIELDS}
        kept = {**(json.loads(item["metadata"]["S"]) if "metadata" in item else {}), **rest}
        names: dict[str, str] = {}
        values: dict[str, Any] = {":m": codec.metadata_value(kept)}
        sets = ["metadata = :m"]
        if "metadata" in item:
            conditions = ["metadata = :old"]
            values[":old"] = item["metadata"]
        else:
            conditions = ["attribute_exists(sk) AND attribute_not_exists(metadata)"]
        for index, key in enumerate(DELIVERY_FIELDS):
            name = codec.delivery_attribute(key)
            if name not in item and key not in updates:
                continue
            names[f"#d{index}"] = name
            if name in item:
                values[f":was{index}"] = item[name]
                conditions.append(f"#d{index} = :was{index}")
            else:
                conditions.append(f"attribute_not_exists(#d{index})")
            if key in updates:
                values[f":d{index}"] = codec.delivery_value(updates[key])
                sets.append(f"#d{index} = :d{index}")
        update: dict[str, Any] = {
            "TableName": self.table.name,
            "Key": keys.key(user_id, sk),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        return update

    def set_delivery(
        self,
        user_id: str,
        message: Message,
        updates: dict[str, Any],
        *,
        expect: dict[str, Any] | None = None,
        unless: dict[str, Sequence[Any]] | None = None,
        counters: dict[str, int] | None = None,
        finish: tuple[str, int] | None = None,
    ) -> bool:
        """Record a step of a stored reply's delivery with one conditional write.

        ``updates``, ``expect`` and ``unless`` name delivery keys only (``DELIVERY_FIELDS``).
        The write is made only while each ``expect`` key has its value (None: absent) and no
        ``unless`` key has one of its values, else StaleMetadata (ConversationNotFound when
        the reply is gone). ``counters`` are added to the conversation's header in the same
        write. With ``finish`` (owner, version) the number's work is ended in the same
        transaction when no text came since that version; returns whether it was (when
        not, the step is recorded alone).
        """
        if not message.position or not message.conversation_id:
            raise ValueError("message must be a stored message")
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets, conditions = [], ["attribute_exists(sk)"]
        for index, (key, value) in enumerate(updates.items()):
            names[f"#u{index}"] = codec.delivery_attribute(key)
            values[f":u{index}"] = codec.delivery_value(value)
            sets.append(f"#u{index} = :u{index}")
        for index, (key, value) in enumerate((expect or {}).items()):
            names[f"#e{index}"] = codec.delivery_attribute(key)
            values[f":e{index}"] = codec.delivery_value(value)
            if value is None:  # absent, or kept as null
                conditions.append(f"(attribute_not_exists(#e{index}) OR #e{index} = :e{index})")
            else:
                conditions.append(f"#e{index} = :e{index}")
        for index, (key, excluded) in enumerate((unless or {}).items()):
            if not excluded:
                continue
            names[f"#n{index}"] = codec.delivery_attribute(key)
            placeholders = []
            for position, value in enumerate(excluded):
                values[f":n{index}_{position}"] = codec.delivery_value(value)
                placeholders.append(f":n{index}_{position}")
            conditions.append(f"NOT (#n{index} IN ({', '.join(placeholders)}))")
        update = {
            "TableName": self.table.name,
            "Key": keys.key(user_id, keys.message_sk(message.conversation_id, message.position)),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        extra: list[tuple[str, dict[str, Any]]] = []
        if counters:
            header = self.conversations.counters_added(user_id, message.conversation_id, counters)
            extra.append(("header", header))
        if finish is not None:
            extra.append((_FINISH, {"Delete": self.work.finish_delete(user_id, *finish)}))
        if not extra:
            try:
                self.table.call("update_item", **update)
            except ConditionFailed:
                return self._kept_in_metadata(user_id, message, updates, expect, counters)
            return False
        for attempt in range(TX_ATTEMPTS):
            try:
                self.table.transact([("message", {"Update": update}), *extra])
                return finish is not None
            except TransactionCancelled as cancelled:
                if cancelled.failed("message"):
                    return self._kept_in_metadata(user_id, message, updates, expect, counters)
                if finish is not None and cancelled.failed(_FINISH):
                    # Newer texts (or the claim is gone): the step alone; the work is finished later.
                    extra, finish = [item for item in extra if item[0] != _FINISH], None
                    if not extra:
                        return self.set_delivery(user_id, message, updates, expect=expect, unless=unless)
                    continue
                if cancelled.conflict:
                    pause(attempt, base=0.005, cap=0.2)
                    continue
                raise StorageError(f"delivery update failed: {cancelled.codes}") from None
        raise StorageError("delivery update failed: too much contention on this message")

    def _kept_in_metadata(
        self, user_id: str, message: Message, updates: dict[str, Any], expect: dict[str, Any] | None,
        counters: dict[str, int] | None,
    ) -> bool:
        """After a delivery step's condition failed: raise why (the reply is gone, or its delivery
        moved on), unless the expected keys are still in its JSON metadata (a reply stored by an
        earlier version, before they had attributes of their own): then the step is made as a
        metadata merge, which moves them out (the work, if it was to end, ends later)."""
        sk = keys.message_sk(message.conversation_id or "", message.position or "")
        item = self.table.get(user_id, sk)
        if item is None:
            raise ConversationNotFound(f"message {message.message_id} not found")
        kept = json.loads(item["metadata"]["S"]) if "metadata" in item else {}
        legacy = [key for key in (expect or {}) if codec.delivery_attribute(key) not in item and key in kept]
        current = codec.message_from_item(item)
        if not legacy or any(current.metadata.get(key) != value for key, value in (expect or {}).items()):
            raise StaleMetadata(f"message {message.message_id} delivery is not as expected")
        self.update_metadata(user_id, message, updates, counters=counters, expect=expect)
        return False
