"""The table's key layout: the only code that knows how items are keyed.

All items of one user share the partition ``pk = U#<user_id>``; the sort key
``sk`` says what an item is:

=====================  ==========================================
item                   sort key
=====================  ==========================================
user                   ``USER``
conversation header    ``C#<conversation_id>``
message                ``M#<conversation_id>#<position>``
message-id marker      ``I#<message_id>``
turn lease             ``LEASE``
counter                ``N#<name>`` (``pk = GLOBAL`` for global ones)
=====================  ==========================================

Outside the user partitions: daily figures at ``pk = STATS#<YYYY-MM-DD>#<shard>``,
``sk = DAY``, operator console sessions at ``pk = CONSOLE#<sha256 of the id>``,
``sk = SESSION``, and the work item of a number with unanswered texts at
``pk = WORK#<shard 0..7 from the sha256 of the user id>``, ``sk = <user id>``
(a few partitions, so recovery finds due work with one Query each, never a Scan).

A message's *position* is ``<UTC time, microseconds>#<random hex>`` (a batch
shares one time and random part and ends in ``.<index>``); the reply to a
message is at the message's position plus ``#R``, so it sorts right after it.
Conversation headers carry the keys of the keys-only ``activity`` index:
``A#<YYYY-MM-DD>`` and ``<YYYY-MM-DDTHH:MM>#<user_id>#<conversation_id>``.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from conversation.ids import check_user_id
from conversation.models import parse_iso, utc_now

ACTIVITY_INDEX = "activity"
GLOBAL_SCOPE = "*"

_USER = "USER"
_LEASE = "LEASE"
_CONVERSATION = "C#"
_MESSAGE = "M#"
_MARKER = "I#"
_COUNTER = "N#"
_REPLY = "#R"
_ACTIVITY = "A#"


def new_conversation_id() -> str:
    """Return a conversation id that sorts by creation time."""
    return f"{utc_now().strftime('%Y%m%dT%H%M%S.%f')}-{secrets.token_hex(4)}"


def _time_key(moment_iso: str) -> str:
    """Turn an ISO timestamp into a compact, lexically sortable key."""
    return parse_iso(moment_iso).strftime("%Y%m%dT%H%M%S.%f")


# ------------------------------------------------------------------ positions


def new_position(timestamp: str) -> str:
    """Return a fresh position for a message written at ``timestamp``."""
    return f"{_time_key(timestamp)}#{secrets.token_hex(4)}"


def batch_positions(timestamp: str, count: int) -> list[str]:
    """Return ``count`` consecutive positions sharing one time (order holds at equal times)."""
    base = f"{_time_key(timestamp)}#{secrets.token_hex(4)}"
    width = max(4, len(str(count - 1)))
    return [f"{base}.{index:0{width}d}" for index in range(count)]


def sequence_positions(first: int, count: int) -> list[str]:
    """Return the positions of ``count`` messages numbered from ``first`` (agent sessions).

    ``S`` sorts after the digits of every clock-based position, so a session's
    older, clock-keyed items stay before its sequenced ones.
    """
    return [f"S{number:020d}" for number in range(first, first + count)]


def reply_position(parent_position: str) -> str:
    """Return the position of the one reply to the message at ``parent_position``."""
    return parent_position + _REPLY


def longest_position(conversation_id: str | None = None) -> str:
    """Return a sort key at least as long as any real one (for sizing items before writing)."""
    return _MESSAGE + "x" * (64 + len(conversation_id or "x" * 40))


# ------------------------------------------------------------------ partition and sort keys


def _pk(scope: str) -> str:
    # Only ids that every surface can name (and so erase) are ever keyed.
    return "GLOBAL" if scope == GLOBAL_SCOPE else f"U#{check_user_id(scope)}"


def key(user_id: str, sk: str) -> dict[str, Any]:
    """Return the wire-form primary key of one item of a user."""
    return {"pk": {"S": _pk(user_id)}, "sk": {"S": sk}}


def partition(user_id: str) -> dict[str, str]:
    """Return the wire-form partition key value of a user."""
    return {"S": _pk(user_id)}


def sort_key_of(item: dict[str, Any]) -> str:
    """Return an item's sort key."""
    return item["sk"]["S"]


USER_SK = _USER
LEASE_SK = _LEASE
CONVERSATIONS_PREFIX = _CONVERSATION


def conversation_sk(conversation_id: str) -> str:
    """Return the sort key of a conversation header."""
    return _CONVERSATION + conversation_id


def messages_prefix(conversation_id: str) -> str:
    """Return the sort-key prefix shared by every message of a conversation."""
    return f"{_MESSAGE}{conversation_id}#"


def message_sk(conversation_id: str, position: str) -> str:
    """Return the sort key of the message at ``position`` of a conversation."""
    return messages_prefix(conversation_id) + position


def split_message_sk(sk: str) -> tuple[str, str]:
    """Return ``(conversation_id, position)`` of a message's sort key."""
    _, conversation_id, position = sk.split("#", 2)
    return conversation_id, position


def marker_sk(message_id: str) -> str:
    """Return the sort key of the marker that reserves a message id."""
    return _MARKER + message_id


def counter_sk(name: str) -> str:
    """Return the sort key of a named counter."""
    return _COUNTER + name


def kind_of(sk: str) -> str:
    """Return what an item is from its sort key: user, conversation, message, marker, lease, counter."""
    if sk == _USER:
        return "user"
    if sk == _LEASE:
        return "lease"
    for prefix, kind in (
        (_CONVERSATION, "conversation"),
        (_MESSAGE, "message"),
        (_MARKER, "marker"),
        (_COUNTER, "counter"),
    ):
        if sk.startswith(prefix):
            return kind
    return "unknown"


# ------------------------------------------------------------------ activity index


def activity_bucket(day: str) -> dict[str, str]:
    """Return the index partition value for a ``YYYY-MM-DD`` day."""
    return {"S": _ACTIVITY + day}


def activity_keys(moment_iso: str, user_id: str, conversation_id: str) -> dict[str, dict[str, str]]:
    """Return the activity-index attributes of a header last active at ``moment_iso``.

    Minute-grained: the keys-only index is rewritten at most once a minute per
    conversation, not on every message.
    """
    return {
        "gsi1pk": {"S": _ACTIVITY + moment_iso[:10]},
        "gsi1sk": {"S": f"{moment_iso[:16]}#{user_id}#{conversation_id}"},
    }


ACTIVITY_ATTRIBUTES = ("gsi1pk", "gsi1sk")


# ------------------------------------------------------------------ outside user partitions


def stats_key(day: str, shard: int) -> dict[str, Any]:
    """Return the key of one shard of a day's figures (``day`` is ``YYYY-MM-DD``)."""
    return {"pk": {"S": f"STATS#{day}#{shard}"}, "sk": {"S": "DAY"}}


def console_session_key(digest: str) -> dict[str, Any]:
    """Return the key of an operator console session, by the digest of its id."""
    return {"pk": {"S": "CONSOLE#" + digest}, "sk": {"S": "SESSION"}}


WORK_SHARDS = 8
_WORK = "WORK#"


def work_shard(user_id: str) -> int:
    """Return the work partition of a user (stable across processes, unlike ``hash``)."""
    return hashlib.sha256(user_id.encode("utf-8")).digest()[0] % WORK_SHARDS


def work_key(user_id: str) -> dict[str, Any]:
    """Return the key of a user's work item (its unanswered texts' version and claim)."""
    return {"pk": {"S": f"{_WORK}{work_shard(user_id)}"}, "sk": {"S": check_user_id(user_id)}}


def work_partition(shard: int) -> dict[str, str]:
    """Return the partition key value of one work shard."""
    return {"S": f"{_WORK}{shard}"}
