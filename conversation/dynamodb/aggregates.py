"""Small items reached by key alone: the day's figures (sharded counters) and console sessions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conversation.dynamodb import keys
from conversation.dynamodb.codec import n
from conversation.dynamodb.table import Table


class Aggregates:
    """Per-day figure shards (``UpdateItem ... ADD``, read by ``BatchGetItem``) and session items."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def add_figures(self, day: str, shard: int, amounts: Mapping[str, int], *, expires_at: int) -> None:
        """Add ``amounts`` to one shard of ``day`` in one UpdateItem (the expiry is set once)."""
        if not amounts:
            return
        ordered = sorted(amounts)
        names = {f"#f{i}": name for i, name in enumerate(ordered)}
        values: dict[str, Any] = {f":f{i}": n(int(amounts[name])) for i, name in enumerate(ordered)}
        values[":exp"] = n(int(expires_at))
        adds = ", ".join(f"#f{i} :f{i}" for i in range(len(ordered)))
        self.table.call(
            "update_item",
            TableName=self.table.name,
            Key=keys.stats_key(day, shard),
            UpdateExpression=f"ADD {adds} SET expires_at = if_not_exists(expires_at, :exp)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def read_figures(self, shards: Sequence[tuple[str, int]]) -> dict[tuple[str, int], dict[str, int]]:
        """Return the figures of each (day, shard) that has any (BatchGetItem, 100 keys a request)."""
        found = self.table.batch_get([keys.stats_key(day, shard) for day, shard in shards])
        result: dict[tuple[str, int], dict[str, int]] = {}
        for day, shard in shards:
            key = keys.stats_key(day, shard)
            item = found.get((key["pk"]["S"], key["sk"]["S"]))
            if item is not None:
                result[(day, shard)] = {
                    name: int(value["N"]) for name, value in item.items()
                    if name not in ("pk", "sk", "expires_at") and "N" in value
                }
        return result

    def put_session(self, digest: str, *, created_at: int, expires_at: int) -> None:
        """Store a console session by the digest of its id (one PutItem)."""
        self.table.call(
            "put_item",
            TableName=self.table.name,
            Item={**keys.console_session_key(digest), "created_at": n(int(created_at)),
                  "expires_at": n(int(expires_at))},
        )

    def session_expires_at(self, digest: str) -> int | None:
        """Return when the session ends (epoch seconds), or None when there is none (consistent GetItem)."""
        response = self.table.call(
            "get_item", TableName=self.table.name, Key=keys.console_session_key(digest), ConsistentRead=True
        )
        item = response.get("Item")
        return None if item is None else int(item["expires_at"]["N"])

    def delete_session(self, digest: str) -> None:
        """Delete the session (one DeleteItem; none is fine)."""
        self.table.call("delete_item", TableName=self.table.name, Key=keys.console_session_key(digest))
