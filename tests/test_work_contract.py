"""The WorkQueue contract (work items of numbers with unanswered texts), over every store.

Runs (through the ``store`` fixture) on the in-memory store, on DynamoDBStorage over
moto and on DynamoDBStorage over a real DynamoDB Local. A claim given a negative
length has lapsed at once, so lapsing needs no waiting.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conversation import ConversationManager
from conversation.errors import StaleMetadata
from conversation.store import WORK_QUIET_SECONDS, WorkQueue

USER = "+15550002222"
OTHER = "+15550003333"


def test_noting_texts_counts_versions_and_a_claim_returns_the_version(store):
    assert isinstance(store, WorkQueue)
    assert store.get_work(USER) is None
    assert store.claim_work(USER, "a", 30) is None  # no work, nothing to claim
    assert store.note_text(USER) == 1
    assert store.note_text(USER) == 2
    assert store.claim_work(USER, "a", 30) == 2
    item = store.get_work(USER)
    assert item.version == 2 and item.owner == "a" and item.claimed_until > time.time() + 20
    assert item.since <= time.time()


def test_a_live_claim_belongs_to_its_owner_only(store):
    store.note_text(USER)
    assert store.claim_work(USER, "a", 30) == 1
    assert store.claim_work(USER, "b", 30) is None
    assert store.claim_work(USER, "a", 30) == 1  # one's own claim is renewed
    assert store.renew_work(USER, "a", 30)
    assert not store.renew_work(USER, "b", 30)
    assert not store.finish_work(USER, "b", 1)
    assert store.get_work(USER).owner == "a"


def test_finishing_deletes_the_work_only_at_the_version_claimed(store):
    store.note_text(USER)
    version = store.claim_work(USER, "a", 30)
    store.note_text(USER)  # a text arrived during the turn
    assert not store.finish_work(USER, "a", version)
    # The claim stays: the same owner runs again at the new version; nobody else can.
    assert store.claim_work(USER, "b", 30) is None
    again = store.claim_work(USER, "a", 30)
    assert again == version + 1
    assert store.finish_work(USER, "a", again)
    assert store.get_work(USER) is None
    assert not store.renew_work(USER, "a", 30)  # the work is gone
    assert store.note_text(USER) == 1  # the next text starts over


def test_a_lapsed_claim_can_be_taken_over(store):
    store.note_text(USER)
    assert store.claim_work(USER, "a", -1) == 1  # lapsed at once: its owner vanished
    assert store.claim_work(USER, "b", 30) == 1
    assert not store.renew_work(USER, "a", 30)
    assert not store.finish_work(USER, "a", 1)
    assert store.finish_work(USER, "b", 1)


def test_released_work_stays_for_someone_else(store):
    store.note_text(USER)
    store.claim_work(USER, "a", 30)
    store.release_work(USER, "b")  # not b's: nothing happens
    assert store.claim_work(USER, "b", 30) is None
    store.release_work(USER, "a")
    item = store.get_work(USER)
    assert item.owner is None and item.version == 1
    assert store.claim_work(USER, "b", 30) == 1


def test_due_work_is_lapsed_or_unclaimed_for_a_while(store):
    now = time.time()
    store.note_text(USER)  # fresh: its webhook is about to claim it
    store.note_text(OTHER)
    assert store.due_work(now + 1, 10) == []
    later = now + WORK_QUIET_SECONDS + 1
    assert sorted(store.due_work(later, 10)) == [USER, OTHER]
    store.claim_work(USER, "a", 60)
    store.claim_work(OTHER, "b", -1)
    assert store.due_work(later, 10) == [OTHER]  # only the lapsed claim
    assert sorted(store.due_work(time.time() + 120, 10)) == [USER, OTHER]  # once the live one lapses


def test_due_work_finds_every_shard_and_keeps_to_the_limit(store):
    numbers = [f"+1555010{index:04d}" for index in range(24)]
    for number in numbers:
        store.note_text(number)
        store.claim_work(number, "gone", -1)
    later = time.time() + 1
    assert sorted(store.due_work(later, 100)) == sorted(numbers)
    assert len(store.due_work(later, 5)) == 5


def test_erasing_a_number_removes_its_work(store):
    ConversationManager(store).add_user_message(USER, "hi")
    store.note_text(USER)
    store.claim_work(USER, "a", 30)
    store.note_text(OTHER)
    assert store.erase_user(USER) >= 2
    assert store.get_work(USER) is None
    assert store.claim_work(USER, "a", 30) is None  # a running turn cannot bring it back
    assert not store.renew_work(USER, "a", 30)
    assert store.get_work(OTHER).version == 1


def test_concurrent_notes_all_count_and_one_claim_wins(store):
    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda _: store.note_text(USER), range(20)))
    assert sorted(versions) == list(range(1, 21))
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda owner: store.claim_work(USER, f"o{owner}", 30), range(8)))
    assert [claim for claim in claims if claim is not None] == [20]


@pytest.mark.parametrize("current", [None, "queued"])
def test_a_metadata_update_can_expect_values(store, current):
    manager = ConversationManager(store)
    text = manager.add_user_message(USER, "hi", message_id="SMexpect1")
    metadata = {"delivery": current} if current else {}
    reply = manager.record_assistant_message(USER, "meow", reply_to=text, metadata=metadata).message
    with pytest.raises(StaleMetadata):
        store.update_message_metadata(USER, reply, {"delivery": "sending"}, expect={"delivery": "sent"})
    moved = store.update_message_metadata(USER, reply, {"delivery": "sending", "by": "a"},
                                          expect={"delivery": current})
    assert moved.metadata["delivery"] == "sending"
    with pytest.raises(StaleMetadata):  # a second mover finds it moved
        store.update_message_metadata(USER, reply, {"delivery": "sending", "by": "b"},
                                      expect={"delivery": current})
    assert store.get_reply(USER, text).metadata["by"] == "a"


def test_only_one_of_concurrent_expecting_updates_lands(store):
    manager = ConversationManager(store)
    text = manager.add_user_message(USER, "hi", message_id="SMexpect2")
    reply = manager.record_assistant_message(USER, "meow", reply_to=text,
                                             metadata={"delivery": "queued"}).message

    def move(owner):
        try:
            store.update_message_metadata(USER, reply, {"delivery": "sending", "by": owner},
                                          expect={"delivery": "queued"})
        except StaleMetadata:
            return None
        return owner

    with ThreadPoolExecutor(6) as pool:
        winners = [owner for owner in pool.map(move, range(6)) if owner is not None]
    assert len(winners) == 1
    assert store.get_reply(USER, text).metadata["by"] == winners[0]


def test_a_live_lease_says_when_it_was_taken(store):
    assert store.lease_taken_at(USER) is None
    before = time.time()
    assert store.acquire_lease(USER, "worker-a", 30)
    taken = store.lease_taken_at(USER)
    assert before - 1 <= taken <= time.time() + 1
    store.release_lease(USER, "worker-a")
    assert store.lease_taken_at(USER) is None
    assert store.acquire_lease(USER, "worker-b", -1)  # lapsed at once
    assert store.lease_taken_at(USER) is None


# ------------------------------------------------------------------ the work in a text's and a reply's write


def _text(store, body, sid, work, **guard):
    from conversation.guards import TextGuard

    return ConversationManager(store).record_user_message(
        USER, body, message_id=sid, guard=TextGuard(work=work, **guard))


def test_a_texts_write_notes_it_and_takes_the_claim_at_version_zero(store):
    from conversation.guards import WORK, GuardFailed, WorkNote

    first = _text(store, "hi", "SMnote1", WorkNote("a", 30))
    assert first.created and store.get_work(USER).version == 0 and store.get_work(USER).owner == "a"
    with pytest.raises(GuardFailed) as busy:  # a turn holds the work: nothing is written
        _text(store, "you there?", "SMnote2", WorkNote("b", 30))
    assert busy.value.failed == {WORK}
    assert store.get_message(USER, "SMnote2") is None and store.get_work(USER).version == 0
    noted = _text(store, "you there?", "SMnote2", WorkNote())  # stored and noted, not claimed
    assert noted.created and store.get_work(USER).version == 1 and store.get_work(USER).owner == "a"
    assert not store.finish_work(USER, "a", 0)  # the running turn must answer it too
    store.claim_work(USER, "a", -1)  # lapsed: the next text's write takes the work over
    _text(store, "hello??", "SMnote3", WorkNote("c", 30))
    assert store.get_work(USER).owner == "c" and store.finish_work(USER, "c", 0)


def test_a_replys_write_renews_or_ends_the_work_under_its_claim(store):
    from conversation.guards import OPTED_OUT, WORK, GuardFailed, ReplyGuard, WorkNote

    manager = ConversationManager(store)
    text = _text(store, "hi", "SMreply1", WorkNote("a", 30)).message
    with pytest.raises(GuardFailed) as lost:  # not the owner: nothing stored
        manager.record_assistant_message(USER, "meow", reply_to=text, reply_guard=ReplyGuard("b", 30))
    assert lost.value.failed == {WORK} and store.get_reply(USER, text) is None
    store.note_text(USER)  # a text came meanwhile: the work cannot end with this reply
    kept = manager.record_assistant_message(USER, "meow", reply_to=text,
                                            reply_guard=ReplyGuard("a", 60, finish_version=0))
    assert kept.created and not kept.finished
    work = store.get_work(USER)
    assert work.owner == "a" and work.claimed_until > time.time() + 50  # renewed instead
    later = _text(store, "and?", "SMreply2", WorkNote()).message
    version = store.claim_work(USER, "a", 30)
    ended = manager.record_assistant_message(USER, "purr", reply_to=later,
                                             reply_guard=ReplyGuard("a", 30, finish_version=version))
    assert ended.created and ended.finished and store.get_work(USER) is None
    store.set_opt_out(USER, True)
    stopped = _text(store, "one more", "SMreply3", None, not_opted_out=False).message
    store.note_text(USER)
    store.claim_work(USER, "a", 30)
    with pytest.raises(GuardFailed) as opted:
        manager.record_assistant_message(USER, "mew", reply_to=stopped, reply_guard=ReplyGuard("a", 30))
    assert opted.value.failed == {OPTED_OUT} and store.get_reply(USER, stopped) is None


def test_a_delivery_step_is_one_conditional_write_that_can_end_the_work(store):
    from conversation.errors import ConversationNotFound

    manager = ConversationManager(store)
    text = manager.add_user_message(USER, "hi", message_id="SMdeliver1")
    reply = manager.record_assistant_message(
        USER, "meow", reply_to=text,
        metadata={"delivery": "sending", "sending_owner": "a", "model": "cat-1"}).message
    store.note_text(USER)
    version = store.claim_work(USER, "a", 30)
    with pytest.raises(StaleMetadata):  # only the sender that holds it records its sending
        store.set_delivery(USER, reply, {"delivery": "sent"},
                           expect={"delivery": "sending", "sending_owner": "b"})
    with pytest.raises(StaleMetadata):  # expected absent
        store.set_delivery(USER, reply, {"delivery": "sent"},
                           expect={"outbound_sid": None, "delivery": "queued"})
    store.note_text(USER)  # newer text: the step lands, the work stays
    assert not store.set_delivery(USER, reply, {"delivery": "sent", "outbound_sid": "SMout1"},
                                  expect={"delivery": "sending", "outbound_sid": None}, finish=("a", version))
    stored = store.get_reply(USER, text)
    assert stored.metadata == {
        "delivery": "sent", "sending_owner": "a", "model": "cat-1", "outbound_sid": "SMout1"}
    assert store.get_work(USER) is not None
    version = store.claim_work(USER, "a", 30)
    assert store.set_delivery(USER, reply, {"recovered": True}, finish=("a", version))
    assert store.get_work(USER) is None
    # A status callback's metadata merge and a delivery step do not undo each other.
    store.update_message_metadata(USER, stored, {"delivery_status": "delivered", "outbound_sid": "SMout1"})
    store.set_delivery(USER, stored, {"delivery_error_code": 30003})
    final = store.get_reply(USER, text).metadata
    assert final["delivery_status"] == "delivered" and final["delivery_error_code"] == 30003
    assert final["delivery"] == "sent" and final["recovered"] is True
    store.erase_user(USER)
    with pytest.raises(ConversationNotFound):
        store.set_delivery(USER, reply, {"delivery": "sent"})
