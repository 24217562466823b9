"""Durable, exactly-once replies in auto/async mode (issue 14, point 4): crash recovery by the
sweeper, a reply left ``queued`` or ``sending``, transient send failures, and the limits
(opt-out, erasure, budget, rate) on the asynchronous path. One test sends through the official
twilio client to localpeers/fake_twilio.py.
"""

from __future__ import annotations

import time

import pytest

from app.services import services
from app.webhook import MINUTE_NOTICE
from localpeers.fake_twilio import FakeTwilio
from tests.async_helpers import (
    GatedResponder,
    RecordingSender,
    build_app,
    end_background_turns,
    pool_of,
    settle,
)
from tests.twilio_helpers import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, Texter, twiml_bodies

NUMBER = "+15551234567"


@pytest.fixture
def sender():
    return RecordingSender()


@pytest.fixture
def apps(storage, sender):
    """Apps on moto and on DynamoDB Local (``storage``); their background turns end with the test."""
    built = []

    def make(**overrides):
        app = build_app(storage, sender, **overrides)
        built.append(app)
        return app

    yield make
    end_background_turns(built)


def open_responder() -> GatedResponder:
    responder = GatedResponder()
    responder.gate.set()
    return responder


def left_behind(app, body: str, sid: str):
    """Record a text as a webhook would, then 'die': its claim lapsed and nobody answered."""
    storage = services(app).storage
    text = services(app).manager.record_user_message(
        NUMBER, body, message_id=sid, metadata={"channel": "sms", "to": BOT_NUMBER}).message
    storage.note_text(NUMBER)
    assert storage.claim_work(NUMBER, "vanished-process", -1) == 1  # its owner is gone
    return text


def test_a_text_whose_process_died_is_answered_once_by_a_sweep(apps, sender):
    app = apps(responder=open_responder())
    left_behind(app, "anyone home?", "SM" + "c" * 32)
    pool = pool_of(app)
    assert pool.sweep() == 1
    settle(app)
    assert sender.bodies() == ["purr: anyone home?"]
    assert services(app).storage.get_work(NUMBER) is None
    assert pool.sweep(time.time() + 120) == 0  # nothing left: no second answer
    settle(app)
    assert len(sender.sent) == 1


def test_a_live_claim_is_not_swept(apps, sender):
    app = apps(responder=open_responder())
    left_behind(app, "still thinking", "SM" + "d" * 32)
    services(app).storage.claim_work(NUMBER, "busy-elsewhere", 60)
    assert pool_of(app).sweep() == 0
    assert sender.sent == []


def _reply_left(app, text, state: str, **extra):
    return services(app).manager.record_assistant_message(
        NUMBER, "a reply from before the crash", reply_to=text,
        metadata={"delivery": state, **extra}).message


def test_a_reply_left_sending_that_went_out_is_not_sent_again(apps, sender):
    app = apps(responder=open_responder())
    text = left_behind(app, "hello?", "SM" + "e" * 32)
    earlier = sender.send(to=NUMBER, from_=BOT_NUMBER, body="a reply from before the crash",
                          status_callback=None)  # the dead process sent it, then died
    _reply_left(app, text, "sending", sending_owner="vanished-process", sending_at=time.time() - 1)
    assert pool_of(app).sweep() == 1
    settle(app)
    assert len(sender.sent) == 1
    stored = services(app).manager.get_reply(NUMBER, text)
    assert stored.metadata["delivery"] == "sent" and stored.metadata["outbound_sid"] == earlier.sid
    assert services(app).storage.get_work(NUMBER) is None


@pytest.mark.parametrize("state", ["sending", "queued"])
def test_a_reply_left_unsent_is_sent_once(apps, sender, state):
    responder = open_responder()
    app = apps(responder=responder)
    text = left_behind(app, "hello?", "SM" + "f" * 32)
    _reply_left(app, text, state, sending_owner="vanished-process" if state == "sending" else None,
                sending_at=time.time() - 1)
    assert pool_of(app).sweep() == 1
    settle(app)
    assert sender.bodies() == ["a reply from before the crash"]
    assert responder.calls == []  # the text had its reply: the model is not asked again
    assert services(app).manager.get_reply(NUMBER, text).metadata["delivery"] == "sent"


def test_a_send_that_failed_for_now_is_retried_once_it_is_known_unsent(apps, sender):
    app = apps(responder=open_responder())
    sender.fail_next = 1
    Texter(app.test_client(), number=NUMBER).text("try again")
    settle(app)
    assert sender.bodies() == ["purr: try again"]


def test_stop_between_the_text_and_the_reply_sends_nothing(apps, sender):
    responder = GatedResponder()
    app = apps(responder=responder)
    texter = Texter(app.test_client(), number=NUMBER)
    texter.text("tell me a story", sid="SM" + "1" * 32)
    assert responder.started.wait(10)
    texter.text("STOP", OptOutType="STOP")
    responder.gate.set()
    settle(app)
    assert sender.sent == []
    manager = services(app).manager
    reply = manager.get_reply(NUMBER, manager.get_message(NUMBER, "SM" + "1" * 32))
    assert reply.metadata["delivery"] == "not_sent" and reply.metadata["not_sent"] == "opted_out"


def test_erasing_a_number_mid_turn_sends_nothing_and_removes_its_work(apps, sender):
    responder = GatedResponder()
    app = apps(responder=responder)
    Texter(app.test_client(), number=NUMBER).text("forget me")
    assert responder.started.wait(10)
    assert services(app).storage.get_work(NUMBER) is not None
    services(app).manager.erase_user(NUMBER)
    assert services(app).storage.get_work(NUMBER) is None
    responder.gate.set()
    settle(app)
    assert sender.sent == []
    assert services(app).storage.get_work(NUMBER) is None
    assert services(app).manager.get_history(NUMBER, 10) == []


def test_the_budget_and_the_rate_limit_hold_on_the_async_path(apps, sender):
    # The per-minute window is the wall clock's minute: start clear of its end, so the three
    # texts fall in one window (a new minute would reset the count and the test would not test it).
    second = time.time() % 60
    if second > 40:
        time.sleep(60.5 - second)
    responder = open_responder()
    app = apps(responder=responder, DAILY_MODEL_CALL_BUDGET=1, RATE_LIMIT_PER_MINUTE=2,
               OFFLINE_PERSONA_SEED=5)
    texter = Texter(app.test_client(), number=NUMBER)
    texter.text("one")
    settle(app)
    texter.text("two")
    settle(app)
    assert len(responder.calls) == 1  # the budget's one call
    assert sender.bodies()[0] == "purr: one" and not sender.bodies()[1].startswith("purr")
    assert twiml_bodies(texter.text("three").data) == [MINUTE_NOTICE]  # over the limit: no turn
    settle(app)
    assert len(sender.sent) == 2


def test_a_reply_goes_through_the_official_client_to_the_messages_api(storage):
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, callbacks=False) as twilio:
        app = build_app(storage, None, responder=open_responder(), TWILIO_ACCOUNT_SID=ACCOUNT_SID,
                        TWILIO_API_BASE_URL=twilio.base_url, PUBLIC_BASE_URL="https://cat.example.com")
        try:
            assert services(app).sender is not None
            texter = Texter(app.test_client(), number=NUMBER, base_url="https://cat.example.com")
            assert twiml_bodies(texter.text("over the wire", sid="SM" + "2" * 32).data) == []
            settle(app)
            assert twilio.sent_to(NUMBER) == ["purr: over the wire"]
            (message,) = twilio.messages
            manager = services(app).manager
            reply = manager.get_reply(NUMBER, manager.get_message(NUMBER, "SM" + "2" * 32))
            assert reply.metadata["outbound_sid"] == message["sid"]
            assert reply.metadata["delivery"] == "sent"
        finally:
            pool_of(app).drain(30)
            pool_of(app).close()


def test_a_turn_that_keeps_failing_is_left_for_recovery_then_given_up(apps, sender, monkeypatch):
    import app.background_turn as background_turn
    from conversation import StorageError

    app = apps(responder=open_responder())
    manager = services(app).text_handler.manager

    def broken(*args, **kwargs):
        raise StorageError("the conversation cannot be read")

    monkeypatch.setattr(manager, "get_history", broken)
    Texter(app.test_client(), number=NUMBER).text("are you there")
    settle(app)
    work = services(app).storage.get_work(NUMBER)
    assert work is not None and work.owner is None  # released: a sweep tries again
    monkeypatch.setattr(background_turn, "GIVE_UP_SECONDS", -1.0)  # as if it failed for too long
    assert pool_of(app).sweep(time.time() + 60) == 1
    settle(app)
    assert services(app).storage.get_work(NUMBER) is None  # dropped, not retried forever
    assert sender.sent == []


def test_stop_while_auto_waits_answers_the_webhook_empty_and_sends_nothing(apps, sender):
    """The auto hand-off: the webhook waiting for the reply carries nothing once the number
    opted out; the reply is kept ``not_sent``."""
    import threading

    responder = GatedResponder()
    app = apps(responder=responder, REPLY_MODE="auto", SYNC_REPLY_SECONDS=10)
    answers = []
    texter = Texter(app.test_client(), number=NUMBER)
    waiting = threading.Thread(target=lambda: answers.append(texter.text("a story?", sid="SM" + "5" * 32)))
    waiting.start()
    assert responder.started.wait(10)
    services(app).storage.set_opt_out(NUMBER, True)  # STOP, recorded by another instance meanwhile
    responder.gate.set()
    waiting.join(20)
    settle(app)
    assert twiml_bodies(answers[0].data) == [] and sender.sent == []
    manager = services(app).manager
    reply = manager.get_reply(NUMBER, manager.get_message(NUMBER, "SM" + "5" * 32))
    assert reply.metadata["delivery"] == "not_sent" and reply.metadata["not_sent"] == "opted_out"
    assert services(app).storage.get_work(NUMBER) is None


def test_the_heartbeat_renews_only_claims_half_spent(apps, sender, monkeypatch):
    responder = GatedResponder()
    app = apps(responder=responder, RECOVERY_SECONDS=60)
    Texter(app.test_client(), number=NUMBER).text("take your time")
    assert responder.started.wait(10)
    pool, storage = pool_of(app), services(app).storage
    assert pool.claim_seconds == 40
    claimed_until = storage.get_work(NUMBER).claimed_until
    assert pool.heartbeat() == 0  # taken just now: no request spent on it
    assert storage.get_work(NUMBER).claimed_until == claimed_until
    later = time.monotonic() + 21  # past half the claim
    monkeypatch.setattr("app.reply_pool.time.monotonic", lambda: later)
    assert pool.heartbeat() == 1
    assert storage.get_work(NUMBER).claimed_until > claimed_until
    assert pool.heartbeat() == 0  # renewed "now": not again until half a claim later
    responder.gate.set()
    settle(app)
    assert sender.bodies() == ["purr: take your time"]
