"""The legacy-layout migration copies everything once, on both backends."""

from __future__ import annotations

import json

from conversation import ConversationManager
from scripts.migrate_legacy import migrate

ALICE = "+15550100001"
BOB = "+15550100002"


def _put(client, table, user_id, messages, *, active=True, created="2024-03-01T10:00:00"):
    item = {
        "user_id": {"S": user_id},
        "created_at": {"S": created},
        "updated_at": {"S": created},
        "messages": {"S": messages if isinstance(messages, str) else json.dumps(messages)},
        "is_active": {"BOOL": active},
    }
    client.put_item(TableName=table, Item=item)


def test_migration_copies_once_and_keeps_order(storage, legacy_table):
    client = storage.client
    table = legacy_table
    alice_messages = [
        {"role": "user", "content": "hello cat", "timestamp": "2024-03-01T10:00:01"},
        {"role": "assistant", "content": "mrrp? 🐈", "timestamp": "2024-03-01T10:00:02"},
        {"role": "user", "content": "same second", "timestamp": "2024-03-01T10:00:02"},
    ]
    _put(client, table, ALICE, alice_messages)
    _put(client, table, BOB, [{"role": "user", "content": "old"}], active=False)
    _put(client, table, "+15550100003", "{not json")

    first = migrate(client, table, storage)
    again = migrate(client, table, storage)

    assert (first.users, first.conversations_created, first.messages_copied) == (2, 2, 4)
    assert len(first.skipped) == 1 and "+15550100003" in first.skipped[0]
    assert (again.conversations_created, again.messages_copied, again.messages_already_there) == (0, 0, 4)
    manager = ConversationManager(storage)
    history = manager.get_history(ALICE)
    assert [(m.role, m.content) for m in history] == [
        ("user", "hello cat"),
        ("assistant", "mrrp? 🐈"),
        ("user", "same second"),
    ]
    assert manager.get_message_count(ALICE) == 3
    # A tie in the legacy timestamps keeps the array's order; the original time is kept.
    assert history[2].metadata == {"legacy_timestamp": "2024-03-01T10:00:02"}
    assert history[1].metadata == {}
    assert manager.get_history(BOB) == []  # inactive legacy conversation is archived
    (bob_conversation,) = manager.list_conversations(BOB).items
    assert not bob_conversation.is_active
    assert bob_conversation.metadata == {"migrated_from": "legacy"}
    # New texts continue Alice's migrated conversation.
    manager.add_user_message(ALICE, "after migration")
    assert manager.get_message_count(ALICE) == 4
