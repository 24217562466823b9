"""The running summary on a conversation header, changed only under a conditional claim."""

from __future__ import annotations

import time
from typing import Any

from conversation.dynamodb import keys
from conversation.dynamodb.codec import n, s
from conversation.dynamodb.table import ConditionFailed, Table
from conversation.models import isoformat, utc_now


class Summaries:
    """Claim, save, release and clear a conversation's summary (one conditional UpdateItem each)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def claim(
        self, user_id: str, conversation_id: str, owner: str, seconds: float, *, upto: str | None
    ) -> bool:
        """Take the right to update a summary that still covers up to ``upto``; False if taken.

        A claim lapses after ``seconds``, so a worker that died does not block the next.
        """
        now = time.time()
        values: dict[str, Any] = {
            ":owner": s(owner), ":until": n(round(now + seconds, 3)), ":now": n(round(now, 3)),
        }
        condition = (
            "attribute_exists(pk) AND attribute_not_exists(deleted_at) AND "
            "(attribute_not_exists(summary_claim_until) OR summary_claim_until < :now) AND "
        )
        if upto is None:
            condition += "attribute_not_exists(summary_upto)"
        else:
            condition += "summary_upto = :upto"
            values[":upto"] = s(upto)
        return self._update(
            user_id, conversation_id, "SET summary_claim = :owner, summary_claim_until = :until",
            condition, values,
        )

    def save(
        self, user_id: str, conversation_id: str, owner: str, text: str, *, upto: str, count: int,
        tokens: int = 0,
    ) -> bool:
        """Store a new summary under ``owner``'s claim and release it; False if the claim was lost."""
        values: dict[str, Any] = {
            ":owner": s(owner), ":text": s(text), ":upto": s(upto), ":count": n(count),
            ":now": s(isoformat(utc_now())), ":tokens": n(int(tokens)),
        }
        expression = (
            "SET summary = :text, summary_upto = :upto, summary_count = :count, summary_at = :now "
            "REMOVE summary_claim, summary_claim_until ADD ctr_summary_tokens :tokens"
        )
        return self._update(
            user_id, conversation_id, expression,
            "summary_claim = :owner AND attribute_not_exists(deleted_at)", values,
        )

    def release(self, user_id: str, conversation_id: str, owner: str) -> None:
        """Give up ``owner``'s claim without changing the summary."""
        self._update(
            user_id, conversation_id, "REMOVE summary_claim, summary_claim_until",
            "summary_claim = :owner", {":owner": s(owner)},
        )

    def clear(self, user_id: str, conversation_id: str) -> bool:
        """Forget a conversation's summary text (and any claim); False when it had none.

        The messages it covered stay marked as covered, so they are not summarised again.
        """
        return self._update(
            user_id, conversation_id,
            "SET summary_at = :now REMOVE summary, summary_claim, summary_claim_until",
            "attribute_exists(summary) OR attribute_exists(summary_claim)",
            {":now": s(isoformat(utc_now()))},
        )

    def _update(
        self, user_id: str, conversation_id: str, expression: str, condition: str, values: dict[str, Any]
    ) -> bool:
        try:
            self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=keys.key(user_id, keys.conversation_sk(conversation_id)),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed:
            return False
        return True
