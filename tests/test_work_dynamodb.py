"""What only the DynamoDB work items must do: where they live, what each step costs, no Scan.

Runs on moto and on a real DynamoDB Local (the ``storage`` fixture); the behaviour
every store shares is in test_work_contract.py.
"""

from __future__ import annotations

import time

from conversation.store import WORK_TTL_SECONDS
from tests.faults import CallRecorder

USER = "+15550004444"


def test_a_work_item_lives_in_a_work_shard_with_a_ttl(storage):
    storage.note_text(USER)
    items = [
        item
        for shard in range(8)
        for item in storage.client.query(
            TableName=storage.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"WORK#{shard}"}},
        )["Items"]
    ]
    (item,) = items
    assert item["sk"]["S"] == USER
    assert int(item["expires_at"]["N"]) > time.time() + WORK_TTL_SECONDS - 60
    assert int(item["version"]["N"]) == 1


def test_each_step_of_a_turn_is_one_request(storage):
    storage.ping()
    storage.get_work(USER)  # the table is looked up once, on first use
    with CallRecorder(storage.client) as recorder:
        storage.note_text(USER)
        version = storage.claim_work(USER, "a", 30)
        storage.renew_work(USER, "a", 30)
        assert storage.finish_work(USER, "a", version)
    assert recorder.operations == ["UpdateItem", "UpdateItem", "UpdateItem", "DeleteItem"]


def test_due_work_queries_each_shard_and_never_scans(storage):
    for index in range(12):
        number = f"+1555020{index:04d}"
        storage.note_text(number)
        storage.claim_work(number, "gone", -1)
    with CallRecorder(storage.client) as recorder:
        due = storage.due_work(time.time() + 1, 100)
    assert len(due) == 12
    assert set(recorder.operations) == {"Query"}
    assert len(recorder.operations) == 8


def test_a_reply_queued_by_the_earlier_version_still_moves_on_once(storage):
    """Replies stored before delivery keys had attributes of their own keep them in the JSON
    metadata: a delivery step expecting them there is made once, and moves them out."""
    import json

    import pytest

    from conversation import ConversationManager
    from conversation.dynamodb import keys
    from conversation.errors import StaleMetadata

    manager = ConversationManager(storage)
    text = manager.add_user_message(USER, "hi", message_id="SMlegacy1")
    reply = manager.record_assistant_message(USER, "meow", reply_to=text, metadata={"model": "cat-1"}).message
    key = keys.key(USER, keys.message_sk(reply.conversation_id, reply.position))
    storage.client.update_item(  # as the earlier version wrote it
        TableName=storage.table_name, Key=key,
        UpdateExpression="SET metadata = :m",
        ExpressionAttributeValues={":m": {"S": json.dumps({"model": "cat-1", "delivery": "queued"})}})
    assert storage.get_reply(USER, text).metadata["delivery"] == "queued"
    moved = {"delivery": "sending", "sending_owner": "a"}
    assert not storage.set_delivery(USER, reply, moved, expect={"delivery": "queued", "sending_owner": None})
    stored = storage.get_reply(USER, text).metadata
    assert stored["delivery"] == "sending" and stored["sending_owner"] == "a" and stored["model"] == "cat-1"
    with pytest.raises(StaleMetadata):  # a second mover finds it moved
        storage.set_delivery(USER, reply, {"delivery": "sending", "sending_owner": "b"},
                             expect={"delivery": "queued", "sending_owner": None})
    storage.set_delivery(USER, reply, {"delivery": "sent"},
                         expect={"delivery": "sending", "sending_owner": "a"})
    assert storage.get_reply(USER, text).metadata["delivery"] == "sent"
