"""Operator CLI: flask init-db and flask conversations list|show|stats|export|reset|erase."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from app import create_app
from app.services import services
from conversation import ConversationManager, DynamoDBStorage

ALICE = "+15551234567"
BOB = "+447700900123"


@pytest.fixture
def app(moto_storage):
    return create_app({"TWILIO_AUTH_TOKEN": "t"}, storage=moto_storage)


@pytest.fixture
def manager(app):
    return services(app).manager


@pytest.fixture
def run(app):
    runner = app.test_cli_runner()

    def invoke(*args, **kwargs):
        return runner.invoke(args=list(args), **kwargs)

    return invoke


def chat(manager, number, turns, prefix="text"):
    for index in range(turns):
        asked = manager.add_user_message(number, f"{prefix} {index}")
        manager.record_assistant_message(number, f"reply {index}", reply_to=asked, counters={"tokens": 4})
    return manager.get_or_create_conversation(number).conversation_id


def test_init_db_creates_the_table_once(moto_storage):
    fresh = DynamoDBStorage(f"t-{uuid.uuid4().hex[:8]}", region_name="us-east-1", auto_create=False)
    app = create_app({"TWILIO_AUTH_TOKEN": "t"}, storage=fresh)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["init-db"])
    assert first.exit_code == 0, first.output
    assert f"table {fresh.table_name}: created" in first.output
    assert fresh.client.describe_table(TableName=fresh.table_name)["Table"]["TableStatus"] == "ACTIVE"
    second = runner.invoke(args=["init-db"])
    assert second.exit_code == 0 and "already exists" in second.output


def test_list_a_number_and_recent(run, manager):
    old = chat(manager, ALICE, 2, "old")
    manager.reset_conversation(ALICE)
    manager.rename_conversation(ALICE, old, "spoons")
    new = chat(manager, ALICE, 1, "new")
    bob = chat(manager, BOB, 1)

    result = run("conversations", "list", ALICE)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert new in lines[0] and "active" in lines[0] and "2 msgs" in lines[0]
    assert old in lines[1] and "archived" in lines[1] and "spoons" in lines[1]
    assert bob not in result.stdout

    everyone = run("conversations", "list")
    assert everyone.exit_code == 0
    assert all(cid in everyone.stdout for cid in (old, new, bob))
    assert ALICE in everyone.stdout and BOB in everyone.stdout

    as_json = json.loads(run("conversations", "list", ALICE, "--json").stdout)
    assert [c["conversation_id"] for c in as_json["items"]] == [new, old]


def test_list_pages_with_cursor(run, manager):
    cids = []
    for index in range(3):
        cids.append(chat(manager, ALICE, 1, f"c{index}"))
        manager.reset_conversation(ALICE)
    first = json.loads(run("conversations", "list", ALICE, "--limit", "2", "--json").stdout)
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = json.loads(
        run("conversations", "list", ALICE, "--limit", "2", "--json", "--cursor", first["next_cursor"]).stdout
    )
    seen = [c["conversation_id"] for c in first["items"] + rest["items"]]
    assert seen == cids[::-1]
    bad = run("conversations", "list", ALICE, "--cursor", "garbage")
    assert bad.exit_code == 1 and "cursor" in bad.output


def test_show_messages(run, manager):
    cid = chat(manager, ALICE, 2)
    result = run("conversations", "show", ALICE)
    assert result.exit_code == 0, result.output
    assert cid in result.stdout.splitlines()[0]
    bodies = [line.split(": ", 1)[1] for line in result.stdout.splitlines()[1:]]
    assert bodies == ["text 0", "reply 0", "text 1", "reply 1"]

    newest = run("conversations", "show", ALICE, cid, "--newest-first", "--limit", "1", "--json")
    data = json.loads(newest.stdout)
    assert data["conversation_id"] == cid and [m["content"] for m in data["messages"]] == ["reply 1"]


def test_show_errors(run, manager):
    assert run("conversations", "show", ALICE).exit_code == 1  # no conversations yet
    chat(manager, ALICE, 1)
    missing = run("conversations", "show", ALICE, "nope")
    assert missing.exit_code == 1 and "no such conversation" in missing.output
    bad = run("conversations", "show", "+1 555 1234567")
    assert bad.exit_code == 2 and "E.164" in bad.output


def test_stats(run, manager):
    cid = chat(manager, ALICE, 3)
    data = json.loads(run("conversations", "stats", ALICE, cid).stdout)
    assert data["message_count"] == 6 and data["counters"]["tokens"] == 12


def test_export_to_stdout_and_file(run, manager, tmp_path):
    cid = chat(manager, ALICE, 1)
    chat(manager, BOB, 1, "bob only")
    exported = run("conversations", "export", ALICE)
    # Only JSON on stdout: the operator log line goes to stderr.
    data = json.loads(exported.stdout)
    assert "operator cli export" in exported.stderr
    assert data["user_id"] == ALICE
    assert [c["conversation_id"] for c in data["conversations"]] == [cid]
    assert "bob only" not in json.dumps(data)

    target = tmp_path / "alice.json"
    result = run("conversations", "export", ALICE, "-o", str(target))
    assert result.exit_code == 0
    assert json.loads(target.read_text(encoding="utf-8")) == data


def test_reset(run, manager):
    cid = chat(manager, ALICE, 1)
    assert run("conversations", "reset", ALICE).stdout.strip() == f"archived {cid}"
    assert run("conversations", "reset", ALICE).stdout.strip() == "nothing to reset"
    assert manager.get_conversation(ALICE, cid).is_active is False


def test_erase_asks_first_and_is_safe_to_repeat(run, manager, caplog):
    chat(manager, ALICE, 2)
    chat(manager, BOB, 1)
    declined = run("conversations", "erase", ALICE, input="n\n")
    assert declined.exit_code == 1
    assert manager.get_message_count(ALICE) == 4

    with caplog.at_level(logging.INFO, logger="app.cli"):
        confirmed = run("conversations", "erase", ALICE, input="y\n")
    assert confirmed.exit_code == 0 and "erased" in confirmed.stdout
    assert list(manager.storage.iter_user_items(ALICE)) == []
    assert manager.get_message_count(BOB) == 2
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "app.cli")
    assert "erase" in logged and ALICE not in logged

    again = run("conversations", "erase", ALICE, "--yes")
    assert again.exit_code == 0 and again.stdout.strip() == "erased 0 items"


def test_store_down_is_a_clean_error(unreachable_storage):
    app = create_app({"TWILIO_AUTH_TOKEN": "t"}, storage=unreachable_storage)
    result = app.test_cli_runner().invoke(args=["conversations", "list", ALICE])
    assert result.exit_code == 1
    assert "conversation store failed" in result.output
    assert "Traceback" not in result.output


def test_export_and_list_json_print_only_json_on_stdout_in_a_fresh_process(ddb_local, local_storage):
    """Run the real `flask` command in the default set-up, where start-up logs a warning."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    manager = ConversationManager(local_storage)
    chat(manager, ALICE, 2)
    env = {
        **os.environ,
        "TWILIO_AUTH_TOKEN": "t",
        "AWS_ENDPOINT_URL": ddb_local.endpoint_url,
        "DYNAMODB_TABLE_NAME": local_storage.table_name,
    }
    root = Path(__file__).resolve().parent.parent
    for command in (["export", ALICE], ["list", ALICE, "--json"]):
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "conversations", *command],
            cwd=root, env=env, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "OPENAI_API_KEY is not set" in result.stderr  # the start-up warning went to stderr
        document = json.loads(result.stdout)  # and stdout is nothing but the JSON
        assert ALICE in json.dumps(document)
