"""The ConversationStore contract: one behaviour suite for every store.

Each test runs (through the ``store`` fixture) on the in-memory store, on
DynamoDBStorage over moto and on DynamoDBStorage over a real DynamoDB Local.
The summary part of the contract is in test_summary_store.py. What only the
DynamoDB store must do (request counts, no Scan, TTL, table setup) is in
test_storage_dynamodb.py.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from conversation import (
    ConversationManager,
    ConversationNotFound,
    InvalidCursor,
    Message,
    MessageTooLarge,
)
from conversation.store import ConversationStore

USER = "+15550001111"



@pytest.fixture
def manager(store):
    """Return a ConversationManager over the store under test."""
    return ConversationManager(storage=store)

# Awkward values kept in one place (cachelib style).
AWKWARD_METADATA = {
    "float": 0.1,
    "tiny": 1e-300,
    "big": 1.7976931348623157e308,
    "negative": -2.5,
    "int": 12345678901234567890,
    "nested": {"list": [1, 2.5, {"deep": [None, True, False]}], "empty": {}},
    "empty_list": [],
    "unicode": "ça va? 猫 🐈‍⬛",
    "false": False,
}
AWKWARD_TEXTS = [
    "meow",
    "ça va? 猫 🐈‍⬛ — “quotes”",
    "line one\nline two\ttabbed",
    " leading and trailing spaces ",
    "\u200b zero width",
    "x" * 1600,
]


def _no_decimal(value):
    if isinstance(value, Decimal):
        return False
    if isinstance(value, dict):
        return all(_no_decimal(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_decimal(v) for v in value)
    return True


def test_history_is_chronological_and_counted(manager):
    for i in range(7):
        manager.add_user_message(USER, f"text {i}")
        manager.add_assistant_message(USER, f"reply {i}")
    conversation = manager.get_or_create_conversation(USER, history_limit=4)
    assert [m["content"] for m in conversation.get_formatted_history()] == [
        "text 5",
        "reply 5",
        "text 6",
        "reply 6",
    ]
    assert manager.get_message_count(USER) == 14
    assert conversation.role_counts == {"user": 7, "assistant": 7, "system": 0}
    assert [m.content for m in manager.get_history(USER, 3)] == ["reply 5", "text 6", "reply 6"]


@pytest.mark.parametrize("text", AWKWARD_TEXTS, ids=range(len(AWKWARD_TEXTS)))
def test_content_round_trips(manager, text):
    manager.add_user_message(USER, text)
    (stored,) = manager.get_history(USER)
    assert stored.content == text


def test_message_fields_round_trip_exactly(manager):
    sent = manager.add_user_message(
        USER,
        "",
        message_id="MM" + "a" * 32,
        media_urls=["https://api.twilio.com/media/1", "https://api.twilio.com/media/2"],
        metadata=AWKWARD_METADATA,
    )
    stored = manager.get_message(USER, "MM" + "a" * 32)
    assert stored == sent
    assert stored.metadata == AWKWARD_METADATA
    assert json.dumps(stored.metadata) == json.dumps(AWKWARD_METADATA)
    assert _no_decimal(stored.metadata)
    assert stored.media_urls == ["https://api.twilio.com/media/1", "https://api.twilio.com/media/2"]
    assert stored.role == "user"
    assert stored.timestamp.endswith("Z")
    assert manager.get_or_create_conversation(USER).preview == "[media]"


def test_duplicate_message_id_stores_nothing_new(manager):
    first = manager.record_user_message(USER, "hello", message_id="SM1")
    again = manager.record_user_message(USER, "hello (retried)", message_id="SM1")
    assert first.created and not again.created
    assert again.message.content == "hello"
    assert again.message.position == first.message.position
    assert manager.get_message_count(USER) == 1


def test_reply_is_linked_and_stored_once(manager):
    text = manager.add_user_message(USER, "who are you?", message_id="SM2")
    assert manager.get_reply(USER, text) is None
    reply = manager.record_assistant_message(USER, "a teapot of whiskers", reply_to=text)
    second = manager.record_assistant_message(USER, "a different answer", reply_to="SM2")
    assert reply.created and not second.created
    assert second.message.content == "a teapot of whiskers"
    found = manager.get_reply(USER, manager.get_message(USER, "SM2"))
    assert found.content == "a teapot of whiskers"
    assert found.reply_to == "SM2"
    assert manager.get_message_count(USER) == 2
    with pytest.raises(ConversationNotFound):
        manager.add_assistant_message(USER, "orphan", reply_to="SM-unknown")


def test_reply_follows_its_text_even_when_later_texts_arrived(manager):
    a = manager.add_user_message(USER, "A", message_id="SMa")
    manager.add_user_message(USER, "B", message_id="SMb")
    manager.add_assistant_message(USER, "reply to A", reply_to=a)
    assert [m.content for m in manager.get_history(USER)] == ["A", "reply to A", "B"]


def test_concurrent_appends_lose_nothing(manager):
    """Twenty threads append to one number at once; all land, in a total order."""
    count = 24
    barrier = threading.Barrier(count)

    def send(i):
        barrier.wait()
        return manager.add_user_message(USER, f"burst {i}", message_id=f"SMburst{i}")

    with ThreadPoolExecutor(count) as pool:
        sent = list(pool.map(send, range(count)))
    history = manager.get_history(USER, 100)
    assert sorted(m.content for m in history) == sorted(f"burst {i}" for i in range(count))
    assert len({m.position for m in history}) == count
    conversation = manager.get_or_create_conversation(USER)
    assert conversation.message_count == count
    assert conversation.role_counts["user"] == count
    assert {m.conversation_id for m in sent} == {conversation.conversation_id}
    assert len(manager.list_conversations(USER).items) == 1


def test_concurrent_duplicates_store_one_message(manager):
    count = 12
    barrier = threading.Barrier(count)

    def send(i):
        barrier.wait()
        return manager.record_user_message(USER, f"copy {i}", message_id="SMsame")

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(send, range(count)))
    assert sum(r.created for r in results) == 1
    assert len({r.message.position for r in results}) == 1
    assert manager.get_message_count(USER) == 1


def test_counters_stay_exact_under_concurrency(manager):
    texts = [manager.add_user_message(USER, f"t{i}", message_id=f"SMc{i}") for i in range(10)]

    def answer(text):
        return manager.record_assistant_message(
            USER, "mrrp", reply_to=text, counters={"tokens": 7, "segments": 1}
        )

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(answer, texts + texts))  # every reply attempted twice
    conversation = manager.get_or_create_conversation(USER)
    assert conversation.message_count == 20
    assert conversation.counters == {"tokens": 70, "segments": 10}


def test_reset_archives_and_keeps_history(manager):
    manager.add_user_message(USER, "old one")
    old_id = manager.get_or_create_conversation(USER).conversation_id
    assert manager.reset_conversation(USER) == old_id
    assert manager.reset_conversation(USER) is None
    manager.add_user_message(USER, "new one")
    current = manager.get_or_create_conversation(USER)
    assert current.conversation_id != old_id
    assert [m.content for m in current.messages] == ["new one"]
    listed = manager.list_conversations(USER).items
    assert [c.conversation_id for c in listed] == [current.conversation_id, old_id]
    assert [c.is_active for c in listed] == [True, False]
    archived = manager.list_messages(USER, old_id).items
    assert [m.content for m in archived] == ["old one"]


def test_reset_racing_appends_never_writes_into_an_archived_conversation(manager):
    manager.add_user_message(USER, "first")
    errors = []

    def append(i):
        try:
            manager.add_user_message(USER, f"m{i}")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(append, i) for i in range(12)]
        manager.reset_conversation(USER)
        for future in futures:
            future.result()
    assert errors == []
    total = sum(c.message_count for c in manager.list_conversations(USER).items)
    stored = sum(
        len(manager.list_messages(USER, c.conversation_id, limit=100).items)
        for c in manager.list_conversations(USER).items
    )
    assert total == stored == 13


def test_soft_delete_hides_and_hard_delete_removes(manager):
    manager.add_user_message(USER, "keep me?", message_id="SMdel")
    manager.add_assistant_message(USER, "a reply has no marker", reply_to="SMdel")
    manager.add_user_message(USER, "no id, no marker")
    cid = manager.get_or_create_conversation(USER).conversation_id
    manager.delete_conversation(USER, cid)
    assert manager.list_conversations(USER).items == []
    assert manager.get_conversation(USER, cid).deleted_at is not None
    assert manager.get_history(USER) == []
    deleted = manager.delete_conversation(USER, cid, hard=True)
    assert deleted == 5  # header, three messages, one message-id marker
    with pytest.raises(ConversationNotFound):
        manager.get_conversation(USER, cid)
    assert manager.get_message(USER, "SMdel") is None
    with pytest.raises(ConversationNotFound):
        manager.delete_conversation(USER, cid, hard=True)


def test_erase_user_leaves_nothing_and_can_repeat(manager, store):
    other = "+15559998888"
    for i in range(30):
        manager.add_user_message(USER, f"m{i}", message_id=f"SMe{i}")
    manager.reset_conversation(USER)
    manager.add_user_message(USER, "after reset")
    manager.set_opt_out(USER, True)
    manager.add_user_message(other, "not me")
    erased = manager.erase_user(USER)
    assert erased >= 63
    assert list(store.iter_user_items(USER)) == []
    assert manager.erase_user(USER) == 0
    assert [m.content for m in manager.get_history(other)] == ["not me"]


def test_export_contains_everything(manager):
    manager.add_user_message(USER, "one", message_id="SMx1")
    manager.reset_conversation(USER)
    manager.add_user_message(USER, "two")
    export = manager.export_user(USER)
    assert export["user_id"] == USER
    assert export["user"]["conversation_count"] == 2
    contents = [[m["content"] for m in c["messages"]] for c in export["conversations"]]
    assert contents == [["two"], ["one"]]
    json.dumps(export)  # JSON-ready


def test_message_pages_in_both_directions(manager):
    for i in range(11):
        manager.add_user_message(USER, f"p{i:02d}")
    cid = manager.get_or_create_conversation(USER).conversation_id
    for newest_first in (False, True):
        seen, cursor = [], None
        while True:
            page = manager.list_messages(USER, cid, limit=4, cursor=cursor, newest_first=newest_first)
            seen.extend(m.content for m in page.items)
            cursor = page.cursor
            if cursor is None:
                break
        expected = [f"p{i:02d}" for i in range(11)]
        assert seen == (expected[::-1] if newest_first else expected)


def test_cursors_are_checked(manager):
    manager.add_user_message(USER, "a")
    manager.add_user_message(USER, "b")
    cid = manager.get_or_create_conversation(USER).conversation_id
    page = manager.list_messages(USER, cid, limit=1)
    assert page.cursor
    for bad in ["not base64!", "e30", page.cursor[:-3] + "AAA"]:
        with pytest.raises(InvalidCursor):
            manager.list_messages(USER, cid, limit=1, cursor=bad)
    with pytest.raises(InvalidCursor):  # another user's listing
        manager.storage.list_messages("+15550002222", cid, limit=1, cursor=page.cursor)
    with pytest.raises(InvalidCursor):  # other direction
        manager.list_messages(USER, cid, limit=1, cursor=page.cursor, newest_first=True)


def test_conversation_listings_newest_first(manager):
    for i in range(5):
        manager.add_user_message(USER, f"conv {i}")
        manager.reset_conversation(USER)
    page = manager.list_conversations(USER, limit=2)
    first_ids = [c.conversation_id for c in page.items]
    rest = manager.list_conversations(USER, limit=10, cursor=page.cursor).items
    ids = first_ids + [c.conversation_id for c in rest]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert [c.preview for c in [*page.items, *rest]] == [f"conv {i}" for i in range(4, -1, -1)]


def test_recent_activity_across_users(manager):
    numbers = [f"+1555000{i:04d}" for i in range(6)]
    for number in numbers:
        manager.add_user_message(number, f"hi from {number}")
    manager.add_user_message(numbers[0], "latest")
    page = manager.list_recent_conversations(limit=4)
    assert len(page.items) == 4
    rest = manager.list_recent_conversations(limit=10, cursor=page.cursor).items
    listed = page.items + rest
    assert sorted(c.user_id for c in listed) == sorted(numbers)
    # Ordered by activity minute, newest first, across the page boundary.
    minutes = [c.updated_at[:16] for c in listed]
    assert minutes == sorted(minutes, reverse=True)
    manager.delete_conversation(numbers[1], listed[0].conversation_id if listed[0].user_id == numbers[1]
                                else manager.get_or_create_conversation(numbers[1]).conversation_id)
    after = manager.list_recent_conversations(limit=10).items
    assert numbers[1] not in [c.user_id for c in after] and len(after) == 5
    with pytest.raises(InvalidCursor):
        manager.list_recent_conversations(cursor="bogus")


def test_stats(manager):
    text = manager.add_user_message(USER, "hello", message_id="SMs")
    manager.record_assistant_message(USER, "meow", reply_to=text, counters={"tokens": 42})
    cid = manager.get_or_create_conversation(USER).conversation_id
    stats = manager.conversation_stats(USER, cid)
    assert stats["message_count"] == 2
    assert stats["by_role"] == {"user": 1, "assistant": 1, "system": 0}
    assert stats["counters"] == {"tokens": 42}
    assert stats["first_message_at"] <= stats["last_message_at"]
    assert stats["duration_seconds"] >= 0


def test_oversized_content_is_refused_before_any_write(manager, store):
    with pytest.raises(MessageTooLarge, match="1601 characters"):
        manager.add_user_message(USER, "x" * 1601)
    big = Message(content="y" * 400_000)
    with pytest.raises(MessageTooLarge, match="bytes"):
        store.append(USER, big)
    assert list(store.iter_user_items(USER)) == []


def test_bad_inputs_are_refused_clearly(manager):
    with pytest.raises(ValueError):
        manager.add_user_message("", "hi")
    with pytest.raises(ValueError):
        manager.add_user_message("a#b", "hi")
    with pytest.raises(TypeError):
        manager.add_user_message(USER, None)
    with pytest.raises(ValueError):
        Message(content="x", role="robot")


def test_opt_out_state_is_kept(manager):
    assert not manager.is_opted_out(USER)
    manager.set_opt_out(USER, True)
    assert manager.is_opted_out(USER)
    manager.set_opt_out(USER, False)
    assert not manager.is_opted_out(USER)


def test_lease_is_exclusive_and_expires(store):
    assert store.acquire_lease(USER, "worker-a", 30)
    assert not store.acquire_lease(USER, "worker-b", 30)
    store.release_lease(USER, "worker-b")  # not the owner: no effect
    assert not store.acquire_lease(USER, "worker-b", 30)
    store.release_lease(USER, "worker-a")
    assert store.acquire_lease(USER, "worker-b", 0.2)
    time.sleep(0.3)
    assert store.acquire_lease(USER, "worker-c", 30)


def test_counters_are_atomic(store):
    def bump(_):
        return store.increment_counter(USER, "minute", expires_in=120)

    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(bump, range(40)))
    assert sorted(values) == list(range(1, 41))
    assert store.get_counter(USER, "minute") == 40
    assert store.get_counter("*", "never") == 0


def test_reservations_stop_at_the_limit_even_when_concurrent(store):
    def reserve(_):
        return store.reserve_counter("*", "tokens", 7, below=30, expires_in=120)

    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(reserve, range(20)))
    # Reservations pass while the counter is below 30: 0, 7, 14, 21, 28 -> five of them.
    assert sorted(v for v in values if v is not None) == [7, 14, 21, 28, 35]
    assert store.get_counter("*", "tokens") == 35
    assert store.increment_counter("*", "tokens", -10, expires_in=120) == 25  # give back the unused part
    assert store.reserve_counter("*", "tokens", 7, below=30, expires_in=120) == 32
    assert store.reserve_counter("*", "tokens", 1, below=30, expires_in=120) is None


def test_every_store_keeps_the_protocol(store):
    assert isinstance(store, ConversationStore)


def test_positions_order_a_conversation_and_a_reply_follows_its_text(manager):
    a = manager.add_user_message(USER, "A", message_id="SMpa")
    b = manager.add_user_message(USER, "B", message_id="SMpb")
    reply = manager.add_assistant_message(USER, "reply to A", reply_to=a)
    assert a.precedes(reply) and reply.precedes(b) and a.precedes(b)
    assert not b.precedes(a) and not a.precedes(a)
    manager.reset_conversation(USER)
    other = manager.add_user_message(USER, "elsewhere")
    assert not a.precedes(other) and not other.precedes(a)


def test_user_record_names_the_active_conversation(manager, store):
    assert store.get_user(USER) is None
    manager.add_user_message(USER, "hi")
    user = store.get_user(USER)
    active = manager.get_or_create_conversation(USER).conversation_id
    assert user.active_conversation_id == active and user.conversation_count == 1
    assert not user.opted_out
    manager.reset_conversation(USER)
    assert store.get_user(USER).active_conversation_id is None


# The manager remembers a number's active conversation id (issue 14, point 6): a
# remembered id that another process made stale must never be written to or read as active.


def test_a_remembered_id_made_stale_by_another_reset_is_never_written_to(manager, store):
    manager.add_user_message(USER, "first")
    old = manager.get_or_create_conversation(USER).conversation_id
    assert manager.active_ids.get(USER) == old
    ConversationManager(storage=store).reset_conversation(USER)  # another process
    manager.add_user_message(USER, "after the reset")
    manager.add_assistant_message(USER, "a reply after the reset")
    manager.add_system_message(USER, "a note after the reset")
    current = manager.get_or_create_conversation(USER)
    assert current.conversation_id != old and current.is_active
    assert [m.content for m in current.messages] == [
        "after the reset", "a reply after the reset", "a note after the reset"
    ]
    assert [m.content for m in manager.list_messages(USER, old).items] == ["first"]
    assert manager.get_conversation(USER, old).is_active is False
    assert manager.get_message_count(USER) == 3


def test_a_remembered_id_made_stale_is_not_read_as_the_active_conversation(manager, store):
    manager.add_user_message(USER, "first")
    old = manager.get_or_create_conversation(USER).conversation_id
    ConversationManager(storage=store).reset_conversation(USER)  # another process
    assert manager.get_message_count(USER) == 0
    fresh = manager.get_or_create_conversation(USER)
    assert fresh.conversation_id != old and fresh.messages == []
    ConversationManager(storage=store).delete_conversation(USER, fresh.conversation_id)  # soft
    again = manager.get_or_create_conversation(USER)
    assert again.conversation_id not in (old, fresh.conversation_id)


def test_a_remembered_id_made_stale_by_another_erase_starts_afresh(manager, store):
    manager.add_user_message(USER, "before the erase", message_id="SMer1")
    old = manager.get_or_create_conversation(USER).conversation_id
    ConversationManager(storage=store).erase_user(USER)  # another process
    manager.add_user_message(USER, "after the erase", message_id="SMer2")
    current = manager.get_or_create_conversation(USER)
    assert current.conversation_id != old
    assert [m.content for m in current.messages] == ["after the erase"]
    assert store.get_conversation(USER, old) is None
    assert store.get_user(USER).active_conversation_id == current.conversation_id


def test_the_manager_forgets_the_id_it_resets_archives_deletes_or_erases(manager):
    def remembered():
        manager.add_user_message(USER, "hello")
        cid = manager.get_or_create_conversation(USER).conversation_id
        assert manager.active_ids.get(USER) == cid
        return cid

    remembered()
    manager.reset_conversation(USER)
    assert manager.active_ids.get(USER) is None
    manager.archive_conversation(USER, remembered())
    assert manager.active_ids.get(USER) is None
    manager.delete_conversation(USER, remembered())
    assert manager.active_ids.get(USER) is None
    remembered()
    manager.erase_user(USER)
    assert manager.active_ids.get(USER) is None
    assert manager.get_message_count(USER) == 0


# ------------------------------------------------------------- figures and sessions


def test_figure_shards_add_up_and_read_back_only_where_written(store):
    expires = int(time.time()) + 86400
    store.add_figures("2026-01-02", 0, {"texts": 2, "lat_3": 1}, expires_at=expires)
    store.add_figures("2026-01-02", 0, {"texts": 1, "replies": 4}, expires_at=expires)
    store.add_figures("2026-01-02", 3, {"tokens": 7}, expires_at=expires)
    store.add_figures("2026-01-03", 1, {}, expires_at=expires)  # nothing to add: nothing written
    found = store.read_figures([("2026-01-02", 0), ("2026-01-02", 1), ("2026-01-02", 3), ("2026-01-03", 1)])
    assert found == {("2026-01-02", 0): {"texts": 3, "lat_3": 1, "replies": 4},
                     ("2026-01-02", 3): {"tokens": 7}}
    assert store.read_figures([]) == {}


def test_many_figure_shards_are_read_at_once(store):
    expires = int(time.time()) + 86400
    wanted = [(f"2026-02-{day:02d}", shard) for day in range(1, 29) for shard in range(4)]  # 112 keys
    for day, shard in wanted[::5]:
        store.add_figures(day, shard, {"texts": shard + 1}, expires_at=expires)
    found = store.read_figures(wanted)
    assert found == {(day, shard): {"texts": shard + 1} for day, shard in wanted[::5]}


def test_console_sessions_by_digest(store):
    assert store.session_expires_at("d" * 64) is None
    store.put_session("d" * 64, created_at=100, expires_at=200)
    assert store.session_expires_at("d" * 64) == 200
    assert store.session_expires_at("e" * 64) is None
    store.delete_session("d" * 64)
    store.delete_session("d" * 64)  # again: fine
    assert store.session_expires_at("d" * 64) is None


# Guards (issue 14, point 6): the quick path's checks made in the text's own write.


def _guard(owner="turn-1", *caps):
    from conversation.guards import TextGuard

    return TextGuard(not_opted_out=True, lease_owner=owner, lease_seconds=30, caps=tuple(caps))


def test_a_guarded_text_takes_the_lease_and_counts_its_counters(manager, store):
    from conversation.guards import CounterCap

    cap = CounterCap("rate_m_guard", below=2, expires_in=60)
    recorded = manager.record_user_message(USER, "one", message_id="SMg1", guard=_guard("turn-1", cap))
    assert recorded.created
    assert store.get_counter(USER, "rate_m_guard") == 1
    assert not store.acquire_lease(USER, "someone-else", 5)  # turn-1 holds it
    store.release_lease(USER, "turn-1")
    # A repeat of the text returns the first copy and counts nothing, whoever holds the lease.
    assert store.acquire_lease(USER, "someone-else", 5)
    again = manager.record_user_message(USER, "one", message_id="SMg1", guard=_guard("turn-2", cap))
    assert not again.created and again.message.message_id == "SMg1"
    assert store.get_counter(USER, "rate_m_guard") == 1


def test_a_guard_that_does_not_hold_stores_nothing_and_says_what_failed(manager, store):
    from conversation.guards import CounterCap, GuardFailed

    manager.add_user_message(USER, "earlier")
    full = CounterCap("rate_m_full", below=1, expires_in=60)
    store.increment_counter(USER, "rate_m_full", 1, expires_in=60)
    room = CounterCap("rate_d_room", below=5, expires_in=60)
    assert store.acquire_lease(USER, "other-turn", 30)
    with pytest.raises(GuardFailed) as failed:
        manager.record_user_message(USER, "blocked", message_id="SMg2", guard=_guard("mine", full, room))
    assert failed.value.failed == {"lease", "rate_m_full"}
    store.release_lease(USER, "other-turn")
    manager.set_opt_out(USER, True)
    with pytest.raises(GuardFailed) as failed:
        manager.record_user_message(USER, "blocked", message_id="SMg2", guard=_guard("mine", room))
    assert failed.value.failed == {"opted_out"}
    # Nothing was written: no text, no lease, no count.
    assert manager.get_message(USER, "SMg2") is None
    assert [m.content for m in manager.get_history(USER)] == ["earlier"]
    assert store.get_counter(USER, "rate_d_room") == 0
    assert store.acquire_lease(USER, "third", 5)


def test_a_reply_gives_the_lease_back_in_its_own_write_unless_another_holds_it(manager, store):
    text = manager.record_user_message(USER, "hi", message_id="SMr1", guard=_guard("turn-1")).message
    reply = manager.record_assistant_message(USER, "meow", reply_to=text, release_lease="turn-1")
    assert reply.created
    assert store.acquire_lease(USER, "next-turn", 30)  # given back with the reply
    # A second reply to the same text is not stored and leaves the lease alone.
    again = manager.record_assistant_message(USER, "purr", reply_to=text, release_lease="next-turn")
    assert not again.created and again.message.content == "meow"
    assert not store.acquire_lease(USER, "third", 5)
    # Another owner's lease is not given back; the reply is stored all the same.
    other = manager.record_user_message(USER, "again", message_id="SMr2").message
    stored = manager.record_assistant_message(USER, "mrrp", reply_to=other, release_lease="turn-1")
    assert stored.created and manager.get_reply(USER, other).content == "mrrp"
    assert not store.acquire_lease(USER, "third", 5)  # next-turn still holds it
