"""Reply modes (issue 14, points 1-3): sync as before, async through the sender, auto's hand-off,
slow models and bursts. The webhook is signed like Twilio; storage on moto; the model is either
a responder in the test or the real openai client against localpeers/fake_openai.py.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from app.config import ConfigError, load_config
from app.services import services
from app.webhook import BUSY_LINE
from localpeers.fake_openai import reply
from tests.async_helpers import (
    GatedResponder,
    RecordingSender,
    build_app,
    end_background_turns,
    pool_of,
    settle,
)
from tests.faults import CallRecorder
from tests.twilio_helpers import AUTH_TOKEN, BOT_NUMBER, Texter, twiml_bodies

NUMBER = "+15551234567"


@pytest.fixture
def sender():
    return RecordingSender()


@pytest.fixture
def apps(moto_storage, sender):
    """Build apps on moto with the recording sender; their background turns end with the test."""
    built = []

    def make(**overrides):
        app = build_app(moto_storage, sender, **overrides)
        built.append(app)
        return app

    yield make
    end_background_turns(built)


def test_the_default_mode_is_sync_without_credentials_and_auto_with_them():
    base = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    assert load_config(base, environ={}, dotenv_path=None).reply_mode == "sync"
    rest = {**base, "TWILIO_ACCOUNT_SID": "AC" + "1" * 32}
    assert load_config(rest, environ={}, dotenv_path=None).reply_mode == "auto"
    with pytest.raises(ConfigError, match="REPLY_MODE=async sends replies"):
        load_config({**base, "REPLY_MODE": "async"}, environ={}, dotenv_path=None)
    with pytest.raises(ConfigError, match="REPLY_MODE must be"):
        load_config({**rest, "REPLY_MODE": "later"}, environ={}, dotenv_path=None)
    with pytest.raises(ConfigError, match="SYNC_REPLY_SECONDS"):
        load_config({**rest, "SYNC_REPLY_SECONDS": 14}, environ={}, dotenv_path=None)


def test_sync_mode_answers_in_the_webhook_and_sends_nothing(apps, sender):
    app = apps(REPLY_MODE="sync", responder=GatedResponder(gate=_open()))
    assert services(app).text_handler.pipeline is None
    texter = Texter(app.test_client(), number=NUMBER)
    assert twiml_bodies(texter.text("hi cat").data) == ["purr: hi cat"]
    assert sender.sent == []


def test_async_answers_empty_at_once_and_the_reply_arrives_through_the_sender(apps, sender, moto_storage):
    responder = GatedResponder()
    app = apps(responder=responder)
    texter = Texter(app.test_client(), number=NUMBER)
    response = texter.text("hello", sid="SM" + "a" * 32)
    assert response.status_code == 200 and twiml_bodies(response.data) == []  # before the model answers
    assert sender.sent == []
    responder.gate.set()
    settle(app)
    (sent,) = sender.sent
    assert sent["to"] == NUMBER and sent["from_"] == BOT_NUMBER and sent["body"] == "purr: hello"
    manager = services(app).manager
    text = manager.get_message(NUMBER, "SM" + "a" * 32)
    # The callback URL says where the text is stored, so its status costs one write and no read.
    url = urlsplit(sent["status_callback"])
    assert (url.scheme, url.netloc, url.path) == ("http", "localhost", "/sms/status")
    assert parse_qs(url.query) == {
        "sid": ["SM" + "a" * 32], "c": [text.conversation_id], "p": [text.position]}
    stored = manager.get_reply(NUMBER, text)
    assert stored.content == "purr: hello"
    assert stored.metadata["delivery"] == "sent" and stored.metadata["outbound_sid"] == sent["sid"]
    assert services(app).storage.get_work(NUMBER) is None
    # The status callback for the REST-sent reply is recorded as today.
    with CallRecorder(moto_storage.client) as recorder:
        texter.status("SM" + "a" * 32, "delivered", MessageSid=sent["sid"],
                      callback_url=sent["status_callback"])
    assert recorder.operations == ["UpdateItem"]
    assert manager.get_reply(NUMBER, text).metadata["delivery_status"] == "delivered"
    texter.status("SM" + "a" * 32, "sent", MessageSid=sent["sid"], callback_url=sent["status_callback"])
    assert manager.get_reply(NUMBER, text).metadata["delivery_status"] == "delivered"  # late: kept
    # A retried webhook for the text does not send the reply again in TwiML.
    assert twiml_bodies(texter.text("hello", sid="SM" + "a" * 32).data) == []
    settle(app)
    assert len(sender.sent) == 1


def test_auto_returns_twiml_when_the_reply_is_quick(apps, sender):
    app = apps(REPLY_MODE="auto", responder=GatedResponder(gate=_open()))
    texter = Texter(app.test_client(), number=NUMBER)
    assert twiml_bodies(texter.text("quick", sid="SM" + "b" * 32).data) == ["purr: quick"]
    settle(app)
    assert sender.sent == []  # never both
    manager = services(app).manager
    stored = manager.get_reply(NUMBER, manager.get_message(NUMBER, "SM" + "b" * 32))
    assert stored.metadata["delivery"] == "twiml"
    assert services(app).storage.get_work(NUMBER) is None


def test_auto_keeps_half_the_threads_free_of_waiting_webhooks(apps, sender):
    """With every waiting slot taken, a text is answered empty at once and its reply sent by REST."""
    responder = GatedResponder()
    app = apps(REPLY_MODE="auto", GUNICORN_THREADS=3, SYNC_REPLY_SECONDS=10, responder=responder)
    assert services(app).text_handler.pipeline.waiters == 1
    answers = []
    first = Texter(app.test_client(), number=NUMBER)
    waiting = threading.Thread(target=lambda: answers.append(first.text("wait for me")))
    waiting.start()
    assert responder.started.wait(10)  # the one waiting slot is taken
    other = Texter(app.test_client(), number="+15550009191")
    started = time.monotonic()
    assert twiml_bodies(other.text("and me").data) == []  # not kept waiting
    assert time.monotonic() - started < 5
    responder.gate.set()
    waiting.join(20)
    settle(app)
    assert twiml_bodies(answers[0].data) == ["purr: wait for me"]
    assert sender.bodies() == ["purr: and me"]
    # The slot is free again: the next quick reply goes back in the webhook's answer.
    assert twiml_bodies(other.text("again").data) == ["purr: again"]


def test_auto_answers_empty_when_slow_and_sends_through_rest(apps, sender):
    responder = GatedResponder()
    app = apps(REPLY_MODE="auto", SYNC_REPLY_SECONDS=0.2, responder=responder)
    texter = Texter(app.test_client(), number=NUMBER)
    assert twiml_bodies(texter.text("slow one").data) == []  # the webhook stopped waiting
    responder.gate.set()
    settle(app)
    assert sender.bodies() == ["purr: slow one"]  # sent once, by REST only


@pytest.mark.parametrize("mode", ["async", "auto"])
def test_a_model_slower_than_the_webhook_deadline_still_gets_its_reply(apps, sender, fake, mode):
    fake.push(reply("a slow and thoughtful meow", delay=2.5))
    app = apps(REPLY_MODE=mode, SYNC_REPLY_SECONDS=0.5, REPLY_DEADLINE_SECONDS=1.5,
               OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake.base_url, OPENAI_MODEL="cat-1")
    texter = Texter(app.test_client(), number=NUMBER)
    assert twiml_bodies(texter.text("think hard").data) == []
    settle(app)
    assert sender.bodies() == ["a slow and thoughtful meow"]  # not the offline persona
    assert len(fake.requests) == 1


@pytest.mark.parametrize("mode", ["async", "auto"])
def test_a_burst_is_read_in_full_and_answered_without_busy_lines(apps, sender, fake, mode):
    fake.default = reply("one answer for all of it", delay=1.0)
    app = apps(REPLY_MODE=mode, SYNC_REPLY_SECONDS=0.2, OPENAI_API_KEY="sk-test",
               OPENAI_BASE_URL=fake.base_url, OPENAI_MODEL="cat-1")
    texter = Texter(app.test_client(), number=NUMBER)
    bodies = ["hey", "you there?", "ok so", "the moon", "is it cheese"]
    answers = [twiml_bodies(texter.text(body).data) for body in bodies]
    settle(app)
    assert all(answer == [] for answer in answers)  # every webhook answered empty
    calls = len(fake.requests)
    assert 1 <= calls < 5, calls
    seen = [message["content"] for request in fake.requests for message in request["messages"]]
    assert all(body in seen for body in bodies)  # every text reached the model
    last_request = [m["content"] for m in fake.requests[-1]["messages"] if m["role"] == "user"]
    assert last_request[-1] == "is it cheese"
    assert sender.bodies() == ["one answer for all of it"] * calls  # one reply per turn
    assert BUSY_LINE not in sender.bodies()
    history = services(app).manager.get_history(NUMBER, 50)
    assert [m.role for m in history].count("assistant") == calls
    assert history[-1].role == "assistant" and history[-1].metadata["delivery"] == "sent"


def test_texts_during_a_turn_are_answered_by_the_next_pass_in_one_reply(apps, sender):
    responder = GatedResponder()
    app = apps(responder=responder)
    texter = Texter(app.test_client(), number=NUMBER)
    texter.text("first")
    assert responder.started.wait(10)
    for body in ("second", "third"):  # the turn is running: these webhooks only note their texts
        assert twiml_bodies(texter.text(body).data) == []
    responder.gate.set()
    settle(app)
    assert [text for _, text in responder.calls] == ["first", "third"]
    assert responder.calls[1][0] == ["first", "purr: first", "second"]  # "second" is read too
    assert sender.bodies() == ["purr: first", "purr: third"]


def test_threads_start_with_the_first_text_not_with_the_app(apps):
    app = apps(responder=GatedResponder(gate=_open()))
    assert not _recovery_threads()
    Texter(app.test_client(), number=NUMBER).text("wake up")
    settle(app)
    assert _recovery_threads()


def test_gunicorn_starts_the_recovery_sweep_in_each_worker_after_the_fork(apps, monkeypatch, tmp_path):
    import runpy
    from types import SimpleNamespace

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the file sets it otherwise
    hooks = runpy.run_path("gunicorn.conf.py")
    app = apps(responder=GatedResponder(gate=_open()))
    assert not _recovery_threads()
    hooks["post_worker_init"](SimpleNamespace(wsgi=app))
    assert _recovery_threads()
    hooks["post_worker_init"](SimpleNamespace(wsgi=apps(REPLY_MODE="sync")))  # sync: nothing to start


def _open() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate


def _recovery_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate()
            if thread.name == "dadacat-recovery" and thread.is_alive()]


def test_a_full_pool_leaves_the_text_for_the_sweeper(apps, sender):
    responder = GatedResponder()
    app = apps(responder=responder, REPLY_WORKERS=1)
    Texter(app.test_client(), number=NUMBER).text("one")
    assert responder.started.wait(10)
    other = Texter(app.test_client(), number="+15557654321")
    assert twiml_bodies(other.text("two").data) == []
    work = services(app).storage.get_work("+15557654321")
    assert work is not None and work.owner is None  # released, not queued in memory
    responder.gate.set()
    settle(app)
    assert pool_of(app).sweep(time.time() + 10) == 1
    settle(app)
    assert sorted(sender.bodies()) == ["purr: one", "purr: two"]
