"""Listings: pages of a user's conversations and messages, recent activity across users.

Every listing is a Query (one partition, or one day of the keys-only activity
index), never a Scan. Cursors are opaque and checked against the listing they
came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from conversation.cursors import decode_cursor, encode_cursor
from conversation.dynamodb import codec, keys
from conversation.dynamodb.codec import s
from conversation.dynamodb.messages import Messages
from conversation.dynamodb.table import Table
from conversation.errors import InvalidCursor
from conversation.models import MAX_PAGE_SIZE, Conversation, Message, Page, utc_now

# How far back the cross-user activity listing looks for day buckets.
DEFAULT_ACTIVITY_LOOKBACK_DAYS = 90


class Listings:
    """Paginated reads over a user's partition and over the activity index."""

    def __init__(
        self, table: Table, messages: Messages, *, lookback_days: int = DEFAULT_ACTIVITY_LOOKBACK_DAYS
    ) -> None:
        self.table = table
        self.messages = messages
        self.lookback_days = lookback_days

    def partition(
        self, user_id: str, prefix: str | None, attributes: tuple[str, ...] | None
    ) -> Iterator[dict[str, Any]]:
        """Yield a user's items (those whose sort key starts with ``prefix``), all pages."""
        kwargs: dict[str, Any] = {
            "ExpressionAttributeValues": {":pk": keys.partition(user_id)},
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk",
        }
        if prefix:
            kwargs["KeyConditionExpression"] = "pk = :pk AND begins_with(sk, :prefix)"
            kwargs["ExpressionAttributeValues"][":prefix"] = s(prefix)
        if attributes:
            kwargs["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(attributes)))
            kwargs["ExpressionAttributeNames"] = {f"#a{i}": a for i, a in enumerate(attributes)}
        return self.table.query_all(**kwargs)

    def messages_page(
        self,
        user_id: str,
        conversation_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        """Return one page of a conversation's messages in either direction."""
        return self._page(
            user_id,
            keys.messages_prefix(conversation_id),
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
            kind="m",
            convert=codec.message_from_item,
        )

    def conversations_page(
        self, user_id: str, *, limit: int = 20, cursor: str | None = None, include_deleted: bool = False
    ) -> Page:
        """Return one page of a user's conversations, newest first."""
        page = self._page(
            user_id,
            keys.CONVERSATIONS_PREFIX,
            limit=limit,
            cursor=cursor,
            newest_first=True,
            kind="c",
            convert=codec.conversation_from_item,
        )
        if not include_deleted:
            page.items = [c for c in page.items if c.deleted_at is None]
        return page

    def _page(
        self,
        user_id: str,
        prefix: str,
        *,
        limit: int,
        cursor: str | None,
        newest_first: bool,
        kind: str,
        convert: Callable[[dict[str, Any]], Any],
    ) -> Page:
        limit = max(1, min(int(limit), MAX_PAGE_SIZE))
        direction = "desc" if newest_first else "asc"
        query = self.table.live_query(user_id, prefix, forward=not newest_first)
        if cursor:
            payload = decode_cursor(cursor)
            after = payload.get("after")
            if (
                payload.get("k") != kind
                or payload.get("u") != user_id
                or payload.get("d") != direction
                or not isinstance(after, str)
                or not after.startswith(prefix)
            ):
                raise InvalidCursor("cursor belongs to another listing")
            query["ExclusiveStartKey"] = keys.key(user_id, after)
        items, last_key = self.table.query_up_to(query, limit)
        next_cursor = None
        if last_key and items:
            next_cursor = encode_cursor(
                {"k": kind, "u": user_id, "d": direction, "after": keys.sort_key_of(items[-1])}
            )
        return Page(items=[convert(item) for item in items], cursor=next_cursor)

    def recent_conversations(self, *, limit: int = 20, cursor: str | None = None) -> Page:
        """Return conversations across all users, newest activity first.

        Reads the keys-only activity index one day bucket at a time (a Query
        per day, never a Scan), then fetches the headers in one batch.
        """
        limit = max(1, min(int(limit), 100))
        today = utc_now().date()
        day_offset = 0
        start_key = None
        if cursor:
            day_offset, start_key = self._recent_cursor(cursor)
        found: list[dict[str, Any]] = []
        next_cursor = None
        while day_offset <= self.lookback_days:
            day = (today - timedelta(days=day_offset)).isoformat()
            kwargs: dict[str, Any] = {
                "TableName": self.table.name,
                "IndexName": keys.ACTIVITY_INDEX,
                "KeyConditionExpression": f"{keys.ACTIVITY_ATTRIBUTES[0]} = :d",
                "ExpressionAttributeValues": {":d": keys.activity_bucket(day)},
                "ScanIndexForward": False,
                "Limit": limit - len(found),
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self.table.call("query", **kwargs)
            found.extend(response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if len(found) >= limit:
                if start_key:
                    after = {k: v["S"] for k, v in start_key.items()}
                    next_cursor = encode_cursor({"k": "r", "day": day_offset, "after": after})
                elif day_offset < self.lookback_days:
                    next_cursor = encode_cursor({"k": "r", "day": day_offset + 1})
                break
            if not start_key:
                day_offset += 1
        headers = self.table.batch_get([{"pk": k["pk"], "sk": k["sk"]} for k in found])
        conversations: list[Conversation] = []
        seen = set()
        for index_key in found:
            ident = (index_key["pk"]["S"], index_key["sk"]["S"])
            item = headers.get(ident)
            if item is None or codec.expired(item) or "deleted_at" in item:
                continue
            # A header that moved to a newer bucket while we paged is shown once.
            if ident in seen:
                continue
            seen.add(ident)
            conversations.append(codec.conversation_from_item(item))
        # Index order: by activity minute, newest first (see docs/data-model.md).
        return Page(items=conversations, cursor=next_cursor)

    def _recent_cursor(self, cursor: str) -> tuple[int, dict[str, Any] | None]:
        payload = decode_cursor(cursor)
        if payload.get("k") != "r" or not isinstance(payload.get("day"), int):
            raise InvalidCursor("cursor belongs to another listing")
        day_offset = payload["day"]
        if not 0 <= day_offset <= self.lookback_days:
            raise InvalidCursor("cursor is out of range")
        after = payload.get("after")
        if not after:
            return day_offset, None
        if not isinstance(after, dict) or not all(
            isinstance(after.get(k), str) for k in ("pk", "sk", *keys.ACTIVITY_ATTRIBUTES)
        ):
            raise InvalidCursor("cursor is not one this service issued")
        return day_offset, {k: s(v) for k, v in after.items()}

    def first_and_last(self, user_id: str, conversation_id: str) -> tuple[Message | None, Message | None]:
        """Return a conversation's first and last message (two one-item Queries)."""
        first = self.messages.from_end(user_id, conversation_id, forward=True, limit=1)
        last = self.messages.from_end(user_id, conversation_id, forward=False, limit=1)
        return (first[0] if first else None), (last[0] if last else None)
