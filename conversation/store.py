"""What the rest of the code may ask of storage, in domain terms.

:class:`ConversationStore` is the protocol the manager, the agent session, the
limits and the operator surfaces rely on. It speaks of users, conversations,
messages, pages, leases and counters only: no items, sort keys or attribute
names. Two implementations keep it: :class:`conversation.storage.DynamoDBStorage`
(production) and :class:`conversation.inmemory.MemoryStore` (a process-local
store for tests and tools); one contract suite (``tests/test_store_contract.py``)
runs over both, the DynamoDB one on moto and on DynamoDB Local.

Shared rules every implementation keeps:

- A stored message has a ``conversation_id`` and an opaque ``position``;
  positions order the messages of one conversation as strings, and the one
  reply to a message sorts right after it (:meth:`Message.precedes`).
- A repeated idempotent append stores nothing and returns the first copy
  (``Recorded.created`` is False); a second reply to a message likewise.
- Appends without a conversation id go to the active conversation, starting
  one when there is none; an append never lands in an archived conversation.
- Listings return :class:`Page` objects whose cursors only fit the listing
  (user, kind, direction) that issued them; anything else is InvalidCursor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from conversation.guards import ReplyGuard, TextGuard
from conversation.models import Conversation, Message, Page, Recorded, User


@runtime_checkable
class Coordination(Protocol):
    """Cross-worker coordination: one turn lease per number, atomic named counters."""

    def acquire_lease(self, user_id: str, owner: str, seconds: float) -> bool:
        """Take the number's lease for ``seconds`` unless another owner holds a live one."""
        ...

    def release_lease(self, user_id: str, owner: str) -> None:
        """Give the lease back if ``owner`` still holds it."""
        ...

    def lease_taken_at(self, user_id: str) -> float | None:
        """Return when the number's live lease was taken (epoch seconds), or None when none is live."""
        ...

    def increment_counter(
        self, scope: str, name: str, amount: int = 1, *, expires_in: float
    ) -> int:
        """Add ``amount`` to a counter of a number (``scope="*"``: global) and return its value."""
        ...

    def reserve_counter(
        self, scope: str, name: str, amount: int, *, below: int, expires_in: float
    ) -> int | None:
        """Add ``amount`` only while the counter is below ``below`` (atomically); new value or None."""
        ...

    def get_counter(self, scope: str, name: str) -> int:
        """Return a counter's value (0 when it does not exist or has expired)."""
        ...


# A work item nobody claimed is due for recovery once its last text is this old: the
# webhook that noted the text claims it at once, so only abandoned work waits this long.
WORK_QUIET_SECONDS = 5.0
# A work item expires (TTL) this long after its last text, whatever happens to it.
WORK_TTL_SECONDS = 2 * 86400


@dataclass(frozen=True)
class WorkItem:
    """A number's unanswered texts, as the work queue sees them."""

    user_id: str
    version: int  # one more per recorded text
    since: float  # epoch seconds of the first text not yet covered
    owner: str | None  # who claimed the work, if anyone
    claimed_until: float | None  # when that claim lapses


@runtime_checkable
class WorkQueue(Protocol):
    """One work item per number with unanswered texts: the turn that answers them holds its claim.

    Rules every implementation keeps: :meth:`note_text` raises the version atomically
    (creating the item); :meth:`claim_work` succeeds only on existing work that is
    unclaimed, whose claim lapsed, or that the owner already holds; :meth:`finish_work`
    deletes the item only when the owner holds it and the version is unchanged;
    :meth:`due_work` lists work whose claim lapsed or that nobody claimed for
    WORK_QUIET_SECONDS; ``erase_user`` deletes the item.
    """

    def note_text(self, user_id: str) -> int:
        """Count one more unanswered text for the number; return the work's version."""
        ...

    def claim_work(self, user_id: str, owner: str, seconds: float) -> int | None:
        """Take (or renew) the number's work for ``seconds``; its version, or None if not possible."""
        ...

    def renew_work(self, user_id: str, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s claim; False when it holds none (lost, or the work is gone)."""
        ...

    def finish_work(self, user_id: str, owner: str, version: int) -> bool:
        """Delete the work if ``owner`` holds it at ``version``; False: newer texts or claim lost."""
        ...

    def release_work(self, user_id: str, owner: str) -> None:
        """Give up ``owner``'s claim and keep the work for someone else."""
        ...

    def get_work(self, user_id: str) -> WorkItem | None:
        """Return the number's work item, or None when it has none."""
        ...

    def due_work(self, now: float, limit: int) -> list[str]:
        """Return up to ``limit`` numbers whose work nobody is doing (crashed or released owners)."""
        ...


class DailyFigures(Protocol):
    """Per-day usage figures, each day split over a few shards so concurrent turns never conflict."""

    def add_figures(self, day: str, shard: int, amounts: Mapping[str, int], *, expires_at: int) -> None:
        """Add ``amounts`` (figure name -> count) to shard ``shard`` of ``day`` (``YYYY-MM-DD``).

        ``expires_at`` (epoch seconds) is when the shard may be forgotten, set by its first write.
        """
        ...

    def read_figures(self, shards: Sequence[tuple[str, int]]) -> dict[tuple[str, int], dict[str, int]]:
        """Return the figures of each (day, shard) asked for that has any; absent ones are left out."""
        ...


class ConsoleSessions(Protocol):
    """Operator console sessions, kept by the digest of their id (never the id itself)."""

    def put_session(self, digest: str, *, created_at: int, expires_at: int) -> None:
        """Store a session that lasts until ``expires_at`` (epoch seconds)."""
        ...

    def session_expires_at(self, digest: str) -> int | None:
        """Return when the session ends (epoch seconds, strongly consistent), or None when unknown."""
        ...

    def delete_session(self, digest: str) -> None:
        """Forget the session (an unknown one is fine)."""
        ...


@runtime_checkable
class ConversationStore(Coordination, WorkQueue, DailyFigures, ConsoleSessions, Protocol):
    """Users, conversations and messages, plus coordination, the day's figures and console sessions."""

    def ping(self) -> None:
        """Raise a StorageError when the store cannot be reached."""
        ...

    def close(self) -> None:
        """Release connections the store opened itself."""
        ...

    # users
    def get_user(self, user_id: str) -> User | None:
        """Return what is stored about a number, or None."""
        ...

    def set_opt_out(self, user_id: str, opted_out: bool) -> None:
        """Record STOP (True) or START (False)."""
        ...

    # conversations
    def get_conversation(self, user_id: str, conversation_id: str) -> Conversation | None:
        """Return a conversation header without messages, or None."""
        ...

    def get_active_conversation(self, user_id: str) -> Conversation | None:
        """Return the active conversation's header, or None."""
        ...

    def start_conversation(self, user_id: str) -> str:
        """Start an active conversation unless one is active; return the active one's id."""
        ...

    def create_conversation(
        self, user_id: str, conversation_id: str, *, created_at: str, metadata: dict[str, Any] | None = None
    ) -> bool:
        """Create an archived conversation with a given id (imports); False if it exists."""
        ...

    def activate_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Make a conversation active if the number has none; False otherwise."""
        ...

    def archive_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Archive a conversation; False if it already was; ConversationNotFound if unknown."""
        ...

    def reset(self, user_id: str) -> str | None:
        """Archive the active conversation; return its id (None if there was none)."""
        ...

    def update_conversation(
        self, user_id: str, conversation_id: str, *, title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        """Set a title and/or metadata; return the header; ConversationNotFound if unknown."""
        ...

    # messages
    def append(
        self,
        user_id: str,
        message: Message,
        *,
        conversation_id: str | None = None,
        idempotent: bool = False,
        reply_to: Message | None = None,
        counters: dict[str, int] | None = None,
        active_hint: str | None = None,
        guard: TextGuard | None = None,
        release_lease: str | None = None,
        reply_guard: ReplyGuard | None = None,
    ) -> Recorded:
        """Store a message (atomically with its header counts) and say whether it is new.

        With ``guard`` the message is stored only if the guard holds, in the same atomic
        write (taking the lease, counting the counters it names, noting the text on the
        number's work and taking its claim); otherwise nothing is stored and GuardFailed
        says what did not hold. A repeated idempotent append returns the first copy
        whatever the guard. With ``release_lease`` a new message gives the number's turn
        lease back in the same write, if that owner holds it. With ``reply_guard`` a new
        reply is stored only while its owner holds the number's work (renewed, or ended:
        ``Recorded.finished``) and the number has not opted out (else GuardFailed).
        """
        ...

    def get_message(self, user_id: str, message_id: str) -> Message | None:
        """Return a message appended idempotently under ``message_id``, or None."""
        ...

    def get_reply(self, user_id: str, message: Message) -> Message | None:
        """Return the reply stored for a message, or None."""
        ...

    def update_message_metadata(
        self, user_id: str, message: Message, updates: dict[str, Any], *,
        counters: dict[str, int] | None = None, expect: dict[str, Any] | None = None,
    ) -> Message:
        """Merge keys into a stored message's metadata; add ``counters`` to its conversation.

        With ``expect``, merge only if the stored metadata has those values (a missing
        key reads as None), atomically with the write; otherwise raise StaleMetadata.
        """
        ...

    def reply_ref(self, text: Message) -> Message:
        """Where the reply to the stored ``text`` is (or would be), to pass to :meth:`set_delivery`
        without reading the reply first; its content and metadata are empty."""
        ...

    def set_delivery(
        self, user_id: str, message: Message, updates: dict[str, Any], *,
        expect: dict[str, Any] | None = None, unless: dict[str, Sequence[Any]] | None = None,
        counters: dict[str, int] | None = None, finish: tuple[str, int] | None = None,
    ) -> bool:
        """Record a step of a reply's delivery (``DELIVERY_FIELDS`` keys only) in one write.

        Made only while the reply's delivery keys have the ``expect`` values (None: absent)
        and none has one of its ``unless`` values, else StaleMetadata (ConversationNotFound
        when the reply is gone). ``counters`` go to the conversation in the same write. With
        ``finish`` (owner, version) the number's work also ends in the same write when that
        owner holds it and no text came since that version; returns whether it did.
        """
        ...

    def recent_messages(self, user_id: str, conversation_id: str, limit: int) -> list[Message]:
        """Return the newest ``limit`` messages, oldest first."""
        ...

    def append_many(
        self,
        user_id: str,
        messages: list[Message],
        *,
        conversation_id: str | None = None,
        create: bool = False,
        counters: dict[str, int] | None = None,
        sequenced: bool = False,
    ) -> list[Message]:
        """Append messages in order (a size problem refuses them all before any write).

        With ``sequenced`` positions come from a per-conversation sequence, so
        the order is the order of the calls whatever the clock says.
        """
        ...

    def pop_newest(self, user_id: str, conversation_id: str) -> Message | None:
        """Remove and return the newest message (each to one caller only), or None."""
        ...

    def clear_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation's messages and header; return how many records went."""
        ...

    # listings
    def list_messages(
        self, user_id: str, conversation_id: str, *, limit: int = 50, cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        """Return one page of a conversation's messages."""
        ...

    def list_conversations(
        self, user_id: str, *, limit: int = 20, cursor: str | None = None, include_deleted: bool = False
    ) -> Page:
        """Return one page of a number's conversations, newest first."""
        ...

    def list_recent_conversations(self, *, limit: int = 20, cursor: str | None = None) -> Page:
        """Return conversations of every number, most recent activity (by minute) first."""
        ...

    def first_and_last(self, user_id: str, conversation_id: str) -> tuple[Message | None, Message | None]:
        """Return a conversation's first and last message."""
        ...

    # the running summary (on the conversation; see Conversation.summary)
    def messages_after(
        self, user_id: str, conversation_id: str, position: str | None, limit: int
    ) -> list[Message]:
        """Return up to ``limit`` messages after ``position`` (from the start when None), oldest first."""
        ...

    def claim_summary(
        self, user_id: str, conversation_id: str, owner: str, seconds: float, *, upto: str | None
    ) -> bool:
        """Take the right to update a summary still covering up to ``upto``; False if taken or moved on.

        A claim lapses after ``seconds``; only a lapsed claim can be taken over.
        """
        ...

    def save_summary(
        self, user_id: str, conversation_id: str, owner: str, text: str, *, upto: str, count: int,
        tokens: int = 0,
    ) -> bool:
        """Store a summary under ``owner``'s claim (released; ``tokens`` counted); False if it was lost."""
        ...

    def release_summary_claim(self, user_id: str, conversation_id: str, owner: str) -> None:
        """Give up ``owner``'s claim, keeping the summary."""
        ...

    def clear_summary(self, user_id: str, conversation_id: str) -> bool:
        """Forget the summary text and any claim (what it covered stays covered); False if none."""
        ...

    # deletion and export
    def soft_delete_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        """Hide a conversation from listings (archived, kept); ConversationNotFound if unknown."""
        ...

    def hard_delete_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation and everything of it; return how many records went."""
        ...

    def erase_user(self, user_id: str) -> int:
        """Delete everything stored for a number; return how many records went (0 when repeated)."""
        ...

    def iter_user_items(self, user_id: str) -> Iterator[dict[str, Any]]:
        """Yield the user, its conversations and messages as typed plain dicts (export)."""
        ...
