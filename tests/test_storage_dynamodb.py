"""What only the DynamoDB store must do: table setup, TTL, typed connection errors,
the seed example, and its cost (requests per turn, never a Scan).

Runs on moto and on a real DynamoDB Local (the ``storage`` fixture); the
behaviour every store shares is in test_store_contract.py.
"""

from __future__ import annotations

import time
import uuid

import pytest

from conversation import ConversationManager, DynamoDBStorage, StorageUnavailable
from conversation.errors import TableMissing
from tests.faults import CallRecorder

USER = "+15550001111"


def test_seed_usage_example_runs_verbatim(storage):
    """Run the usage example from the DadaCat design, on a table created on first use."""
    fresh = DynamoDBStorage(
        table_name=f"seed-{uuid.uuid4().hex[:6]}",
        client=storage.client,
    )
    manager = ConversationManager(storage=fresh)

    manager.add_user_message(user_id="+1234567890", content="Hello DadaCat!")
    manager.add_assistant_message(user_id="+1234567890", content="meow, human!")
    conversation = manager.get_or_create_conversation(user_id="+1234567890")
    formatted_history = conversation.get_formatted_history()
    manager.reset_conversation(user_id="+1234567890")

    assert formatted_history == [
        {"role": "user", "content": "Hello DadaCat!"},
        {"role": "assistant", "content": "meow, human!"},
    ]
    assert manager.get_message_count("+1234567890") == 0
    assert manager.get_or_create_conversation("+1234567890").messages == []
    fresh.client.delete_table(TableName=fresh.table_name)


def test_ttl_items_are_ignored_once_expired(storage):
    timed = DynamoDBStorage(storage.table_name, client=storage.client, ttl_days=30)
    manager = ConversationManager(timed)
    manager.add_user_message(USER, "old")
    manager.add_user_message(USER, "new")
    items = storage.client.query(
        TableName=storage.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"U#{USER}"}},
    )["Items"]
    assert all(int(item["expires_at"]["N"]) > time.time() + 29 * 86400 for item in items)
    old = next(item for item in items if item.get("content", {}).get("S") == "old")
    storage.client.update_item(
        TableName=storage.table_name,
        Key={"pk": old["pk"], "sk": old["sk"]},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 10)}},
    )
    assert [m.content for m in manager.get_history(USER)] == ["new"]
    cid = manager.get_or_create_conversation(USER).conversation_id
    assert [m.content for m in manager.list_messages(USER, cid).items] == ["new"]


def test_create_table_is_idempotent(storage):
    assert storage.create_table() is False
    names = storage.client.list_tables()["TableNames"]
    assert names.count(storage.table_name) == 1


def test_missing_table_without_auto_create_is_a_clear_error(storage):
    strict = DynamoDBStorage("does-not-exist", client=storage.client, auto_create=False)
    with pytest.raises(TableMissing, match="does-not-exist"):
        strict.get_user(USER)


def test_unreachable_dynamodb_is_a_typed_error(unreachable_storage):
    down = unreachable_storage
    with pytest.raises(StorageUnavailable):
        ConversationManager(down).add_user_message(USER, "hello?")
    with pytest.raises(StorageUnavailable):
        down.ping()


def test_auto_create_needs_no_admin_rights_when_the_table_exists(storage):
    """A data-plane-only identity (CreateTable denied) still works with auto-create on."""
    from tests.faults import FaultInjector

    denied = (400, "com.amazonaws.dynamodb.v20120810#AccessDeniedException")
    fresh = DynamoDBStorage(storage.table_name, client=storage.client)
    with FaultInjector(storage.client, denied, times=10, operations=("CreateTable",)) as faults:
        ConversationManager(fresh).add_user_message(USER, "least privilege")
    assert faults.injected == 0
    assert [m.content for m in ConversationManager(storage).get_history(USER)] == ["least privilege"]


def _turn(manager, index):
    text = manager.record_user_message(USER, f"text {index}", message_id=f"SMturn{index}").message
    history = manager.get_history(USER, 20)
    manager.record_assistant_message(USER, f"reply {index}", reply_to=text, counters={"tokens": 3})
    return history


def test_a_turn_costs_the_same_requests_at_any_history_length(manager, storage):
    """Constant cost: the same operations at 10 and at 300 messages, and no Scan."""
    shapes = {}
    for index in range(150):
        if index in (5, 149):
            with CallRecorder(storage.client) as recorder:
                history = _turn(manager, index)
            shapes[index] = recorder.operations
            query = next(params for name, params in recorder.calls if name == "Query")
            assert query["Limit"] == 20
            assert query["ScanIndexForward"] is False
            assert query["ConsistentRead"] is True
            assert len(history) == min(20, 2 * index + 1)
        else:
            _turn(manager, index)
    assert shapes[5] == shapes[149] == [
        "TransactWriteItems",  # the text: one transaction to the remembered active conversation
        "GetItem", "Query",    # the context window: pointer, then the newest 20
        "TransactWriteItems",             # the reply
    ]


def test_no_listing_scans(manager, storage):
    for number in ("+15550007001", "+15550007002"):
        manager.add_user_message(number, "hi")
    with CallRecorder(storage.client) as recorder:
        cid = manager.list_conversations("+15550007001").items[0].conversation_id
        manager.list_messages("+15550007001", cid, newest_first=True)
        manager.list_recent_conversations(limit=5)
        manager.conversation_stats("+15550007001", cid)
        manager.export_user("+15550007001")
        manager.erase_user("+15550007002")
    assert recorder.operations
    assert "Scan" not in recorder.operations


def test_seed_example_runs_verbatim_in_a_fresh_process(ddb_local, tmp_path):
    """Run the seed's python block unchanged, with the seed's own environment settings."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    example = (root / "tests" / "data" / "seed_usage_example.py").read_text()
    block = example.split("\n", 2)[2]  # after the provenance and lint comments
    seed = root.parent / "shared" / "seeds" / "001_98c5563487c2c7b1.txt"
    if seed.exists():  # where the design document sits beside the repo, the copy must match it
        assert block == re.search(r"```python\n(.*?)```", seed.read_text(), re.S).group(1)
    script = tmp_path / "seed_example.py"
    script.write_text(block + "\nprint(formatted_history)\nprint(manager.get_message_count('+1234567890'))\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "AWS_ENDPOINT_URL": ddb_local.endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "fakeAccessKeyId",
        "AWS_SECRET_ACCESS_KEY": "fakeSecretAccessKey",
    }
    env.pop("AWS_SESSION_TOKEN", None)
    result = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == ("[{'role': 'user', 'content': 'Hello DadaCat!'}, "
                         "{'role': 'assistant', 'content': 'meow, human!'}]")
    assert lines[-1] == "0"


def test_a_cancelled_transaction_names_the_action_that_failed(storage):
    from conversation.dynamodb import keys
    from conversation.dynamodb.table import ConditionFailed, TransactionCancelled

    table = storage.table

    def put(name):
        item = {**keys.key(USER, keys.counter_sk(name)), "value": {"N": "1"}}
        condition = "attribute_not_exists(sk)"
        return {"Put": {"TableName": table.name, "Item": item, "ConditionExpression": condition}}

    table.transact([("first", put("a"))])
    with pytest.raises(TransactionCancelled) as cancelled:
        table.transact([("fresh", put("b")), ("taken", put("a"))])
    assert cancelled.value.failed("taken") and not cancelled.value.failed("fresh")
    assert not cancelled.value.conflict
    assert storage.get_counter(USER, "b") == 0  # all or nothing
    with pytest.raises(ConditionFailed):
        table.call("put_item", **put("a")["Put"])


def _seed_turn(manager, index):
    manager.add_user_message(user_id=USER, content=f"text {index}")
    conversation = manager.get_or_create_conversation(user_id=USER)
    manager.add_assistant_message(user_id=USER, content=f"reply {index}")
    return conversation


def test_the_seed_apis_turn_makes_four_requests(storage):
    """The seed example's calls look the active conversation up once per turn, not per call."""
    manager = ConversationManager(storage=storage, history_limit=20)
    _seed_turn(manager, 0)  # a fresh manager looks the number up once
    with CallRecorder(storage.client) as recorder:
        conversation = _seed_turn(manager, 1)
    assert [m.content for m in conversation.messages][-3:] == ["text 0", "reply 0", "text 1"]
    assert recorder.operations == [
        "TransactWriteItems",  # the text, to the remembered conversation (if still active)
        "GetItem", "Query",    # its header (is it still active?) and the newest messages
        "TransactWriteItems",  # the reply
    ]


def test_a_fresh_managers_seed_turn_looks_the_number_up_once(storage):
    ConversationManager(storage=storage).add_user_message(USER, "hello")
    manager = ConversationManager(storage=storage)  # another process: remembers nothing
    with CallRecorder(storage.client) as recorder:
        _seed_turn(manager, 1)
    assert recorder.operations == [
        "GetItem", "TransactWriteItems",  # the user record names the active conversation
        "GetItem", "Query",
        "TransactWriteItems",
    ]


def _webhook_app(storage, fake, **overrides):
    from app import create_app
    from tests.twilio_helpers import AUTH_TOKEN

    return create_app({
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_MODEL": "cat-1",
        **overrides,  # the rate limits stay on (their defaults): they are part of a turn
    }, storage=storage)


def _count_webhook_turn(app, storage, texter, body):
    """Return the DynamoDB calls (name, parameters) of one webhook turn, after-work included."""
    from app.services import services
    from tests.twilio_helpers import twiml_bodies

    assert services(app).bounded.drain()  # earlier turns' work after their answers is done
    with CallRecorder(storage.client) as recorder:
        response = texter.text(body)
        assert services(app).bounded.drain()  # and this turn's is counted
    assert len(twiml_bodies(response.data)) == 1
    return recorder.calls


def test_the_quick_paths_steady_turn_makes_three_requests_with_the_rate_limits_on(storage, fake):
    """Opt-out check, turn lease and both rate counters ride in the text's transaction,
    the lease's release in the reply's; the day's figures are written later, not per turn."""
    from app.services import services
    from tests.twilio_helpers import Texter

    app = _webhook_app(storage, fake)
    assert services(app).limits.per_minute and services(app).limits.per_day
    texter = Texter(app.test_client(), number=USER)
    texter.text("warm up")
    calls = _count_webhook_turn(app, storage, texter, "count my requests")
    assert [name for name, _ in calls] == ["TransactWriteItems", "Query", "TransactWriteItems"]
    text_tx, reply_tx = (params["TransactItems"] for name, params in calls if name == "TransactWriteItems")
    kinds = [kind for item in text_tx for kind in item]
    assert kinds.count("ConditionCheck") == 1 and kinds.count("Update") == 3  # header, two counters
    assert kinds.count("Put") == 3  # text, message-id marker, lease
    assert [kind for item in reply_tx for kind in item] == ["Put", "Update", "Delete"]
    # Another process (nothing remembered) reads the number's record first: four.
    cold = _webhook_app(storage, fake)
    calls = _count_webhook_turn(cold, storage, Texter(cold.test_client(), number=USER), "cold")
    assert [name for name, _ in calls] == ["GetItem", "TransactWriteItems", "Query", "TransactWriteItems"]


def test_a_long_conversations_steady_turn_with_its_summary_makes_four_requests(storage, fake):
    from app.services import services
    from tests.twilio_helpers import Texter

    app = _webhook_app(storage, fake, RATE_LIMIT_PER_MINUTE=0, HISTORY_MAX_MESSAGES=4)
    texter = Texter(app.test_client(), number=USER)
    for index in range(6):  # past the window, and past the summary the fifth text queued
        texter.text(f"filling the window {index}")
        # Each text's work after the answer (the summary's update) ends before the next text,
        # so no update is still running, or left due, when the counted turn starts.
        assert services(app).bounded.drain()
        assert services(app).memory is not None and services(app).memory.wait(10)
    calls = _count_webhook_turn(app, storage, texter, "count my requests")
    # The header is read for its running summary once the window is full.
    assert [name for name, _ in calls] == ["TransactWriteItems", "Query", "GetItem", "TransactWriteItems"]


def test_a_lease_or_counter_write_that_meets_a_transaction_is_tried_again(local_storage):
    """Leases and rate counters are written alone and inside a text's transaction; a lone
    write that meets such a transaction in flight (nothing written) is simply tried again."""
    from tests.faults import FaultInjector

    conflict = (400, "com.amazonaws.dynamodb.v20120810#TransactionConflictException")
    writes = ("PutItem", "UpdateItem")
    with FaultInjector(local_storage.client, conflict, times=2, operations=writes) as faults:
        assert local_storage.acquire_lease(USER, "turn-1", 5)
        assert local_storage.increment_counter(USER, "rate_m_1", 1, expires_in=60) == 1
    assert faults.injected == 2
    assert not local_storage.acquire_lease(USER, "turn-2", 5)
