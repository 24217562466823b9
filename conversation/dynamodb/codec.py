"""Item ⇄ model: how users, conversation headers and messages look as DynamoDB items.

Metadata is kept as a JSON string, so floats, nesting and key order round-trip
exactly and no ``Decimal`` reaches callers. A reply's delivery state (the keys in
``DELIVERY_FIELDS``) is kept apart, one attribute per key (``dlv_<key>``, each value
JSON too), so a delivery step is one conditional UpdateItem on those attributes alone.
"""

from __future__ import annotations

import json
import time
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from conversation.dynamodb import keys
from conversation.models import DELIVERY_FIELDS, ROLES, Conversation, Message, Summary, User

_deserializer = TypeDeserializer()


def s(value: str) -> dict[str, str]:
    """Return a string attribute value."""
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    """Return a number attribute value."""
    return {"N": str(value)}


def b(value: bool) -> dict[str, bool]:
    """Return a boolean attribute value."""
    return {"BOOL": value}


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """Return an item as plain Python values."""
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def expired(item: dict[str, Any], now: float | None = None) -> bool:
    """Return whether an item's TTL has passed (DynamoDB deletes it within days)."""
    expires = item.get("expires_at")
    return expires is not None and int(expires["N"]) <= int(time.time() if now is None else now)


def alive_filter() -> tuple[str, dict[str, Any]]:
    """Return a filter expression (and its values) that drops expired items."""
    return (
        "attribute_not_exists(expires_at) OR expires_at > :now",
        {":now": n(int(time.time()))},
    )


# ------------------------------------------------------------------ messages


def message_item(
    user_id: str, message: Message, sk: str, *, expires_at: int | None = None
) -> dict[str, Any]:
    """Return the item that stores ``message`` under sort key ``sk``."""
    item: dict[str, Any] = {
        **keys.key(user_id, sk),
        "entity": s("message"),
        "role": s(message.role),
        "content": s(message.content),
        "ts": s(message.timestamp),
        "message_id": s(message.message_id),
    }
    if message.media_urls:
        item["media_urls"] = {"L": [s(url) for url in message.media_urls]}
    rest = {key: value for key, value in message.metadata.items() if key not in DELIVERY_FIELDS}
    if rest:
        item["metadata"] = s(json.dumps(rest, ensure_ascii=False))
    for key in DELIVERY_FIELDS:
        if key in message.metadata:
            item[delivery_attribute(key)] = delivery_value(message.metadata[key])
    if message.reply_to:
        item["reply_to"] = s(message.reply_to)
    if expires_at is not None:
        item["expires_at"] = n(expires_at)
    return item


def message_from_item(item: dict[str, Any]) -> Message:
    """Return the message an item stores."""
    conversation_id, position = keys.split_message_sk(keys.sort_key_of(item))
    return Message(
        content=item["content"]["S"],
        role=item["role"]["S"],
        timestamp=item["ts"]["S"],
        message_id=item["message_id"]["S"],
        media_urls=[v["S"] for v in item.get("media_urls", {}).get("L", [])],
        metadata={**(json.loads(item["metadata"]["S"]) if "metadata" in item else {}),
                  **delivery_of(item)},
        reply_to=item.get("reply_to", {}).get("S"),
        conversation_id=conversation_id,
        position=position,
    )


def delivery_attribute(key: str) -> str:
    """Return the attribute that keeps one delivery key of a message."""
    if key not in DELIVERY_FIELDS:
        raise ValueError(f"{key!r} is not a delivery field")
    return f"dlv_{key}"


def delivery_value(value: Any) -> dict[str, str]:
    """Return a delivery value as its attribute value (JSON, like the rest of the metadata)."""
    return s(json.dumps(value, ensure_ascii=False))


def delivery_of(item: dict[str, Any]) -> dict[str, Any]:
    """Return the delivery keys a message item keeps apart from its metadata."""
    return {key: json.loads(item[f"dlv_{key}"]["S"]) for key in DELIVERY_FIELDS if f"dlv_{key}" in item}


def metadata_value(metadata: dict[str, Any]) -> dict[str, str]:
    """Return stored metadata as its attribute value."""
    return s(json.dumps(metadata, ensure_ascii=False))


# ------------------------------------------------------------------ conversation headers


def header_item(
    user_id: str,
    conversation_id: str,
    *,
    created_at: str,
    active: bool,
    metadata: dict[str, Any] | None = None,
    expires_at: int | None = None,
) -> dict[str, Any]:
    """Return a new, empty conversation header."""
    item: dict[str, Any] = {
        **keys.key(user_id, keys.conversation_sk(conversation_id)),
        "entity": s("conversation"),
        "user_id": s(user_id),
        "conversation_id": s(conversation_id),
        "created_at": s(created_at),
        "updated_at": s(created_at),
        "is_active": b(active),
        "message_count": n(0),
        **keys.activity_keys(created_at, user_id, conversation_id),
    }
    if metadata:
        item["metadata"] = metadata_value(metadata)
    if expires_at is not None:
        item["expires_at"] = n(expires_at)
    return item


def role_count_attribute(role: str) -> str:
    """Return the header attribute counting one role's messages."""
    return f"{role}_count"


def counter_attribute(name: str) -> str:
    """Return the header attribute of a usage counter (a name must be an identifier)."""
    if not name.isidentifier():
        raise ValueError(f"counter name {name!r} is not an identifier")
    return f"ctr_{name}"


def conversation_from_item(item: dict[str, Any]) -> Conversation:
    """Return the conversation a header item describes (without messages)."""
    values = plain(item)
    role_counts = {role: int(values.get(role_count_attribute(role), 0)) for role in ROLES}
    counters = {
        name[len("ctr_"):]: int(value) for name, value in values.items() if name.startswith("ctr_")
    }
    return Conversation(
        user_id=values["user_id"],
        conversation_id=values["conversation_id"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        last_message_at=values.get("last_message_at"),
        is_active=bool(values.get("is_active", False)),
        title=values.get("title"),
        message_count=int(values.get("message_count", 0)),
        role_counts=role_counts,
        counters=counters,
        preview=values.get("preview", ""),
        metadata=json.loads(values["metadata"]) if values.get("metadata") else {},
        deleted_at=values.get("deleted_at"),
        summary=_summary_from(values),
    )


def _summary_from(values: dict[str, Any]) -> Summary | None:
    if "summary" not in values and "summary_upto" not in values:
        return None
    return Summary(
        text=values.get("summary"),
        upto=values.get("summary_upto"),
        count=int(values.get("summary_count", 0)),
        updated_at=values.get("summary_at"),
    )


# ------------------------------------------------------------------ users

# The user item's attribute naming the active conversation.
ACTIVE = "active_cid"


def user_from_item(user_id: str, item: dict[str, Any]) -> User:
    """Return the user record an item stores."""
    values = plain(item)
    return User(
        user_id=values.get("user_id", user_id),
        active_conversation_id=values.get(ACTIVE),
        opted_out=bool(values.get("opted_out", False)),
        conversation_count=int(values.get("conversation_count", 0)),
        created_at=values.get("created_at"),
        updated_at=values.get("updated_at"),
        opt_out_changed_at=values.get("opt_out_changed_at"),
    )


# ------------------------------------------------------------------ sizes


def item_size(item: dict[str, Any]) -> int:
    """Approximate DynamoDB's item size: attribute names plus UTF-8 values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner) // 2 + 2
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    return 1
