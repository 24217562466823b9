"""The running summary of a conversation: claims, saves, clears (the store contract, on every store)."""

from __future__ import annotations

import threading

import pytest

from conversation import ConversationManager

NUMBER = "+15550001111"


@pytest.fixture
def manager(store):
    """Return a ConversationManager over the store under test."""
    return ConversationManager(storage=store)


def _conversation(manager: ConversationManager, texts: int = 6):
    for index in range(texts):
        manager.add_user_message(NUMBER, f"text {index}")
    return manager.get_or_create_conversation(NUMBER, history_limit=texts)


def test_a_new_conversation_has_no_summary(manager):
    conversation = _conversation(manager)
    assert conversation.summary is None
    assert manager.get_summary(NUMBER, conversation.conversation_id) is None


def test_messages_after_a_position_in_order(manager, store):
    conversation = _conversation(manager)
    cid = conversation.conversation_id
    everything = store.messages_after(NUMBER, cid, None, 100)
    assert [m.content for m in everything] == [f"text {i}" for i in range(6)]
    after_two = store.messages_after(NUMBER, cid, everything[1].position, 3)
    assert [m.content for m in after_two] == ["text 2", "text 3", "text 4"]
    assert store.messages_after(NUMBER, cid, everything[-1].position, 10) == []


def test_claim_save_and_read_back(manager, store):
    conversation = _conversation(manager)
    cid = conversation.conversation_id
    folded = store.messages_after(NUMBER, cid, None, 3)
    assert store.claim_summary(NUMBER, cid, "a", 30, upto=None)
    assert not store.claim_summary(NUMBER, cid, "b", 30, upto=None)  # held by a
    assert store.save_summary(NUMBER, cid, "a", "Ann likes tea.", upto=folded[-1].position,
                                count=3, tokens=42)
    summary = manager.get_summary(NUMBER, cid)
    assert (summary.text, summary.count, summary.upto) == ("Ann likes tea.", 3, folded[-1].position)
    assert summary.updated_at
    assert manager.get_conversation(NUMBER, cid).counters["summary_tokens"] == 42
    # The next claim must name what the summary covers now.
    assert not store.claim_summary(NUMBER, cid, "b", 30, upto=None)
    assert store.claim_summary(NUMBER, cid, "b", 30, upto=folded[-1].position)


def test_only_one_of_many_claims_wins(manager, store):
    cid = _conversation(manager).conversation_id
    wins = []
    barrier = threading.Barrier(8)

    def claim(owner):
        barrier.wait()
        if store.claim_summary(NUMBER, cid, owner, 30, upto=None):
            wins.append(owner)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1


def test_a_lapsed_claim_can_be_taken_over_and_the_old_owner_cannot_save(manager, store):
    cid = _conversation(manager).conversation_id
    assert store.claim_summary(NUMBER, cid, "dead", -1, upto=None)  # already lapsed
    assert store.claim_summary(NUMBER, cid, "alive", 30, upto=None)
    position = store.messages_after(NUMBER, cid, None, 1)[0].position
    assert not store.save_summary(NUMBER, cid, "dead", "stale", upto=position, count=1)
    assert manager.get_summary(NUMBER, cid) is None


def test_a_released_claim_keeps_the_previous_summary(manager, store):
    cid = _conversation(manager).conversation_id
    first = store.messages_after(NUMBER, cid, None, 2)
    assert store.claim_summary(NUMBER, cid, "a", 30, upto=None)
    assert store.save_summary(NUMBER, cid, "a", "first", upto=first[-1].position, count=2)
    assert store.claim_summary(NUMBER, cid, "b", 30, upto=first[-1].position)
    store.release_summary_claim(NUMBER, cid, "b")
    assert manager.get_summary(NUMBER, cid).text == "first"
    assert store.claim_summary(NUMBER, cid, "c", 30, upto=first[-1].position)  # free again


def test_clear_forgets_the_text_but_not_what_was_covered(manager, store):
    cid = _conversation(manager).conversation_id
    first = store.messages_after(NUMBER, cid, None, 2)
    assert store.claim_summary(NUMBER, cid, "a", 30, upto=None)
    assert store.save_summary(NUMBER, cid, "a", "secret", upto=first[-1].position, count=2)
    assert store.claim_summary(NUMBER, cid, "b", 30, upto=first[-1].position)  # in flight
    assert manager.clear_summary(NUMBER, cid)
    summary = manager.get_summary(NUMBER, cid)
    assert summary.text is None and summary.count == 2
    # The fold that was in flight when it was cleared cannot write the old memory back.
    assert not store.save_summary(NUMBER, cid, "b", "secret again", upto=first[-1].position, count=2)
    assert not manager.clear_summary(NUMBER, cid)  # nothing left to clear


def test_reset_starts_without_a_summary_and_erase_removes_it(manager, store):
    cid = _conversation(manager).conversation_id
    position = store.messages_after(NUMBER, cid, None, 1)[0].position
    assert store.claim_summary(NUMBER, cid, "a", 30, upto=None)
    assert store.save_summary(NUMBER, cid, "a", "remember me", upto=position, count=1)
    manager.reset_conversation(NUMBER)
    manager.add_user_message(NUMBER, "hello again")
    assert manager.get_or_create_conversation(NUMBER).summary is None
    manager.erase_user(NUMBER)
    assert all("remember me" not in str(item) for item in store.iter_user_items(NUMBER))
    assert not store.claim_summary(NUMBER, cid, "b", 30, upto=position)  # header gone
