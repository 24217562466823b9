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
