"""Coordination across workers: the per-number turn lease and atomic named counters."""

from __future__ import annotations

import time
from typing import Any

from conversation.dynamodb import keys
from conversation.dynamodb.codec import n, s
from conversation.dynamodb.table import ConditionFailed, Table


class Coordination:
    """Leases (a conditional item per number) and counters (``ADD`` with a TTL)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def lease_put(self, user_id: str, owner: str, seconds: float) -> dict[str, Any]:
        """Return the write that takes the user's lease unless someone else holds a live one
        (a PutItem's parameters; also a transaction's ``Put``)."""
        now = time.time()
        return {
            "TableName": self.table.name,
            "Item": {
                **keys.key(user_id, keys.LEASE_SK),
                "owner": s(owner),
                "lease_until": n(round(now + seconds, 3)),
                "taken_at": n(round(now, 3)),
                # Let TTL sweep leases that are never released.
                "expires_at": n(int(now + seconds) + 3600),
            },
            "ConditionExpression": "attribute_not_exists(sk) OR lease_until < :now OR #o = :me",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":now": n(round(now, 3)), ":me": s(owner)},
        }

    def lease_delete(self, user_id: str, owner: str) -> dict[str, Any]:
        """Return the write that gives the lease back unless someone else holds it now
        (a missing lease passes: there is nothing to give back)."""
        return {
            "TableName": self.table.name,
            "Key": keys.key(user_id, keys.LEASE_SK),
            "ConditionExpression": "attribute_not_exists(sk) OR #o = :me",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":me": s(owner)},
        }

    def acquire_lease(self, user_id: str, owner: str, seconds: float) -> bool:
        """Take the user's lease for ``seconds`` unless someone else holds a live one."""
        try:
            self.table.call("put_item", **self.lease_put(user_id, owner, seconds))
        except ConditionFailed:
            return False
        return True

    def lease_taken_at(self, user_id: str) -> float | None:
        """Return when the user's live lease was taken (epoch seconds), or None when none is live."""
        item = self.table.get(user_id, keys.LEASE_SK)
        if item is None or float(item["lease_until"]["N"]) < time.time() or "taken_at" not in item:
            return None
        return float(item["taken_at"]["N"])

    def release_lease(self, user_id: str, owner: str) -> None:
        """Release the user's lease if ``owner`` still holds it."""
        try:
            self.table.call("delete_item", **self.lease_delete(user_id, owner))
        except ConditionFailed:
            pass  # someone else holds it now

    def capped_add(self, scope: str, name: str, *, below: int, expires_in: float) -> dict[str, Any]:
        """Return the transaction ``Update`` that adds one to a counter only while it is below ``below``."""
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": keys.key(scope, keys.counter_sk(name)),
                "UpdateExpression": "ADD #v :a SET expires_at = if_not_exists(expires_at, :exp)",
                "ConditionExpression": "attribute_not_exists(#v) OR #v < :below",
                "ExpressionAttributeNames": {"#v": "value"},
                "ExpressionAttributeValues": {
                    ":a": n(1), ":below": n(int(below)), ":exp": n(_expiry(expires_in)),
                },
            }
        }

    def increment_counter(
        self, scope: str, name: str, amount: int = 1, *, expires_in: float
    ) -> int:
        """Atomically add ``amount`` to a named counter and return the new value.

        ``scope`` is a user id, or ``"*"`` for a global counter. Every counter
        carries a TTL ``expires_in`` seconds after its first write, so no window
        (and nothing a racing text writes after an erase) stays forever.

        :raises ValueError: ``expires_in`` is not a positive number of seconds.
        """
        values: dict[str, Any] = {":a": n(int(amount)), ":exp": n(_expiry(expires_in))}
        expression = "ADD #v :a SET expires_at = if_not_exists(expires_at, :exp)"
        response = self.table.call(
            "update_item",
            TableName=self.table.name,
            Key=keys.key(scope, keys.counter_sk(name)),
            UpdateExpression=expression,
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues=values,
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["value"]["N"])

    def reserve_counter(
        self, scope: str, name: str, amount: int, *, below: int, expires_in: float
    ) -> int | None:
        """Add ``amount`` to a counter only while it is below ``below``; return the new value or None.

        One conditional UpdateItem, so concurrent reservations never all see the same
        old value: once the counter reaches ``below``, every later reservation fails
        until amounts are given back with :meth:`increment_counter` (a negative amount).
        """
        values: dict[str, Any] = {
            ":a": n(int(amount)),
            ":below": n(int(below)),
            ":exp": n(_expiry(expires_in)),
        }
        expression = "ADD #v :a SET expires_at = if_not_exists(expires_at, :exp)"
        try:
            response = self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=keys.key(scope, keys.counter_sk(name)),
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(#v) OR #v < :below",
                ExpressionAttributeNames={"#v": "value"},
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )
        except ConditionFailed:
            return None
        return int(response["Attributes"]["value"]["N"])

    def get_counter(self, scope: str, name: str) -> int:
        """Return a counter's value (0 when it does not exist or has expired)."""
        item = self.table.get(scope, keys.counter_sk(name))
        return 0 if item is None else int(item["value"]["N"])


def _expiry(expires_in: float) -> int:
    """Return a counter's TTL value; every counter must have one."""
    if not expires_in or expires_in <= 0:
        raise ValueError("a counter needs a positive expires_in (seconds)")
    return int(time.time() + expires_in)
