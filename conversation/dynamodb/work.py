"""Work items: one per number with unanswered texts, the durable half of asynchronous replies.

An item (key from :func:`keys.work_key`) holds ``version`` (one more per recorded text),
``since`` and ``noted_at`` (first and last text, epoch seconds), the claim (``owner``,
``claimed_until``) and ``expires_at`` (TTL). Every write is one conditional UpdateItem or
DeleteItem, and DynamoDB applies each atomically on the item, so:

- a text recorded before a claim is seen by the claimer's (strongly consistent) read of
  the conversation, and a text recorded after it has raised ``version``, so the claimer's
  :meth:`Work.finish` fails and it runs again: no text is left behind;
- only one owner holds a live claim; a claim that was not renewed lapses and
  :meth:`Work.due` offers the number to any instance (one Query per shard, never a Scan).
"""

from __future__ import annotations

import time
from typing import Any

from conversation.dynamodb import codec, keys
from conversation.dynamodb.codec import n, s
from conversation.dynamodb.table import ConditionFailed, Table
from conversation.guards import WorkNote
from conversation.store import WORK_QUIET_SECONDS, WORK_TTL_SECONDS, WorkItem

_MINE = "#o = :me"
_NAMES = {"#o": "owner"}


class Work:
    """Note texts, claim, renew, finish and release a number's work; find work that is due."""

    def __init__(self, table: Table) -> None:
        self.table = table

    # ------------------------------------------------------------------ writes inside transactions

    def note_update(self, user_id: str, note: WorkNote) -> dict[str, Any]:
        """Return the ``Update`` (also an UpdateItem's parameters) that notes one more text.

        Without an owner it always applies: the version goes up by one. With one it also
        takes the claim (free, lapsed or the owner's own) and sets the version to 0: the
        claimer's turn reads every text noted so far, this one included.
        """
        now = time.time()
        update: dict[str, Any] = {
            "TableName": self.table.name,
            "Key": keys.work_key(user_id),
            "UpdateExpression": (
                "ADD version :one SET since = if_not_exists(since, :now), noted_at = :now, expires_at = :exp"
            ),
            "ExpressionAttributeValues": {
                ":one": n(1), ":now": n(round(now, 3)), ":exp": n(int(now + WORK_TTL_SECONDS)),
            },
        }
        if note.owner:
            update["UpdateExpression"] = (
                "SET version = :zero, since = if_not_exists(since, :now), noted_at = :now, "
                "expires_at = :exp, #o = :me, claimed_until = :until"
            )
            update["ConditionExpression"] = f"attribute_not_exists(#o) OR claimed_until < :now OR {_MINE}"
            update["ExpressionAttributeNames"] = _NAMES
            update["ExpressionAttributeValues"] = {
                ":zero": n(0), ":now": n(round(now, 3)), ":exp": n(int(now + WORK_TTL_SECONDS)),
                ":me": s(note.owner), ":until": n(round(now + note.seconds, 3)),
            }
        return update

    def renew_update(self, user_id: str, owner: str, seconds: float) -> dict[str, Any]:
        """Return the ``Update`` that extends ``owner``'s claim (and fails when it holds none)."""
        return {
            "TableName": self.table.name,
            "Key": keys.work_key(user_id),
            "UpdateExpression": "SET claimed_until = :until",
            "ConditionExpression": _MINE,
            "ExpressionAttributeNames": _NAMES,
            "ExpressionAttributeValues": {":me": s(owner), ":until": n(round(time.time() + seconds, 3))},
        }

    def finish_delete(self, user_id: str, owner: str, version: int) -> dict[str, Any]:
        """Return the ``Delete`` that ends ``owner``'s work when no text came since ``version``."""
        return {
            "TableName": self.table.name,
            "Key": keys.work_key(user_id),
            "ConditionExpression": f"{_MINE} AND version = :v",
            "ExpressionAttributeNames": _NAMES,
            "ExpressionAttributeValues": {":me": s(owner), ":v": n(int(version))},
        }

    # ------------------------------------------------------------------ requests

    def note_text(self, user_id: str) -> int:
        """Count one more recorded text for the number (creating its item); return the version."""
        response = self.table.call("update_item", **self.note_update(user_id, WorkNote()),
                                   ReturnValues="UPDATED_NEW")
        return int(response["Attributes"]["version"]["N"])

    def claim(self, user_id: str, owner: str, seconds: float) -> int | None:
        """Take the number's work for ``seconds``; return its version, or None.

        None when there is no work, or another owner holds a live claim. A claim of
        one's own is renewed (and its current version returned).
        """
        now = time.time()
        try:
            response = self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=keys.work_key(user_id),
                UpdateExpression="SET #o = :me, claimed_until = :until",
                ConditionExpression=(
                    "attribute_exists(version) AND (attribute_not_exists(#o) OR claimed_until < :now "
                    f"OR {_MINE})"
                ),
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={
                    ":me": s(owner), ":until": n(round(now + seconds, 3)), ":now": n(round(now, 3)),
                },
                ReturnValues="ALL_NEW",
            )
        except ConditionFailed:
            return None
        return int(response["Attributes"]["version"]["N"])

    def renew(self, user_id: str, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s claim; False when it holds none (lost, or the work is gone)."""
        try:
            self.table.call("update_item", **self.renew_update(user_id, owner, seconds))
        except ConditionFailed:
            return False
        return True

    def finish(self, user_id: str, owner: str, version: int) -> bool:
        """Delete the work if ``owner`` holds it and no text came since ``version``.

        False: newer texts arrived (the claim stays: run again) or the claim was lost.
        """
        try:
            self.table.call("delete_item", **self.finish_delete(user_id, owner, version))
        except ConditionFailed:
            return False
        return True

    def release(self, user_id: str, owner: str) -> None:
        """Give up ``owner``'s claim, keeping the work for another turn (or the sweeper)."""
        try:
            self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=keys.work_key(user_id),
                UpdateExpression="REMOVE #o, claimed_until",
                ConditionExpression=_MINE,
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":me": s(owner)},
            )
        except ConditionFailed:
            pass  # not ours (any more)

    def get(self, user_id: str) -> WorkItem | None:
        """Return the number's work item, or None."""
        response = self.table.call(
            "get_item", TableName=self.table.name, Key=keys.work_key(user_id), ConsistentRead=True
        )
        item = response.get("Item")
        if item is None or codec.expired(item):
            return None
        return _work_from_item(item)

    def due(self, now: float, limit: int) -> list[str]:
        """Return up to ``limit`` numbers whose work nobody is doing.

        Due: the claim lapsed before ``now``, or nobody claimed it and its last text is
        older than WORK_QUIET_SECONDS (the webhook that noted it claims at once).
        One Query per shard.
        """
        found: list[str] = []
        for shard in range(keys.WORK_SHARDS):
            if len(found) >= limit:
                break
            query: dict[str, Any] = {
                "TableName": self.table.name,
                "KeyConditionExpression": "pk = :pk",
                "FilterExpression": (
                    "(claimed_until < :now OR (attribute_not_exists(claimed_until) AND noted_at < :quiet)) "
                    "AND expires_at > :alive"
                ),
                "ExpressionAttributeValues": {
                    ":pk": keys.work_partition(shard),
                    ":now": n(round(now, 3)),
                    ":quiet": n(round(now - WORK_QUIET_SECONDS, 3)),
                    ":alive": n(int(now)),
                },
                "ProjectionExpression": "sk",
            }
            items, _ = self.table.query_up_to(query, limit - len(found))
            found.extend(keys.sort_key_of(item) for item in items)
        return found[:limit]

    def forget(self, user_id: str) -> int:
        """Delete the number's work item (erasure); return 1 if there was one."""
        response = self.table.call(
            "delete_item", TableName=self.table.name, Key=keys.work_key(user_id), ReturnValues="ALL_OLD"
        )
        return int(bool(response.get("Attributes")))


def _work_from_item(item: dict[str, Any]) -> WorkItem:
    values = codec.plain(item)
    return WorkItem(
        user_id=str(values["sk"]),
        version=int(values.get("version", 0)),
        since=float(values.get("since", 0)),
        owner=values.get("owner"),
        claimed_until=float(values["claimed_until"]) if "claimed_until" in values else None,
    )
