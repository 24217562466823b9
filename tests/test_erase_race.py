"""Erase leaves nothing behind, even with texts landing while it runs (both backends)."""

from __future__ import annotations

import threading
import time

import pytest

from conversation import ConversationManager
from conversation.dynamodb import codec

NUMBER = "+15550104444"


def _items(storage, user_id=NUMBER):
    return list(storage.listings.partition(user_id, None, None))


def test_the_table_expires_items_even_when_conversations_are_kept(storage):
    # Counters and leases carry expires_at whatever CONVERSATION_TTL_DAYS says;
    # without TTL turned on for the table they would stay forever.
    assert storage.ttl_days is None
    status = storage.client.describe_time_to_live(TableName=storage.table_name)
    description = status["TimeToLiveDescription"]
    assert description["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    assert description["AttributeName"] == "expires_at"


def test_init_db_turns_ttl_on_for_a_table_made_without_it(storage):
    client = storage.client
    client.update_time_to_live(
        TableName=storage.table_name,
        TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires_at"},
    )
    assert storage.create_table() is False  # what `flask init-db` runs; the table exists
    status = client.describe_time_to_live(TableName=storage.table_name)["TimeToLiveDescription"]
    assert status["TimeToLiveStatus"] in ("ENABLED", "ENABLING")


def test_every_counter_carries_a_ttl(moto_storage):
    with pytest.raises(TypeError):
        moto_storage.increment_counter(NUMBER, "rate_m_1")
    with pytest.raises(ValueError):
        moto_storage.increment_counter(NUMBER, "rate_m_1", expires_in=0)
    moto_storage.increment_counter(NUMBER, "rate_m_1", expires_in=60)
    (counter,) = _items(moto_storage)
    assert "expires_at" in counter


def test_erase_repeats_until_a_text_that_landed_midway_is_gone(storage, monkeypatch):
    manager = ConversationManager(storage)
    manager.add_user_message(NUMBER, "before", message_id="SM" + "a" * 32)
    delete = storage.table.delete
    landed = []

    def delete_while_a_text_lands(user_id, keys):
        if not landed:
            # The first batch is gone; a text arrives before the user item goes.
            landed.append(manager.add_user_message(NUMBER, "during", message_id="SM" + "b" * 32))
        return delete(user_id, keys)

    monkeypatch.setattr(storage.table, "delete", delete_while_a_text_lands)
    assert storage.erase_user(NUMBER) > 0
    assert landed
    assert _items(storage) == []


def test_a_text_after_the_header_was_erased_replaces_the_dangling_pointer(storage):
    manager = ConversationManager(storage)
    first = manager.add_user_message(NUMBER, "hello")
    # An erase midway: the header went, the user item still points at it.
    storage.client.delete_item(
        TableName=storage.table_name,
        Key={"pk": {"S": f"U#{NUMBER}"}, "sk": {"S": f"C#{first.conversation_id}"}},
    )
    again = manager.add_user_message(NUMBER, "still there?")
    assert again.conversation_id != first.conversation_id
    active = storage.get_active_conversation(NUMBER)
    assert active is not None and active.conversation_id == again.conversation_id
    assert active.message_count == 1


def test_erase_racing_texts_leaves_no_orphans_and_nothing_without_ttl(storage):
    manager = ConversationManager(storage)
    errors: list[BaseException] = []

    def texter(worker: int) -> None:
        try:
            for i in range(12):
                manager.add_user_message(NUMBER, f"text {worker}.{i}", message_id=f"SM{worker:02d}{i:030x}")
                storage.increment_counter(NUMBER, "rate_m_race", expires_in=180)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def eraser() -> None:
        try:
            # An operator erasing again and again while the number keeps texting.
            for _ in range(8):
                storage.erase_user(NUMBER)
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    texters = [threading.Thread(target=texter, args=(n,)) for n in range(3)]
    erasing = threading.Thread(target=eraser)
    erasing.start()
    for thread in texters:
        thread.start()
    for thread in texters:
        thread.join()
    erasing.join()
    assert errors == []

    left = _items(storage)
    headers = {item["sk"]["S"][2:] for item in left if item["sk"]["S"].startswith("C#")}
    for item in left:
        sk = item["sk"]["S"]
        if sk == "LEASE" or sk.startswith("N#"):
            assert "expires_at" in item, sk
        if sk.startswith("C#"):
            # A whole header, never one rebuilt from a counter update.
            codec.conversation_from_item(item)
    user = storage.get_user(NUMBER)
    if user and user.active_conversation_id:
        assert user.active_conversation_id in headers
    # Once the texts stop, one erase leaves nothing at all.
    storage.erase_user(NUMBER)
    assert _items(storage) == []
