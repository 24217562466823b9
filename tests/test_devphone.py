"""The dev phone's server side: when it exists, what it posts to the webhook, what it returns."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from twilio.request_validator import RequestValidator

from app import create_app
from app.config import ConfigError, load_config
from app.devphone import BOT_NUMBER
from app.persona import OfflineResponder
from app.services import EXTENSION, services
from app.webhook import RESET_CONFIRMATION
from tests.twilio_helpers import AUTH_TOKEN

NUMBER = "+15555550142"


def make_app(store, **settings):
    responder = OfflineResponder(seed=7)
    return create_app({
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "DEV_PHONE_ENABLED": True, **settings,
    }, storage=store, responder=responder, offline_responder=responder)


@pytest.fixture
def app(storage):
    return make_app(storage)


@pytest.fixture
def client(app):
    return app.test_client()


def send(client, body, number=NUMBER, **extra):
    return client.post("/dev-phone/api/send", json={"number": number, "body": body, **extra})


def test_off_by_default_the_dev_phone_does_not_exist(moto_storage):
    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN}, storage=moto_storage)
    client = app.test_client()
    assert client.get("/dev-phone/").status_code == 404
    assert client.post("/dev-phone/api/send", json={"number": NUMBER, "body": "hi"}).status_code == 404
    with client.get("/dev-phone/static/phone.js") as script:
        assert script.status_code == 404


def test_refused_without_signature_checks_against_aws():
    environ = {"DEV_PHONE_ENABLED": "true", "TWILIO_VALIDATE_SIGNATURE": "false"}
    with pytest.raises(ConfigError, match="DEV_PHONE_ENABLED"):
        load_config(environ=environ, dotenv_path=None)
    # Against a local DynamoDB (make run) it is allowed, as it is with checks on against AWS.
    load_config(environ={**environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:8000"}, dotenv_path=None)
    load_config(environ={"DEV_PHONE_ENABLED": "true", "TWILIO_AUTH_TOKEN": "t"}, dotenv_path=None)


def test_page_and_answers_carry_a_strict_policy(client):
    page = client.get("/dev-phone/")
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    assert b"<script>" not in page.data  # no inline script: only <script src=...>
    with client.get("/dev-phone/static/phone.js") as script:
        assert script.headers["Content-Security-Policy"] == policy
    assert send(client, "hi").headers["Content-Security-Policy"] == policy


def test_a_text_goes_through_the_signed_webhook_and_both_sides_come_back(app, client):
    response = send(client, "hello cat")
    assert response.status_code == 200
    data = response.get_json()
    assert data["webhook_status"] == 200
    me, bot = data["messages"]
    assert (me["role"], me["text"], me["encoding"], me["segments"]) == ("user", "hello cat", "GSM-7", 1)
    assert bot["role"] == "assistant" and bot["text"]
    history = services(app).manager.get_history(NUMBER)
    assert [(m.message_id, m.content) for m in history] == [(me["id"], "hello cat"), (bot["id"], bot["text"])]
    assert history[0].metadata["channel"] == "sms"


def test_the_webhook_checks_the_dev_phones_signature(storage):
    # The dev phone signs with the bot's own token; a bot with another token refuses it,
    # so the dev phone goes through the same signature check as Twilio.
    app = make_app(storage)
    # The same app, but its validator checks another token than the one the dev phone signs with.
    app.extensions[EXTENSION] = replace(services(app), validator=RequestValidator("not-the-bots-token"))
    data = send(app.test_client(), "hello").get_json()
    assert data["webhook_status"] == 403 and "messages" not in data
    assert services(app).manager.get_history(NUMBER) == []


def test_signed_for_the_public_url_behind_a_proxy(storage):
    app = make_app(storage, PUBLIC_BASE_URL="https://cat.example.com", TRUST_PROXY_HOPS=1)
    client = app.test_client()
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "cat.example.com"}
    data = client.post("/dev-phone/api/send", json={"number": NUMBER, "body": "hi"}, headers=headers)
    assert data.get_json()["webhook_status"] == 200


def test_a_picture_url_travels_as_mms_fields(app, client):
    data = send(client, "look", media_url="https://example.com/cat.png").get_json()
    assert data["messages"][0]["media"] == ["https://example.com/cat.png"]
    stored = services(app).manager.get_history(NUMBER)[0]
    assert stored.media_urls == ["https://example.com/cat.png"]
    assert stored.metadata["media_content_types"] == ["image/png"]
    assert stored.message_id.startswith("MM")


@pytest.mark.parametrize("media_url", ["javascript:alert(1)", "ftp://example.com/a.png", "x" * 1001, 5])
def test_only_http_picture_urls(client, media_url):
    assert send(client, "look", media_url=media_url).status_code == 400


@pytest.mark.parametrize("number", ["", "12345", "+1555<script>", None, 15555550142])
def test_numbers_must_be_e164(client, number):
    assert send(client, "hi", number=number).status_code == 400
    assert client.post("/dev-phone/api/inbox", json={"number": number}).status_code == 400


def test_a_body_twilio_would_refuse_is_refused(client):
    assert send(client, "x" * 1601).status_code == 400
    assert send(client, "   ").status_code == 400
    assert client.post("/dev-phone/api/send", data="number=+15555550142").status_code == 400


def test_other_sites_cannot_text_through_the_dev_phone(app, client):
    payload = '{"number": "+15555550142", "body": "forged"}'
    # A cross-site HTML form can post text/plain but not application/json.
    assert client.post("/dev-phone/api/send", data=payload, content_type="text/plain").status_code == 400
    forged = client.post("/dev-phone/api/send", json={"number": NUMBER, "body": "forged"},
                         headers={"Origin": "https://evil.example"})
    assert forged.status_code == 400
    assert services(app).manager.get_history(NUMBER) == []
    same = client.post("/dev-phone/api/send", json={"number": NUMBER, "body": "mine"},
                       headers={"Origin": "http://localhost"})
    assert same.status_code == 200


def test_stop_and_start_are_sent_as_twilio_does(app, client):
    data = send(client, "stop").get_json()
    assert data["opted_out"] is True and "STOP" in data["note"]
    assert len(data["messages"]) == 1
    assert data["messages"][0]["unanswered"] == "opt_out"
    silenced = send(client, "anyone there?").get_json()
    assert [m["role"] for m in silenced["messages"]] == ["user"]
    assert silenced["messages"][0]["unanswered"] == "opted_out"
    data = send(client, "START").get_json()
    assert data["opted_out"] is False
    assert [m["role"] for m in send(client, "hello again").get_json()["messages"]] == ["user", "assistant"]


def test_reset_answers_with_the_confirmation(client):
    send(client, "hello")
    data = send(client, "reset").get_json()
    assert data["messages"][1]["text"] == RESET_CONFIRMATION
    assert client.post("/dev-phone/api/inbox", json={"number": NUMBER}).get_json()["messages"] == []


def test_the_inbox_shows_replies_stored_later(app, client):
    send(client, "hello")
    services(app).manager.add_assistant_message(NUMBER, "a later purr, sent by REST")
    inbox = client.post("/dev-phone/api/inbox", json={"number": NUMBER}).get_json()
    assert [m["text"] for m in inbox["messages"]][-1] == "a later purr, sent by REST"
    assert inbox["opted_out"] is False
    assert client.post("/dev-phone/api/inbox", json={"number": "+15555550199"}).get_json() == {
        "messages": [], "opted_out": False, "waiting": False, "wait_seconds": 120.0,
    }


def test_no_number_or_body_in_urls_or_info_logs(client, caplog):
    with caplog.at_level(logging.DEBUG):
        send(client, "my secret body text")
        client.post("/dev-phone/api/inbox", json={"number": NUMBER})
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "my secret body text" not in text and NUMBER not in text
    assert "+15*******42" in text
    page = client.get("/dev-phone/").get_data(as_text=True)
    assert 'method="post"' in page  # without script, forms post: nothing lands in a URL


def test_the_bot_number_texted_is_twilios_test_number():
    assert BOT_NUMBER == "+15005550006"
