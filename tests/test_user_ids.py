"""Every sender id the webhook accepts can be read, exported and erased, by the API and the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from urllib.parse import quote

import pytest

from app import create_app
from app.logutil import mask_number
from app.openapi import build_document
from app.services import services
from conversation import InvalidUserId, check_user_id, is_valid_user_id
from conversation.agents_session import DynamoDBSession
from conversation.ids import USER_ID_PATTERN
from tests.twilio_helpers import AUTH_TOKEN, Texter, twiml_bodies

TOKEN = "operator-secret-token"
WHATSAPP = "whatsapp:+15551234567"
MESSENGER = "messenger:4455667788"

VALID = [
    "+15551234567",
    WHATSAPP,
    MESSENGER,
    "agent:chat-1",
    "agent:user@example.com:thread.42",
    "agent:ünïcode-🐈",
    "x" * 256,
]
INVALID = [
    "",
    "x" * 257,
    "+1555 123",
    "a\tb",
    "a\nb",
    "+15551234567\n",
    "a\x00b",
    "a\x7fb",
    "a\x85b",
    "a\u2028b",
    "half\ud83d",
    "U#a#b",
    "a/b",
    "a?b",
    "a%2Bb",
    "a\\b",
    None,
    15551234567,
]


@pytest.mark.parametrize("user_id", VALID)
def test_valid_ids(user_id):
    assert is_valid_user_id(user_id)
    assert check_user_id(user_id) == user_id
    assert re.fullmatch(USER_ID_PATTERN, user_id)


@pytest.mark.parametrize("user_id", INVALID)
def test_invalid_ids_are_refused_everywhere(user_id, moto_storage):
    assert not is_valid_user_id(user_id)
    with pytest.raises(InvalidUserId):
        check_user_id(user_id)
    # The store refuses to key it, so nothing can be written that cannot be erased.
    with pytest.raises((InvalidUserId, TypeError, AttributeError)):
        moto_storage.get_user(user_id)


def test_the_openapi_document_carries_the_same_rule():
    spec = build_document()
    patterns = {
        parameter["schema"]["pattern"]
        for path in spec["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        if isinstance(parameter, dict) and parameter.get("name") == "number"
    }
    assert patterns == {USER_ID_PATTERN}


def test_masking_keeps_the_channel():
    assert mask_number("+15551234567") == "+15*******67"
    assert mask_number(WHATSAPP) == "whatsapp:+15*******67"
    assert mask_number(MESSENGER) == "messenger:445*****88"


@pytest.fixture
def app(moto_storage):
    return create_app({
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "ADMIN_API_TOKEN": TOKEN,
        "OPENAI_API_KEY": "", "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0,
    }, storage=moto_storage)


def _api(app, method, path):
    client = app.test_client()
    return getattr(client, method)("/api/v1" + path, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.mark.parametrize("sender", [WHATSAPP, MESSENGER])
def test_a_non_e164_sender_is_read_exported_and_erased_through_the_api(app, sender, caplog):
    texter = Texter(app.test_client(), number=sender)
    with caplog.at_level(logging.INFO):
        answered = texter.text("hello from another channel")
    assert answered.status_code == 200 and twiml_bodies(answered.data)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert sender not in logged
    assert mask_number(sender) in logged

    path = f"/numbers/{quote(sender, safe='')}"
    listed = _api(app, "get", path + "/conversations")
    assert listed.status_code == 200, listed.get_json()
    (conversation,) = listed.get_json()["items"]
    messages = _api(app, "get", f"{path}/conversations/{conversation['conversation_id']}/messages")
    assert "hello from another channel" in [m["content"] for m in messages.get_json()["items"]]
    exported = _api(app, "get", path + "/export")
    assert exported.status_code == 200 and exported.get_json()["user_id"] == sender

    erased = _api(app, "delete", path)
    assert erased.status_code == 200 and erased.get_json()["erased_items"] >= 3
    assert list(services(app).storage.iter_user_items(sender)) == []


def test_a_non_e164_sender_is_read_exported_and_erased_through_the_cli(app):
    Texter(app.test_client(), number=WHATSAPP).text("hello over whatsapp")
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["conversations", "list", WHATSAPP, "--json"])
    assert listed.exit_code == 0, listed.output
    exported = runner.invoke(args=["conversations", "export", WHATSAPP])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["user_id"] == WHATSAPP
    erased = runner.invoke(args=["conversations", "erase", WHATSAPP, "--yes"])
    assert erased.exit_code == 0, erased.output
    assert list(services(app).storage.iter_user_items(WHATSAPP)) == []


def test_an_agent_session_is_exported_and_erased_by_operators(app):
    storage = services(app).storage
    session = DynamoDBSession("support:42", storage)
    asyncio.run(session.add_items([{"role": "user", "content": "remember me"}]))

    exported = app.test_cli_runner().invoke(args=["conversations", "export", session.user_id])
    assert exported.exit_code == 0, exported.output
    assert "remember me" in exported.stdout
    erased = _api(app, "post", f"/numbers/{quote(session.user_id, safe='')}/erase")
    assert erased.status_code == 200, erased.get_json()
    assert asyncio.run(session.get_items()) == []


@pytest.mark.parametrize("bad", ["a b", "a%25b", "a?b", "half\\ud83d"])
def test_the_api_and_cli_refuse_what_the_webhook_refuses(app, bad):
    response = _api(app, "get", f"/numbers/{quote(bad, safe='')}/export")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_number"
    result = app.test_cli_runner().invoke(args=["conversations", "export", bad])
    assert result.exit_code == 2 and "sender id" in result.output


def test_the_webhook_refuses_a_sender_the_store_cannot_key(app):
    response = Texter(app.test_client(), number="someone with spaces").text("hi")
    assert response.status_code == 400
