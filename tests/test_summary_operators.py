"""Operators read and clear the running summary: API (with its OpenAPI document) and CLI."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from app import create_app
from app.openapi import build_document
from app.services import services

TOKEN = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NUMBER = "+15550008888"


@pytest.fixture
def app(storage):
    return create_app({"TWILIO_AUTH_TOKEN": "t", "ADMIN_API_TOKEN": TOKEN}, storage=storage)


def _summarised(app, text="Zed likes kites."):
    manager = services(app).manager
    storage = services(app).storage
    for index in range(3):
        manager.add_user_message(NUMBER, f"text {index}")
    cid = manager.get_or_create_conversation(NUMBER).conversation_id
    folded = storage.messages_after(NUMBER, cid, None, 2)
    assert storage.claim_summary(NUMBER, cid, "op", 30, upto=None)
    assert storage.save_summary(NUMBER, cid, "op", text, upto=folded[-1].position, count=2)
    return cid


def _url(cid):
    return f"/api/v1/numbers/{quote(NUMBER)}/conversations/{cid}/summary"


def test_api_reads_and_clears_the_summary(app):
    cid = _summarised(app)
    client = app.test_client()
    body = client.get(_url(cid), headers=AUTH).get_json()
    assert body["summary"] == "Zed likes kites." and body["covers_messages"] == 2
    assert body["conversation_id"] == cid and body["updated_at"]
    cleared = client.delete(_url(cid), headers=AUTH)
    assert cleared.status_code == 200 and cleared.get_json()["cleared"] is True
    assert client.get(_url(cid), headers=AUTH).get_json()["summary"] is None
    assert client.delete(_url(cid), headers=AUTH).get_json()["cleared"] is False


def test_api_summary_is_closed_without_the_token_and_404_for_unknown(app):
    cid = _summarised(app)
    client = app.test_client()
    assert client.get(_url(cid)).status_code in (401, 404)
    assert client.delete(_url(cid)).status_code in (401, 404)
    assert client.get(_url(cid)).get_json() is None or "summary" not in client.get(_url(cid)).get_json()
    assert client.get(_url("nosuchconversation"), headers=AUTH).status_code == 404
    # Still there: the unauthorised delete changed nothing.
    assert client.get(_url(cid), headers=AUTH).get_json()["summary"] == "Zed likes kites."


def test_openapi_documents_both_summary_operations():
    path = build_document()["paths"]["/api/v1/numbers/{number}/conversations/{conversation_id}/summary"]
    assert path["get"]["operationId"] == "getSummary"
    assert path["delete"]["operationId"] == "clearSummary"


def test_cli_prints_and_clears_the_summary(app):
    cid = _summarised(app, "Zed likes kites. And tea.")
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["conversations", "summary", NUMBER])
    assert shown.exit_code == 0, shown.output
    assert "Zed likes kites. And tea." in shown.output and "covers 2 messages" in shown.output
    as_json = runner.invoke(args=["conversations", "summary", NUMBER, cid, "--json"])
    assert json.loads(as_json.stdout)["summary"] == "Zed likes kites. And tea."
    cleared = runner.invoke(args=["conversations", "summary", NUMBER, "--clear"])
    assert cleared.exit_code == 0 and "summary cleared" in cleared.output
    again = runner.invoke(args=["conversations", "summary", NUMBER])
    assert "no summary" in again.output
    unknown = runner.invoke(args=["conversations", "summary", NUMBER, "missing-id"])
    assert unknown.exit_code == 1 and "no such conversation" in unknown.output
