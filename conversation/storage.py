"""DynamoDB storage for conversations: one item per message, constant cost per turn.

:class:`DynamoDBStorage` is the store the app and the seed example use; it is a
facade over :mod:`conversation.dynamodb`, whose modules each own one concern
(key layout, item codec, table plumbing, users, conversations, messages,
batches, listings, deletion, coordination). The item layout and every access
pattern are described in ``docs/data-model.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from conversation import defaults
from conversation.dynamodb import keys
from conversation.dynamodb.aggregates import Aggregates
from conversation.dynamodb.batches import Batches
from conversation.dynamodb.conversations import Conversations
from conversation.dynamodb.coordination import Coordination
from conversation.dynamodb.deletion import Deletion
from conversation.dynamodb.listings import DEFAULT_ACTIVITY_LOOKBACK_DAYS, Listings
from conversation.dynamodb.message_updates import MessageUpdates
from conversation.dynamodb.messages import Messages
from conversation.dynamodb.summaries import Summaries
from conversation.dynamodb.table import (
    DEFAULT_MAX_ITEM_BYTES,
    DEFAULT_MAX_POOL_CONNECTIONS,
    DEFAULT_TABLE_NAME,
    Table,
)
from conversation.dynamodb.users import Users
from conversation.dynamodb.work import Work
from conversation.guards import ReplyGuard, TextGuard
from conversation.models import MAX_PAGE_SIZE, Conversation, Message, Page, Recorded, User
from conversation.store import WorkItem

__all__ = ["DEFAULT_TABLE_NAME", "MAX_PAGE_SIZE", "DynamoDBStorage"]


class DynamoDBStorage:
    """Store conversations in one DynamoDB table, one item per message.

    :param table_name: the table; ``DadaCatConversations`` by default.
    :param client: a boto3 DynamoDB client; built lazily from the other
        arguments (and boto3's usual credential chain) when omitted.
    :param ttl_days: when set, every item expires this many days after its last write.
    :param auto_create: create the table on first use when it is missing.
    :param max_item_bytes: largest item written; bigger messages are refused (MessageTooLarge).
    :param max_retries: attempts botocore makes of a throttled or failed request.
    :param activity_lookback_days: how far back the cross-user activity listing looks.
    :param max_pool_connections: connections the built client keeps open at most; give one
        per thread that may call the store at once.
    """

    def __init__(
        self,
        table_name: str | None = None,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        ttl_days: float | None = None,
        auto_create: bool = True,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        max_retries: int = defaults.DYNAMODB_MAX_RETRIES,
        connect_timeout: float = defaults.DYNAMODB_CONNECT_TIMEOUT,
        read_timeout: float = defaults.DYNAMODB_READ_TIMEOUT,
        activity_lookback_days: int = DEFAULT_ACTIVITY_LOOKBACK_DAYS,
        max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
    ) -> None:
        self.table = Table(
            table_name or DEFAULT_TABLE_NAME,
            client=client,
            endpoint_url=endpoint_url,
            region_name=region_name,
            max_retries=max_retries,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            auto_create=auto_create,
            ttl_days=ttl_days,
            max_item_bytes=max_item_bytes,
            max_pool_connections=max_pool_connections,
        )
        self.users = Users(self.table)
        self.conversations = Conversations(self.table, self.users)
        self.coordination = Coordination(self.table)
        self.work = Work(self.table)
        self.messages = Messages(self.table, self.conversations, self.coordination, self.work)
        self.updates = MessageUpdates(self.table, self.conversations, self.messages, self.work)
        self.listings = Listings(self.table, self.messages, lookback_days=activity_lookback_days)
        self.batches = Batches(self.table, self.conversations, self.messages, self.listings)
        self.deletion = Deletion(self.table, self.conversations, self.listings)
        self.summaries = Summaries(self.table)
        self.aggregates = Aggregates(self.table)

    def __repr__(self) -> str:
        return f"DynamoDBStorage(table={self.table.name!r})"

    # ------------------------------------------------------------------ the table

    @property
    def table_name(self) -> str:
        """The DynamoDB table's name."""
        return self.table.name

    @property
    def ttl_days(self) -> float | None:
        """Days after its last write that an item expires (None: never)."""
        return self.table.ttl_days

    @property
    def client(self) -> Any:
        """The boto3 client (built on first use)."""
        return self.table.client

    def create_table(self) -> bool:
        """Create the table, its activity index and its TTL setting if missing; True if created.

        Safe to call any number of times.
        """
        return self.table.create()

    def ping(self) -> None:
        """Check that the table is reachable; raise a StorageError if not."""
        self.table.ping()

    def close(self) -> None:
        """Close the client's connections (only a client this store built itself)."""
        self.table.close()

    # ------------------------------------------------------------------ users

    def get_user(self, user_id: str) -> User | None:
        """Return what is stored about a number (active conversation, opt-out), or None."""
        return self.users.get(user_id)

    def set_opt_out(self, user_id: str, opted_out: bool) -> None:
        """Record whether the number has opted out of messages (STOP/START)."""
        self.users.set_opt_out(user_id, opted_out)

    # ------------------------------------------------------------------ conversations

    def get_conversation(self, user_id: str, conversation_id: str) -> Conversation | None:
        """Return one conversation header (without messages), or None."""
        return self.conversations.get(user_id, conversation_id)

    def get_active_conversation(self, user_id: str) -> Conversation | None:
        """Return the active conversation's header, or None if there is none."""
        return self.conversations.get_active(user_id)

    def start_conversation(self, user_id: str) -> str:
        """Make a new active conversation unless one is active; return the active one's id."""
        return self.conversations.start(user_id)

    def create_conversation(
        self, user_id: str, conversation_id: str, *, created_at: str, metadata: dict[str, Any] | None = None
    ) -> bool:
        """Create an archived conversation with a given id (imports); False if it exists."""
        return self.conversations.create(user_id, conversation_id, created_at=created_at, metadata=metadata)

    def activate_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Make a conversation the active one if the user has none; False otherwise."""
        return self.conversations.activate(user_id, conversation_id)

    def archive_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Mark a conversation inactive (the next message starts a new one); False if it was."""
        return self.conversations.archive(user_id, conversation_id)

    def reset(self, user_id: str) -> str | None:
        """Archive the user's active conversation; return its id (None if none)."""
        return self.conversations.reset(user_id)

    def update_conversation(
        self, user_id: str, conversation_id: str, *, title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        """Set a conversation's title and/or metadata; return the new header."""
        return self.conversations.update(user_id, conversation_id, title=title, metadata=metadata)

    # ------------------------------------------------------------------ messages

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
        """Append a message with one transactional write; see :meth:`Messages.append`."""
        return self.messages.append(
            user_id,
            message,
            conversation_id=conversation_id,
            idempotent=idempotent,
            reply_to=reply_to,
            counters=counters,
            active_hint=active_hint,
            guard=guard,
            release_lease=release_lease,
            reply_guard=reply_guard,
        )

    def get_message(self, user_id: str, message_id: str) -> Message | None:
        """Return a message by the id it was appended with idempotently, or None."""
        return self.messages.get(user_id, message_id)

    def get_reply(self, user_id: str, message: Message) -> Message | None:
        """Return the reply stored for a message, or None if it has none yet."""
        return self.messages.reply_to(user_id, message)

    def update_message_metadata(
        self, user_id: str, message: Message, updates: dict[str, Any], *,
        counters: dict[str, int] | None = None, expect: dict[str, Any] | None = None,
    ) -> Message:
        """Merge keys into a stored message's metadata; ``counters`` go to its header."""
        return self.updates.update_metadata(user_id, message, updates, counters=counters, expect=expect)

    def reply_ref(self, text: Message) -> Message:
        """Where the reply to a stored text is (or would be), without reading it."""
        if not text.position or not text.conversation_id:
            raise ValueError("text must be a stored message")
        return Message(content="", role="assistant", message_id=f"reply-to-{text.message_id}",
                       reply_to=text.message_id, conversation_id=text.conversation_id,
                       position=keys.reply_position(text.position))

    def set_delivery(
        self, user_id: str, message: Message, updates: dict[str, Any], *,
        expect: dict[str, Any] | None = None, unless: dict[str, Sequence[Any]] | None = None,
        counters: dict[str, int] | None = None, finish: tuple[str, int] | None = None,
    ) -> bool:
        """Record a delivery step with one conditional write; see :meth:`MessageUpdates.set_delivery`."""
        return self.updates.set_delivery(user_id, message, updates, expect=expect, unless=unless,
                                         counters=counters, finish=finish)

    def recent_messages(self, user_id: str, conversation_id: str, limit: int) -> list[Message]:
        """Return the newest ``limit`` messages, oldest first, with one Query."""
        return self.messages.recent(user_id, conversation_id, limit)

    # ------------------------------------------------------------------ batches

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
        """Append messages in order with as few transactions as possible; see :meth:`Batches.append_many`."""
        return self.batches.append_many(
            user_id, messages, conversation_id=conversation_id, create=create, counters=counters,
            sequenced=sequenced,
        )

    def pop_newest(self, user_id: str, conversation_id: str) -> Message | None:
        """Delete and return a conversation's newest message; None when it has none."""
        return self.batches.pop_newest(user_id, conversation_id)

    def clear_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation's messages and then its header; return items deleted."""
        return self.batches.clear_conversation(user_id, conversation_id)

    # ------------------------------------------------------------------ listings

    def list_messages(
        self, user_id: str, conversation_id: str, *, limit: int = 50, cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        """Return one page of a conversation's messages in either direction."""
        return self.listings.messages_page(
            user_id, conversation_id, limit=limit, cursor=cursor, newest_first=newest_first
        )

    def list_conversations(
        self, user_id: str, *, limit: int = 20, cursor: str | None = None, include_deleted: bool = False
    ) -> Page:
        """Return one page of a user's conversations, newest first."""
        return self.listings.conversations_page(
            user_id, limit=limit, cursor=cursor, include_deleted=include_deleted
        )

    def list_recent_conversations(self, *, limit: int = 20, cursor: str | None = None) -> Page:
        """Return conversations across all users, newest activity first (never a Scan)."""
        return self.listings.recent_conversations(limit=limit, cursor=cursor)

    def first_and_last(self, user_id: str, conversation_id: str) -> tuple[Message | None, Message | None]:
        """Return a conversation's first and last message."""
        return self.listings.first_and_last(user_id, conversation_id)

    # ------------------------------------------------------------------ summaries

    def messages_after(
        self, user_id: str, conversation_id: str, position: str | None, limit: int
    ) -> list[Message]:
        """Return up to ``limit`` messages after ``position`` (from the start when None), oldest first."""
        return self.messages.after(user_id, conversation_id, position, limit)

    def claim_summary(
        self, user_id: str, conversation_id: str, owner: str, seconds: float, *, upto: str | None
    ) -> bool:
        """Take the right to update a summary that still covers up to ``upto``; False if taken."""
        return self.summaries.claim(user_id, conversation_id, owner, seconds, upto=upto)

    def save_summary(
        self, user_id: str, conversation_id: str, owner: str, text: str, *, upto: str, count: int,
        tokens: int = 0,
    ) -> bool:
        """Store a new summary under ``owner``'s claim and release it; False if the claim was lost."""
        return self.summaries.save(
            user_id, conversation_id, owner, text, upto=upto, count=count, tokens=tokens
        )

    def release_summary_claim(self, user_id: str, conversation_id: str, owner: str) -> None:
        """Give up ``owner``'s claim without changing the summary."""
        self.summaries.release(user_id, conversation_id, owner)

    def clear_summary(self, user_id: str, conversation_id: str) -> bool:
        """Forget a conversation's summary text (and any claim); False when it had none."""
        return self.summaries.clear(user_id, conversation_id)

    # ------------------------------------------------------------------ deletion

    def soft_delete_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        """Hide a conversation from listings and archive it; its items stay."""
        return self.deletion.soft_delete(user_id, conversation_id)

    def hard_delete_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation's header, messages and markers; return items deleted."""
        return self.deletion.hard_delete(user_id, conversation_id)

    def erase_user(self, user_id: str) -> int:
        """Delete every item stored for a user (its work item too); return how many were deleted."""
        return self.work.forget(user_id) + self.deletion.erase_user(user_id)

    def iter_user_items(self, user_id: str) -> Iterator[dict[str, Any]]:
        """Yield everything stored for a user as plain dicts (for export)."""
        return self.deletion.export(user_id)

    # ------------------------------------------------------------------ coordination

    def acquire_lease(self, user_id: str, owner: str, seconds: float) -> bool:
        """Take the user's lease for ``seconds`` unless someone else holds a live one."""
        return self.coordination.acquire_lease(user_id, owner, seconds)

    def lease_taken_at(self, user_id: str) -> float | None:
        """Return when the user's live lease was taken (epoch seconds), or None when none is live."""
        return self.coordination.lease_taken_at(user_id)

    def release_lease(self, user_id: str, owner: str) -> None:
        """Release the user's lease if ``owner`` still holds it."""
        self.coordination.release_lease(user_id, owner)

    def increment_counter(
        self, scope: str, name: str, amount: int = 1, *, expires_in: float
    ) -> int:
        """Atomically add ``amount`` to a named counter (``scope`` ``"*"``: global); return it."""
        return self.coordination.increment_counter(scope, name, amount, expires_in=expires_in)

    def reserve_counter(
        self, scope: str, name: str, amount: int, *, below: int, expires_in: float
    ) -> int | None:
        """Add ``amount`` to a counter only while it is below ``below``; the new value, or None."""
        return self.coordination.reserve_counter(scope, name, amount, below=below, expires_in=expires_in)

    def get_counter(self, scope: str, name: str) -> int:
        """Return a counter's value (0 when it does not exist or has expired)."""
        return self.coordination.get_counter(scope, name)

    # ------------------------------------------------------------------ work items

    def note_text(self, user_id: str) -> int:
        """Count one more unanswered text for the number; return the work's version."""
        return self.work.note_text(user_id)

    def claim_work(self, user_id: str, owner: str, seconds: float) -> int | None:
        """Take (or renew) the number's work for ``seconds``; its version, or None."""
        return self.work.claim(user_id, owner, seconds)

    def renew_work(self, user_id: str, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s claim; False when it holds none."""
        return self.work.renew(user_id, owner, seconds)

    def finish_work(self, user_id: str, owner: str, version: int) -> bool:
        """Delete the work if ``owner`` holds it at ``version``; False otherwise."""
        return self.work.finish(user_id, owner, version)

    def release_work(self, user_id: str, owner: str) -> None:
        """Give up ``owner``'s claim, keeping the work."""
        self.work.release(user_id, owner)

    def get_work(self, user_id: str) -> WorkItem | None:
        """Return the number's work item, or None."""
        return self.work.get(user_id)

    def due_work(self, now: float, limit: int) -> list[str]:
        """Return up to ``limit`` numbers whose work nobody is doing (one Query per shard)."""
        return self.work.due(now, limit)

    # ------------------------------------------------------ figures and sessions

    def add_figures(self, day: str, shard: int, amounts: Mapping[str, int], *, expires_at: int) -> None:
        """Add to one shard of a day's figures (one UpdateItem)."""
        self.aggregates.add_figures(day, shard, amounts, expires_at=expires_at)

    def read_figures(self, shards: Sequence[tuple[str, int]]) -> dict[tuple[str, int], dict[str, int]]:
        """Return the figures of the shards asked for (BatchGetItem)."""
        return self.aggregates.read_figures(shards)

    def put_session(self, digest: str, *, created_at: int, expires_at: int) -> None:
        """Store a console session (one PutItem)."""
        self.aggregates.put_session(digest, created_at=created_at, expires_at=expires_at)

    def session_expires_at(self, digest: str) -> int | None:
        """Return when a console session ends, or None (one consistent GetItem)."""
        return self.aggregates.session_expires_at(digest)

    def delete_session(self, digest: str) -> None:
        """Delete a console session (one DeleteItem)."""
        self.aggregates.delete_session(digest)
