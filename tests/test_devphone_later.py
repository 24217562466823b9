"""The dev phone and replies sent later (REPLY_MODE auto/async): read from the Messages API.

The bot's own ``twilio`` client sends to localpeers/fake_twilio.py over HTTP, as in
``make run``; the dev phone's inbox reads the same Messages API for the phone's number.
"""

from __future__ import annotations

import time

import pytest

from app import create_app
from app.devphone.thread import VIA_MESSAGES_API, thread
from app.outbound import SendFailed
from app.services import services
from conversation.models import Message, isoformat, utc_now
from localpeers.fake_twilio import FakeTwilio
from tests.async_helpers import GatedResponder, RecordingSender, end_background_turns, settle
from tests.fake_clock import FakeClock
from tests.twilio_helpers import AUTH_TOKEN

NUMBER = "+15555550142"
ACCOUNT = "AC" + "7" * 32


@pytest.fixture
def twilio():
    with FakeTwilio(ACCOUNT, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def apps(moto_storage, twilio):
    """Build dev-phone apps that send later replies to the fake Messages API; drain them after."""
    built = []

    def make(*, sender=None, responder=None, clock=None, **settings):
        config = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT,
                  "TWILIO_API_BASE_URL": twilio.base_url, "REPLY_MODE": "async",
                  "DEV_PHONE_ENABLED": True, "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0,
                  "OPENAI_API_KEY": "", **settings}
        app = create_app(config, storage=moto_storage, responder=responder, sender=sender, clock=clock)
        built.append(app)
        return app

    yield make
    end_background_turns(built)


def send(client, body, number=NUMBER):
    return client.post("/dev-phone/api/send", json={"number": number, "body": body}).get_json()


def inbox(client, number=NUMBER):
    response = client.post("/dev-phone/api/inbox", json={"number": number})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bots(data):
    return [m for m in data["messages"] if m["role"] == "assistant"]


def test_a_reply_sent_later_is_shown_once_when_the_messages_api_has_it(apps, twilio):
    responder = GatedResponder()
    app = apps(responder=responder)
    client = app.test_client()
    data = send(client, "hello later")
    assert [m["role"] for m in data["messages"]] == ["user"]
    assert data["waiting"] is True and "comes later" in data["note"]
    assert data["wait_seconds"] == 120.0
    # The reply is being written: nothing on the phone yet, and the page is told to wait.
    before = inbox(client)
    assert bots(before) == [] and before["waiting"] is True

    responder.gate.set()
    settle(app)
    (message,) = twilio.messages
    after = inbox(client)
    assert [(m["role"], m["text"]) for m in after["messages"]] == [
        ("user", "hello later"), ("assistant", "purr: hello later"),
    ]
    reply = bots(after)[0]
    assert reply["id"] == message["sid"] and reply["via"] == VIA_MESSAGES_API
    assert after["waiting"] is False
    # Read again, it is the same one bubble.
    assert inbox(client)["messages"] == after["messages"]
    # The inbox read the Messages API for this number alone.
    lists = [call for call in twilio.calls if call.method == "GET"]
    assert lists and all(call.params.get("To") == [NUMBER] for call in lists)


def test_a_burst_waits_until_every_text_is_answered(apps, twilio):
    responder = GatedResponder()
    app = apps(responder=responder)
    client = app.test_client()
    send(client, "hey")
    assert responder.started.wait(10)  # the first turn reads "hey" and waits on the model
    for body in ("you there?", "ok so"):
        assert send(client, body)["waiting"] is True
    assert inbox(client)["waiting"] is True
    responder.gate.set()
    settle(app)
    data = inbox(client)
    assert data["waiting"] is False
    assert [m["text"] for m in data["messages"] if m["role"] == "user"] == ["hey", "you there?", "ok so"]
    assert [m["text"] for m in bots(data)] == twilio.sent_to(NUMBER)
    assert len({m["id"] for m in data["messages"]}) == len(data["messages"])


def test_a_reply_not_sent_because_of_stop_is_not_shown(apps, twilio):
    responder = GatedResponder()
    app = apps(responder=responder)
    client = app.test_client()
    send(client, "hello")
    assert responder.started.wait(10)
    stop = send(client, "STOP")
    assert stop["opted_out"] is True and stop["waiting"] is False
    responder.gate.set()
    settle(app)
    assert twilio.messages == []
    data = inbox(client)
    assert bots(data) == [] and data["waiting"] is False


def test_the_page_stops_waiting_after_the_model_timeout(apps):
    clock = FakeClock(now=time.time())
    responder = GatedResponder()
    app = apps(responder=responder, clock=clock, MODEL_TIMEOUT_SECONDS=30)
    client = app.test_client()
    assert send(client, "are you there")["wait_seconds"] == 30.0
    assert inbox(client)["waiting"] is True
    clock.advance(29)
    assert inbox(client)["waiting"] is True
    clock.advance(2)
    assert inbox(client)["waiting"] is False
    responder.gate.set()


def test_sync_mode_never_waits_nor_reads_the_messages_api(apps, twilio):
    app = apps(REPLY_MODE="sync")
    client = app.test_client()
    data = send(client, "hi")
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"] and data["waiting"] is False
    assert inbox(client)["waiting"] is False
    assert twilio.calls == []


class UnreadableSender(RecordingSender):
    def recent_to(self, to: str, since_epoch: float) -> list[tuple[str, str]]:
        raise SendFailed("503 from the test sender")


def test_an_unreadable_messages_api_is_a_503_that_names_it(apps):
    responder = GatedResponder()
    app = apps(sender=UnreadableSender(), responder=responder)
    client = app.test_client()
    send(client, "hi")
    response = client.post("/dev-phone/api/inbox", json={"number": NUMBER})
    assert response.status_code == 503 and "Messages API" in response.get_json()["error"]
    assert client.post("/dev-phone/api/inbox", json={"number": "+15555550199"}).status_code == 200
    responder.gate.set()  # the turn ends now, not when the gate gives up after 30 s
    assert services(app).text_handler.pipeline.pool.drain(10)


@pytest.mark.parametrize("payload", [{}, {"number": ""}, {"number": "555-0142"}, {"number": ["+15555550142"]},
                                     {"numero": NUMBER}, [NUMBER], "+15555550142"])
def test_the_inbox_refuses_bad_input(apps, payload):
    client = apps(responder=GatedResponder()).test_client()
    response = client.post("/dev-phone/api/inbox", json=payload)
    assert response.status_code == 400 and response.get_json()["error"]
    assert client.post("/dev-phone/api/inbox", data="number=%2B15555550142").status_code == 400
    cross = client.post("/dev-phone/api/inbox", json={"number": NUMBER}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 400


# ------------------------------------------------------------------ the merge, without a server


def text(body, sid, at):
    return Message(body, role="user", message_id=sid, timestamp=isoformat_at(at))


def later_reply(body, at, **meta):
    return Message(body, role="assistant", timestamp=isoformat_at(at), metadata=meta)


def isoformat_at(epoch):
    from datetime import UTC, datetime

    return isoformat(datetime.fromtimestamp(epoch, UTC))


NOW = time.time()


def test_a_reply_listed_before_its_sid_is_recorded_keeps_the_sid_as_its_id():
    history = [text("hi", "SM1", NOW - 5), later_reply("purr", NOW - 1, delivery="sending", covers=["SM1"])]
    listed = [("SMout1", "purr")]
    first = thread(history, listed, now=NOW, wait_seconds=120)
    assert [(m["id"], m["text"]) for m in first.messages] == [("SM1", "hi"), ("SMout1", "purr")]
    assert first.waiting is False  # sent: on the phone

    history[1] = later_reply("purr", NOW - 1, delivery="sent", outbound_sid="SMout1", covers=["SM1"])
    second = thread(history, listed, now=NOW, wait_seconds=120)
    assert [(m["id"], m["text"]) for m in second.messages] == [("SM1", "hi"), ("SMout1", "purr")]


def test_only_the_bots_own_replies_are_shown_from_the_messages_api():
    # Whatever else the account sent to the number (another app, an older conversation) stays out.
    history = [text("hi", "SM1", NOW - 5),
               later_reply("purr", NOW - 1, delivery="sent", outbound_sid="SMout1", covers=["SM1"])]
    listed = [("SMother", "your code is 1234"), ("SMout1", "purr"), ("SMother2", "purr")]
    shown = thread(history, listed, now=NOW, wait_seconds=120)
    assert [(m["id"], m["text"]) for m in shown.messages] == [("SM1", "hi"), ("SMout1", "purr")]


def test_a_reply_recorded_sent_shows_even_when_the_messages_api_forgot_it():
    # make run restarted: DynamoDB Local kept the conversation, the local Messages API did not.
    history = [text("hi", "SM1", NOW - 5),
               later_reply("purr", NOW - 1, delivery="sent", outbound_sid="SMout1", covers=["SM1"])]
    shown = thread(history, [], now=NOW, wait_seconds=120)
    assert [m["id"] for m in shown.messages] == ["SM1", "SMout1"]


def test_queued_replies_wait_and_unsent_ones_never_show():
    history = [text("hi", "SM1", NOW - 5), later_reply("purr", NOW - 1, delivery="queued", covers=["SM1"]),
               text("stop it", "SM2", NOW - 4),
               later_reply("never", NOW - 1, delivery="not_sent", covers=["SM2"])]
    shown = thread(history, [], now=NOW, wait_seconds=120)
    assert [m["id"] for m in shown.messages] == ["SM1", "SM2"] and shown.waiting is True
    assert thread(history, [], now=NOW + 121, wait_seconds=120).waiting is False


def test_replies_in_the_webhooks_answer_come_from_the_store_as_before():
    history = [text("hi", "SM1", NOW - 5), later_reply("purr", NOW - 4, delivery="twiml", covers=["SM1"]),
               text("again", "SM2", NOW - 3), Message("meow", role="assistant", reply_to="SM2",
                                                     timestamp=isoformat(utc_now()))]
    shown = thread(history, [], now=NOW, wait_seconds=120)
    assert [m["text"] for m in shown.messages] == ["hi", "purr", "again", "meow"]
    assert shown.waiting is False and all(m["via"] is None for m in shown.messages)
