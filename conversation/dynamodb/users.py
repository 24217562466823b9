"""The user item: the active conversation pointer and the opt-out state of a number."""

from __future__ import annotations

from typing import Any

from conversation.dynamodb import codec, keys
from conversation.dynamodb.codec import s
from conversation.dynamodb.table import ConditionFailed, Table
from conversation.models import User, isoformat, utc_now


class Users:
    """Read and write user items."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def get(self, user_id: str) -> User | None:
        """Return the user record (active conversation, opt-out state) or None (one GetItem)."""
        item = self.table.get(user_id, keys.USER_SK)
        return None if item is None else codec.user_from_item(user_id, item)

    def set_opt_out(self, user_id: str, opted_out: bool) -> None:
        """Record whether the number has opted out of messages (STOP/START)."""
        now = isoformat(utc_now())
        values: dict[str, Any] = {
            ":o": codec.b(opted_out),
            ":now": s(now),
            ":uid": s(user_id),
            ":user": s("user"),
        }
        expression = (
            "SET opted_out = :o, opt_out_changed_at = :now, updated_at = :now, "
            "#u = :uid, entity = :user, created_at = if_not_exists(created_at, :now)"
        )
        expires = self.table.expires_at()
        if expires is not None:
            expression += ", expires_at = :exp"
            values[":exp"] = codec.n(expires)
        self.table.call(
            "update_item",
            TableName=self.table.name,
            Key=keys.key(user_id, keys.USER_SK),
            UpdateExpression=expression,
            ExpressionAttributeNames={"#u": "user_id"},
            ExpressionAttributeValues=values,
        )

    def not_opted_out(self, user_id: str) -> dict[str, Any]:
        """Return the transaction ``ConditionCheck`` that the number has not opted out
        (a number without a record has not)."""
        return {
            "ConditionCheck": {
                "TableName": self.table.name,
                "Key": keys.key(user_id, keys.USER_SK),
                "ConditionExpression": "attribute_not_exists(opted_out) OR opted_out = :f",
                "ExpressionAttributeValues": {":f": codec.b(False)},
            }
        }

    def pointer_update(
        self,
        user_id: str,
        conversation_id: str,
        now: str,
        *,
        refresh_ttl: bool = False,
        replacing: str | None = None,
    ) -> dict[str, Any]:
        """Return the transaction action that makes ``conversation_id`` the active one.

        It fails its condition when another conversation is active already
        (other than ``replacing``, a pointer found dangling).
        """
        values: dict[str, Any] = {
            ":cid": s(conversation_id),
            ":now": s(now),
            ":uid": s(user_id),
            ":one": codec.n(1),
            ":user": s("user"),
        }
        sets = [
            f"{codec.ACTIVE} = :cid",
            "updated_at = :now",
            "user_id = :uid",
            "entity = :user",
            "created_at = if_not_exists(created_at, :now)",
        ]
        expires = self.table.expires_at() if refresh_ttl else None
        if expires is not None:
            sets.append("expires_at = :exp")
            values[":exp"] = codec.n(expires)
        condition = f"attribute_not_exists({codec.ACTIVE})"
        if replacing:
            condition += f" OR {codec.ACTIVE} = :old"
            values[":old"] = s(replacing)
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": keys.key(user_id, keys.USER_SK),
                "UpdateExpression": "SET " + ", ".join(sets) + " ADD conversation_count :one",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    def pointer_clear(self, user_id: str, conversation_id: str, now: str) -> dict[str, Any]:
        """Return the transaction action that clears the pointer if it still names ``conversation_id``."""
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": keys.key(user_id, keys.USER_SK),
                "UpdateExpression": f"REMOVE {codec.ACTIVE} SET updated_at = :now",
                "ConditionExpression": (
                    f"attribute_not_exists({codec.ACTIVE}) OR {codec.ACTIVE} = :cid"
                ),
                "ExpressionAttributeValues": {":cid": s(conversation_id), ":now": s(now)},
            }
        }

    def drop_dangling_pointer(self, user_id: str, conversation_id: str) -> None:
        """Clear a pointer to a conversation that no longer exists (if it still names it)."""
        try:
            self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=keys.key(user_id, keys.USER_SK),
                UpdateExpression=f"REMOVE {codec.ACTIVE}",
                ConditionExpression=f"{codec.ACTIVE} = :cid",
                ExpressionAttributeValues={":cid": s(conversation_id)},
            )
        except ConditionFailed:
            pass  # someone else already moved the pointer on
