"""Small, faithful re-implementations of the chat-history layouts we compare against.

Neither is tuned: each issues the requests its original issues, in the same shape.

* :class:`SeedLayout` is the original DadaCat SMS app (``app_persistent.py`` and its
  ``conversation`` package, described in ``../shared/seeds/001_98c5563487c2c7b1.txt``):
  one item per phone number, ``user_id`` the key, every message in one JSON string
  attribute ``messages``. Each ``add_*_message`` loads the item (``get_or_create``) and
  writes the whole item back; the webhook also loads the conversation for the model and
  reads the message count twice (before the model and after the reply). One turn is
  therefore 5 GetItem + 2 PutItem. (The shared note says "about six reads"; we count
  the five the webhook's code path makes, not more.)
* :class:`LangChainLayout` is ``DynamoDBChatMessageHistory`` (LangChain; LlamaIndex's
  ``DynamoDBChatStore`` is the same shape): one item per session keyed ``SessionId``,
  a list attribute ``History`` of message maps as ``messages_to_dict`` writes them.
  Reading the history is a GetItem; every ``add_message`` reads the item and puts the
  whole list back, unconditionally. One turn (load context, add the human message,
  add the AI message) is 3 GetItem + 2 PutItem.

Both use boto3's default eventually consistent GetItem, as the originals do.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

_ser = TypeSerializer()
_de = TypeDeserializer()

ITEM_LIMIT_BYTES = 409_600


class ItemTooLarge(Exception):
    """DynamoDB refused a write because the item would exceed 400 KB."""


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items()}


def _put(client: Any, table: str, item: dict[str, Any]) -> None:
    try:
        client.put_item(TableName=table, Item=_serialize(item))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationException" and "size" in error.get("Message", "").lower():
            raise ItemTooLarge(error.get("Message")) from exc
        raise


def _create(client: Any, table: str, key: str) -> None:
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})


class SeedLayout:
    """The original DadaCat SMS store: one item per number, history as a JSON string."""

    name = "seed layout"

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def create_table(self) -> None:
        """Create the table keyed by ``user_id`` alone."""
        _create(self.client, self.table, "user_id")

    @staticmethod
    def _message(role: str, content: str) -> dict[str, Any]:
        return {"role": role, "content": content, "timestamp": datetime.now().isoformat()}

    def _get_or_create(self, user_id: str) -> dict[str, Any]:
        response = self.client.get_item(TableName=self.table, Key={"user_id": {"S": user_id}})
        if "Item" in response:
            item = {k: _de.deserialize(v) for k, v in response["Item"].items()}
            item["messages"] = json.loads(item["messages"])
            return item
        now = datetime.now().isoformat()
        return {"user_id": user_id, "created_at": now, "updated_at": now, "messages": [], "is_active": True}

    def _save(self, conversation: dict[str, Any]) -> None:
        item = dict(conversation)
        item["updated_at"] = datetime.now().isoformat()
        item["messages"] = json.dumps(conversation["messages"])
        _put(self.client, self.table, item)

    def _add(self, user_id: str, role: str, content: str) -> None:
        conversation = self._get_or_create(user_id)
        conversation["messages"].append(self._message(role, content))
        self._save(conversation)

    def turn(self, user_id: str, text: str, reply: str, sid: str) -> list[dict[str, str]]:
        """Run the webhook's storage calls for one text and its reply; return the context."""
        del sid  # the seed does not record Twilio's MessageSid
        self._add(user_id, "user", text)
        history = [
            {"role": m["role"], "content": m["content"]} for m in self._get_or_create(user_id)["messages"]
        ]
        len(self._get_or_create(user_id)["messages"])  # get_message_count before the model
        self._add(user_id, "assistant", reply)
        len(self._get_or_create(user_id)["messages"])  # get_message_count for the log line
        return history

    def item_for(self, user_id: str, texts: list[tuple[str, str]]) -> dict[str, Any]:
        """Return the item ``_save`` writes for a conversation of these messages."""
        now = datetime.now().isoformat()
        return {
            "user_id": user_id,
            "created_at": now,
            "updated_at": now,
            "messages": json.dumps([self._message(role, content) for role, content in texts]),
            "is_active": True,
        }

    def prefill(self, user_id: str, texts: list[tuple[str, str]]) -> None:
        """Write a conversation of the given (role, content) messages in one PutItem."""
        _put(self.client, self.table, self.item_for(user_id, texts))


def _lc_message(role: str, content: str) -> dict[str, Any]:
    """Return a message map exactly as langchain-core's ``message_to_dict`` builds it."""
    if role == "user":
        data: dict[str, Any] = {
            "content": content,
            "additional_kwargs": {},
            "response_metadata": {},
            "type": "human",
            "name": None,
            "id": None,
            "example": False,
        }
        return {"type": "human", "data": data}
    data = {
        "content": content,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": "ai",
        "name": None,
        "id": None,
        "example": False,
        "tool_calls": [],
        "invalid_tool_calls": [],
        "usage_metadata": None,
    }
    return {"type": "ai", "data": data}


class LangChainLayout:
    """LangChain's DynamoDBChatMessageHistory: one item per session, a list of maps."""

    name = "LangChain-style"

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def create_table(self) -> None:
        """Create the table keyed by ``SessionId`` alone."""
        _create(self.client, self.table, "SessionId")

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        """Return the stored message maps (one GetItem)."""
        response = self.client.get_item(TableName=self.table, Key={"SessionId": {"S": session_id}})
        item = response.get("Item")
        return _de.deserialize(item["History"]) if item else []

    def add_message(self, session_id: str, role: str, content: str) -> None:
        """Read the list, append one message, put the whole item back."""
        history = self.messages(session_id)
        history.append(_lc_message(role, content))
        _put(self.client, self.table, {"SessionId": session_id, "History": history})

    def turn(self, user_id: str, text: str, reply: str, sid: str) -> list[dict[str, str]]:
        """Load the context, then add the human and the AI message (RunnableWithMessageHistory)."""
        del sid
        context = [{"role": m["type"], "content": m["data"]["content"]} for m in self.messages(user_id)]
        self.add_message(user_id, "user", text)
        self.add_message(user_id, "assistant", reply)
        return context

    def item_for(self, user_id: str, texts: list[tuple[str, str]]) -> dict[str, Any]:
        """Return the item ``add_message`` writes for a session of these messages."""
        return {"SessionId": user_id, "History": [_lc_message(role, content) for role, content in texts]}

    def prefill(self, user_id: str, texts: list[tuple[str, str]]) -> None:
        """Write a session of the given (role, content) messages in one PutItem."""
        _put(self.client, self.table, self.item_for(user_id, texts))


def _fits(layout: Any, user_id: str, texts: list[tuple[str, str]]) -> bool:
    try:
        layout.prefill(user_id, texts)
        return True
    except ItemTooLarge:
        return False


def storable_limit(layout: Any, user_id: str, texts: list[tuple[str, str]], high: int) -> int | None:
    """Return the most messages the layout's item can hold; None if ``high`` still fit.

    The bound is found from the item size by DynamoDB's rules, then confirmed
    with real PutItems (N messages accepted, N + 1 refused), stepping if needed.
    The write of message N + 1 is the one that fails.
    """
    from scripts.bench.common import item_size

    def size(count: int) -> int:
        return item_size(_serialize(layout.item_for(user_id, texts[:count])))

    if size(high) <= ITEM_LIMIT_BYTES and _fits(layout, user_id, texts[:high]):
        return None
    low, top = 0, high  # by size: low fits, top does not
    while top - low > 1:
        middle = (low + top) // 2
        if size(middle) <= ITEM_LIMIT_BYTES:
            low = middle
        else:
            top = middle
    for _ in range(200):
        if not _fits(layout, user_id, texts[:low]):
            low -= 1
        elif _fits(layout, user_id, texts[: low + 1]):
            low += 1
        else:
            return low
    raise RuntimeError("could not confirm the 400 KB limit with real writes")
