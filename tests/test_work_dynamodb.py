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
