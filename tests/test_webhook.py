"""The SMS webhook through Flask's test client: signed like Twilio, storage on moto."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from app import create_app
from app.limits import Limits
from app.services import services
from app.sms import count_segments
from app.webhook import BUSY_LINE, DAY_NOTICE, MINUTE_NOTICE, RESET_CONFIRMATION
from conversation import ConversationManager, StorageError, StorageUnavailable
from conversation.models import Message
from tests.fake_clock import FakeClock
from tests.twilio_helpers import AUTH_TOKEN, Texter, parse_twiml, sid_for, twiml_bodies

NUMBER = "+15551234567"


@dataclass
class FakeReply:
    """A reply shaped like app.persona.Reply."""

    text: str
    model: str = "fake-model"
    usage: dict = field(default_factory=lambda: {"total_tokens": 7})
    latency_ms: float = 1.0
    fallback: str | None = None
    attempts: int = 1

    def metadata(self) -> dict[str, Any]:
        """Return what the webhook stores with the reply."""
        return {"model": self.model, "usage": dict(self.usage), "fallback": self.fallback}


class ScriptedResponder:
    """A responder following the persona interface that records every call."""

    def __init__(self, prefix: str = "meow", *, text: str | None = None, delay: float = 0.0,
                 raises: Exception | None = None) -> None:
        self.prefix = prefix
        self.text = text
        self.delay = delay
        self.raises = raises
        self.calls: list[tuple[list, str, float | None]] = []
        self.media: list[list[str]] = []
        self.at_once = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def reply(self, history, text, *, deadline=None, media_urls=(), message_id=None):
        """Answer with the prefix and the text, after an optional delay."""
        assert all(m.message_id != message_id for m in history), "the current text is in the history"
        with self._lock:
            self.calls.append((list(history), text, deadline))
            self.media.append(list(media_urls))
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.at_once -= 1
        if self.raises is not None:
            raise self.raises
        said = text or f"[{len(media_urls)} attachments]"
        return FakeReply(self.text or f"{self.prefix}: {said}", model=self.prefix)


def FixedClock() -> FakeClock:
    """A clock pinned inside one minute, so window tests never straddle a boundary."""
    return FakeClock(1_767_225_630.0)


@pytest.fixture
def responder():
    return ScriptedResponder()


@pytest.fixture
def offline():
    return ScriptedResponder("offline")


@pytest.fixture
def make_app(moto_storage, responder, offline):
    """Return a factory building the app on moto with the scripted responders."""

    def build(*, storage=moto_storage, manager=None, limits=None, **overrides):
        config = {
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "RATE_LIMIT_PER_MINUTE": 0,
            "RATE_LIMIT_PER_DAY": 0,
            "OPENAI_API_KEY": "",
            **overrides,
        }
        return create_app(config, storage=storage, manager=manager, limits=limits,
                          responder=responder, offline_responder=offline)

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def texter(app):
    return Texter(app.test_client(), number=NUMBER)


@pytest.fixture
def manager(app):
    return services(app).manager


def only_body(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/xml"
    bodies = twiml_bodies(response.data)
    assert len(bodies) == 1, response.get_data(as_text=True)
    return bodies[0]


def assert_empty(response) -> None:
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert parse_twiml(response.data) == []


# ---------------------------------------------------------------- the story


def test_text_is_answered_and_both_sides_are_stored(texter, responder, manager):
    response = texter.text("hello cat", sid=sid_for("first"))
    assert only_body(response) == "meow: hello cat"
    history = manager.get_history(NUMBER)
    assert [(m.role, m.content) for m in history] == [("user", "hello cat"), ("assistant", "meow: hello cat")]
    text, reply = history
    assert text.message_id == sid_for("first")
    assert reply.reply_to == sid_for("first")
    assert reply.metadata["segments"] == 1 and reply.metadata["encoding"] == "GSM-7"
    assert text.metadata["idempotency_token"]
    conversation = manager.get_or_create_conversation(NUMBER)
    assert conversation.counters == {"tokens": 7, "segments": 1, "model_calls": 1}
    assert len(responder.calls) == 1


def test_history_reaches_the_model_and_the_current_text_exactly_once(texter, responder):
    texter.text("my name is Ada")
    texter.text("what is my name?")
    history, text, deadline = responder.calls[1]
    assert text == "what is my name?"
    assert [(m.role, m.content) for m in history] == [
        ("user", "my name is Ada"), ("assistant", "meow: my name is Ada"),
    ]
    assert deadline is not None


def test_history_window_respects_the_configured_size(make_app, responder):
    texter = Texter(make_app(HISTORY_MAX_MESSAGES=3).test_client(), number=NUMBER)
    for index in range(4):
        texter.text(f"text {index}")
    history, _, _ = responder.calls[-1]
    assert [m.content for m in history] == ["meow: text 1", "text 2", "meow: text 2"]


# ---------------------------------------------------------------- signatures


def test_missing_signature_is_refused_and_touches_nothing(texter, responder, manager):
    response = texter.text("forged", signed=False)
    assert response.status_code == 403
    assert manager.get_history(NUMBER) == []
    assert responder.calls == []


def test_tampered_form_is_refused(texter, manager):
    params = texter.params("honest text")
    signature = texter.sign("http://localhost/sms", params)
    params["Body"] = "evil text"
    assert texter.post(params, signature=signature).status_code == 403
    assert manager.get_history(NUMBER) == []


@pytest.mark.parametrize("url", ["http://localhost/other", "https://evil.example.com/sms", "http://localhost/sms?x=1"])
def test_signature_for_another_url_is_refused(texter, manager, url):
    assert texter.text("replayed", sign_url=url).status_code == 403
    assert manager.get_history(NUMBER) == []


def test_signature_with_another_token_is_refused(app, manager):
    stranger = Texter(app.test_client(), number=NUMBER, token="not-the-token")
    assert stranger.text("hi").status_code == 403


def test_proxy_headers_are_trusted_only_when_configured(make_app):
    public = "https://dadacat.example.com/sms"
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dadacat.example.com"}
    trusting = Texter(make_app(TRUST_PROXY_HOPS=1).test_client(), number=NUMBER)
    response = trusting.text("via proxy", sign_url=public, headers=headers)
    assert only_body(response) == "meow: via proxy"
    action = parse_twiml(response.data)[0].get("action")
    assert action.startswith("https://dadacat.example.com/sms/status?sid=")
    naive = Texter(make_app().test_client(), number=NUMBER)
    assert naive.text("via proxy", sign_url=public, headers=headers).status_code == 403


def test_public_base_url_is_what_signatures_are_checked_against(make_app):
    texter = Texter(make_app(PUBLIC_BASE_URL="https://cat.example.org/").test_client(), number=NUMBER)
    response = texter.text("hi", sign_url="https://cat.example.org/sms")
    assert only_body(response) == "meow: hi"
    assert parse_twiml(response.data)[0].get("action").startswith("https://cat.example.org/sms/status")
    assert texter.text("hi", sign_url="http://localhost/sms").status_code == 403


def test_validation_off_takes_an_explicit_setting_and_warns(make_app, caplog):
    with caplog.at_level(logging.WARNING):
        app = make_app(TWILIO_VALIDATE_SIGNATURE=False, TWILIO_AUTH_TOKEN=None)
    assert any("TWILIO_VALIDATE_SIGNATURE is off" in record.message for record in caplog.records)
    assert only_body(Texter(app.test_client(), number=NUMBER).text("hi", signed=False)) == "meow: hi"


def test_debug_mode_does_not_turn_validation_off(make_app):
    app = make_app()
    app.debug = True
    assert Texter(app.test_client(), number=NUMBER).text("hi", signed=False).status_code == 403


# ------------------------------------------------------------------ commands


@pytest.mark.parametrize("word", ["reset", "RESET", "  Reset  ", "restart!", "Clear.", "clear?!", "reset…"])
def test_reset_variants_archive_the_conversation(texter, responder, manager, word):
    texter.text("remember me")
    response = texter.text(word)
    assert only_body(response) == RESET_CONFIRMATION
    assert len(responder.calls) == 1
    assert manager.get_history(NUMBER) == []
    texter.text("who am I?")
    assert responder.calls[-1][0] == []


def test_reset_retry_answers_the_same_confirmation_without_resetting_again(texter, manager):
    texter.text("reset", sid=sid_for("reset"))
    texter.text("new beginning")
    assert only_body(texter.text("reset", sid=sid_for("reset"))) == RESET_CONFIRMATION
    assert [m.content for m in manager.get_history(NUMBER)][0] == "new beginning"


def test_words_around_reset_are_an_ordinary_text(texter, responder):
    assert only_body(texter.text("please reset me")) == "meow: please reset me"
    assert len(responder.calls) == 1


@pytest.mark.parametrize("keyword", ["STOP", "START", "HELP"])
def test_opt_out_keywords_are_recorded_but_never_sent_to_the_model(texter, responder, manager, keyword):
    assert_empty(texter.text(keyword.lower(), OptOutType=keyword))
    assert responder.calls == []
    [stored] = manager.get_history(NUMBER)
    assert stored.content == keyword.lower() and stored.metadata["opt_out"] == keyword
    assert manager.is_opted_out(NUMBER) is (keyword == "STOP")


def test_opted_out_number_is_not_answered_until_start(texter, responder, manager):
    texter.text("stop", OptOutType="STOP")
    assert_empty(texter.text("are you there?"))
    assert responder.calls == []
    texter.text("start", OptOutType="START")
    assert only_body(texter.text("back again")) == "meow: back again"
    assert [m.content for m in manager.get_history(NUMBER)][-4:] == [
        "are you there?", "start", "back again", "meow: back again",
    ]


def test_opted_out_reset_archives_but_sends_nothing(texter, responder, manager):
    texter.text("hello")
    before = manager.get_or_create_conversation(NUMBER).conversation_id
    texter.text("stop", OptOutType="STOP")
    assert_empty(texter.text("reset"))
    assert manager.get_or_create_conversation(NUMBER).conversation_id != before
    assert len(responder.calls) == 1


# ---------------------------------------------------------------- duplicates


def test_a_form_without_a_sid_is_a_400_whatever_its_idempotency_token(texter, responder, manager):
    params = texter.params("no sid here")
    del params["MessageSid"]
    response = texter.post(params, headers={"I-Twilio-Idempotency-Token": "tok-123"})
    assert response.status_code == 400 and "MessageSid" in response.get_data(as_text=True)
    assert responder.calls == [] and manager.get_history(NUMBER) == []


def test_retried_delivery_gets_the_same_reply_without_a_model_call(texter, responder, manager):
    first = only_body(texter.text("once", sid=sid_for("dup")))
    second = only_body(texter.text("once", sid=sid_for("dup")))
    assert first == second == "meow: once"
    assert len(responder.calls) == 1
    assert [m.content for m in manager.get_history(NUMBER)] == ["once", "meow: once"]


def test_concurrent_retries_call_the_model_once(app, responder, manager):
    responder.delay = 0.3
    params = Texter(number=NUMBER).params("at once", sid=sid_for("storm"))
    results: list = [None] * 5

    def deliver(index: int) -> None:
        texter = Texter(app.test_client(), number=NUMBER)
        results[index] = texter.post(dict(params))

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [only_body(r) for r in results] == ["meow: at once"] * 5
    assert len(responder.calls) == 1
    assert [m.content for m in manager.get_history(NUMBER)] == ["at once", "meow: at once"]


def test_first_attempt_finds_the_reply_a_retry_gave_while_it_waited(app, moto_storage, responder, manager):
    # The retry took the turn first (we play it here); the first attempt waits, then must not
    # call the model again.
    assert moto_storage.acquire_lease(NUMBER, "retry-worker", 30)
    result = {}
    first = threading.Thread(
        target=lambda: result.update(
            r=Texter(app.test_client(), number=NUMBER).text("hi", sid=sid_for("race"))
        )
    )
    first.start()
    for _ in range(200):
        stored = manager.get_message(NUMBER, sid_for("race"))
        if stored is not None:
            break
        time.sleep(0.02)
    manager.record_assistant_message(NUMBER, "answer from the retry", reply_to=stored)
    moto_storage.release_lease(NUMBER, "retry-worker")
    first.join()
    assert only_body(result["r"]) == "answer from the retry"
    assert responder.calls == []


def send_in_threads(app, bodies, *, stagger_until_stored=None):
    """Send texts from one number in threads; optionally start each once the previous is stored."""
    results: dict[str, Any] = {}
    threads = []
    for index, body in enumerate(bodies):
        sid = sid_for(f"conc{index}")

        def send(body=body, sid=sid):
            results[body] = Texter(app.test_client(), number=NUMBER).text(body, sid=sid)

        thread = threading.Thread(target=send)
        thread.start()
        threads.append(thread)
        if stagger_until_stored is not None:
            for _ in range(500):
                if stagger_until_stored.get_message(NUMBER, sid) is not None:
                    break
                time.sleep(0.01)
    for thread in threads:
        thread.join()
    return results


def assert_each_answered_once(results, manager):
    assert {body: only_body(r) for body, r in results.items()} == {b: f"meow: {b}" for b in results}
    history = manager.get_history(NUMBER)
    assert len(history) == 2 * len(results)
    for position in range(0, len(history), 2):
        assert history[position].role == "user"
        assert history[position + 1].reply_to == history[position].message_id
    texts = [m for m in history if m.role == "user"]
    assert sorted(m.content for m in texts) == sorted(results)
    return texts


def test_texts_in_flight_together_are_answered_together_by_the_next_turn(app, responder, manager):
    responder.delay = 0.6  # every text arrives while the first is still being answered
    bodies = [f"text {i}" for i in range(4)]
    results = send_in_threads(app, bodies, stagger_until_stored=manager)
    # The first turn answers text 0; the next reads texts 1-3 and answers them in one reply.
    assert [text for _, text, _ in responder.calls] == ["text 0", "text 3"]
    assert [m.content for m in responder.calls[1][0]] == ["text 0", "meow: text 0", "text 1", "text 2"]
    answers = {body: twiml_bodies(r.data) for body, r in results.items()}
    assert answers["text 0"] == ["meow: text 0"]
    assert sorted(answers[b] for b in bodies[1:]) == [[], [], ["meow: text 3"]]  # one reply, no busy line
    history = manager.get_history(NUMBER)
    assert [m.content for m in history] == [*bodies[:1], "meow: text 0", *bodies[1:], "meow: text 3"]
    assert history[-1].reply_to == history[-2].message_id
    assert responder.most_at_once == 1


def test_simultaneous_texts_from_one_number_take_turns(app, responder, manager):
    responder.delay = 0.05
    results = send_in_threads(app, [f"burst {i}" for i in range(4)])
    assert 1 <= len(responder.calls) <= 4 and responder.most_at_once == 1
    answers = [body for r in results.values() for body in twiml_bodies(r.data)]
    assert len(answers) == len(responder.calls) and BUSY_LINE not in answers
    history = manager.get_history(NUMBER)
    texts = [m for m in history if m.role == "user"]
    assert sorted(m.content for m in texts) == sorted(results)
    assert history[-1].role == "assistant"  # every text is covered by a reply after it
    for reply in (m for m in history if m.role == "assistant"):
        parent = next(m for m in texts if m.message_id == reply.reply_to)
        assert reply.content == f"meow: {parent.content}"  # each reply answers the newest it read
    for reply in (m for m in history if m.role == "assistant"):  # the model saw every text it answered
        (seen, _, _), = [call for call in responder.calls if f"meow: {call[1]}" == reply.content]
        answered = {m.content for m in texts if m.message_id in reply.metadata["covers"]}
        assert answered - {reply.content[len("meow: "):]} <= {m.content for m in seen}


def test_turn_not_free_in_time_gets_a_busy_line_and_no_model_call(make_app, moto_storage, responder, manager):
    app = make_app(REPLY_DEADLINE_SECONDS=0.6)
    assert moto_storage.acquire_lease(NUMBER, "another-worker", 30)
    response = Texter(app.test_client(), number=NUMBER).text("anyone?", sid=sid_for("busy"))
    assert only_body(response) == BUSY_LINE
    assert responder.calls == []
    reply = services(app).manager.get_reply(NUMBER, manager.get_message(NUMBER, sid_for("busy")))
    assert reply.metadata["fallback"] == "turn_timeout"


def test_an_earlier_text_nobody_answered_is_answered_with_the_next(texter, manager, responder):
    earlier = manager.record_user_message(NUMBER, "still unanswered", message_id=sid_for("earlier")).message
    assert only_body(texter.text("next")) == "meow: next"
    (seen, text, _), = responder.calls
    assert [m.content for m in seen] == ["still unanswered"] and text == "next"
    # A retry of the earlier text finds it answered by that reply: nothing more is sent.
    assert twiml_bodies(texter.text("still unanswered", sid=sid_for("earlier")).data) == []
    assert len(responder.calls) == 1 and manager.get_reply(NUMBER, earlier) is None


def test_no_busy_line_when_the_running_turn_read_the_text(make_app, moto_storage, responder, manager):
    stored = Message(content="answered by the other turn", timestamp="2020-01-01T00:00:00.000000Z",
                     message_id=sid_for("read-by-holder"))
    moto_storage.append(NUMBER, stored, idempotent=True)  # stored, then the other turn began
    assert moto_storage.acquire_lease(NUMBER, "another-worker", 30)
    app = make_app(REPLY_DEADLINE_SECONDS=0.6)
    response = Texter(app.test_client(), number=NUMBER).text("answered by the other turn",
                                                            sid=sid_for("read-by-holder"))
    assert twiml_bodies(response.data) == []
    assert responder.calls == [] and manager.get_history(NUMBER, 10)[-1].role == "user"


def test_abandoned_earlier_text_does_not_block_the_next(texter, responder, manager):
    old = Message(content="lost in a crash", timestamp="2020-01-01T00:00:00.000000Z", message_id="SMold")
    manager.storage.append(NUMBER, old, idempotent=True)
    assert only_body(texter.text("next")) == "meow: next"
    assert [m.content for m in responder.calls[0][0]] == ["lost in a crash"]


# ------------------------------------------------------------ media and forms


def test_mms_with_empty_body_is_stored_and_answered(texter, responder, manager):
    media = [("https://api.twilio.com/m/ME1", "image/jpeg"), ("https://api.twilio.com/m/ME2", "image/png")]
    response = texter.text("", media=media)
    assert only_body(response) == "meow: [2 attachments]"
    assert responder.calls[0][1] == "" and responder.media == [[url for url, _ in media]]
    text = manager.get_history(NUMBER)[0]
    assert text.content == ""
    assert text.media_urls == [url for url, _ in media]
    assert text.metadata["media_content_types"] == ["image/jpeg", "image/png"]
    assert text.metadata["num_segments"] == 1


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"From": ""}, "no From"),
        ({"NumMedia": "lots"}, "NumMedia"),
        ({"NumMedia": "99"}, "NumMedia"),
        ({"Body": "x" * 1601}, "1601 characters"),
        ({"OptOutType": "MAYBE"}, "OptOutType"),
        ({"MessageSid": ""}, "MessageSid"),
    ],
)
def test_malformed_forms_get_a_clear_400(texter, manager, caplog, change, reason):
    params = {**texter.params("hi"), **change}
    with caplog.at_level(logging.WARNING, logger="app.webhook"):
        response = texter.post(params, headers={"I-Twilio-Idempotency-Token": ""})
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    assert any("malformed" in record.message for record in caplog.records)
    assert manager.get_history(NUMBER) == []


def test_body_of_exactly_1600_characters_is_accepted(texter, manager):
    assert texter.text("y" * 1600).status_code == 200
    assert len(manager.get_history(NUMBER)[0].content) == 1600


def test_json_post_is_a_400_not_a_500(texter):
    response = texter.client.post(
        "/sms", json={"From": NUMBER}, headers={"X-Twilio-Signature": texter.sign("http://localhost/sms", {})}
    )
    assert response.status_code == 400


def test_unicode_and_emoji_survive_end_to_end(texter, responder, manager):
    body = "Привет, кот 🐱‍👤! 你好 — café"
    response = texter.text(body)
    assert only_body(response) == f"meow: {body}"
    assert responder.calls[0][1] == body
    stored_text, stored_reply = manager.get_history(NUMBER)
    assert stored_text.content == body
    assert stored_reply.metadata["encoding"] == "UCS-2"


# ---------------------------------------------------------- replies fit SMS


def test_long_reply_is_cut_on_a_word_boundary_and_segments_recorded(make_app, responder, manager):
    responder.text = " ".join(["whiskers"] * 200)
    texter = Texter(make_app(REPLY_MAX_CHARS=200).test_client(), number=NUMBER)
    body = only_body(texter.text("talk a lot"))
    assert len(body) <= 200 and body.endswith("whiskers...")
    reply = manager.get_history(NUMBER)[-1]
    assert reply.content == body
    assert reply.metadata["segments"] == count_segments(body).count == 2
    assert reply.metadata["encoding"] == "GSM-7"
    assert manager.get_or_create_conversation(NUMBER).counters["segments"] == 2


def test_emoji_reply_counts_ucs2_segments(texter, responder, manager):
    responder.text = "🐱 " * 40
    texter.text("emoji please")
    reply = manager.get_history(NUMBER)[-1]
    assert reply.metadata["encoding"] == "UCS-2"
    assert reply.metadata["segments"] == count_segments(reply.content).count == 2


# ----------------------------------------------------------- never silent


def test_model_failure_still_answers_in_persona(texter, responder, offline, manager, caplog):
    responder.raises = RuntimeError("model exploded")
    with caplog.at_level(logging.ERROR, logger="app.webhook"):
        body = only_body(texter.text("are you ok?", sid=sid_for("boom")))
    assert body == "offline: are you ok?"
    assert any(sid_for("boom") in record.getMessage() for record in caplog.records)
    assert [m.content for m in manager.get_history(NUMBER)] == ["are you ok?", "offline: are you ok?"]


class BrokenStorage:
    """A store whose every public method raises StorageUnavailable."""

    def __init__(self, real=None, broken=None):
        self.real = real
        self.broken = broken

    def __getattr__(self, name):
        if self.real is not None and (self.broken is None or name not in self.broken):
            return getattr(self.real, name)

        def fail(*args, **kwargs):
            raise StorageUnavailable("DynamoDB is unreachable: injected")

        return fail


def test_store_down_still_answers_and_logs_the_sid(make_app, responder, caplog):
    storage = BrokenStorage()
    app = make_app(storage=storage, manager=ConversationManager(storage))
    with caplog.at_level(logging.ERROR, logger="app.webhook"):
        body = only_body(Texter(app.test_client(), number=NUMBER).text("hello?", sid=sid_for("down")))
    assert body == "offline: hello?"
    assert responder.calls == []
    assert any(sid_for("down") in r.getMessage() and "store failed" in r.getMessage() for r in caplog.records)


class ReplyWriteFails(ConversationManager):
    """A manager whose reply writes fail as if DynamoDB went away mid-turn."""

    def record_assistant_message(self, *args, **kwargs):
        raise StorageUnavailable("DynamoDB is unreachable: injected")


def test_store_failing_after_the_model_keeps_the_model_reply(make_app, moto_storage, responder, caplog):
    app = make_app(manager=ReplyWriteFails(moto_storage))
    with caplog.at_level(logging.ERROR, logger="app.webhook"):
        body = only_body(Texter(app.test_client(), number=NUMBER).text("first", sid=sid_for("part")))
    assert body == "meow: first"
    assert any(sid_for("part") in r.getMessage() for r in caplog.records)
    assert [m.content for m in ConversationManager(moto_storage).get_history(NUMBER)] == ["first"]


class HistoryFails(ConversationManager):
    """A manager whose history reads fail with the given error."""

    error: Exception = StorageError("Query failed: InternalServerError")

    def get_history(self, *args, **kwargs):
        raise self.error


def test_store_error_mid_turn_records_an_offline_reply(make_app, moto_storage, responder, caplog):
    app = make_app(manager=HistoryFails(moto_storage))
    with caplog.at_level(logging.ERROR, logger="app.webhook"):
        body = only_body(Texter(app.test_client(), number=NUMBER).text("hm?", sid=sid_for("mid")))
    assert body == "offline: hm?"
    assert responder.calls == []
    assert any(sid_for("mid") in r.getMessage() for r in caplog.records)
    manager = ConversationManager(moto_storage)
    reply = manager.get_reply(NUMBER, manager.get_message(NUMBER, sid_for("mid")))
    assert reply.content == body and reply.metadata["fallback"] == "store_failed"
    assert moto_storage.acquire_lease(NUMBER, "probe", 1)  # the lease was released


def test_unexpected_bug_still_answers_and_is_logged(make_app, moto_storage, caplog):
    manager = HistoryFails(moto_storage)
    manager.error = RuntimeError("a bug")
    app = make_app(manager=manager)
    with caplog.at_level(logging.ERROR, logger="app.webhook"):
        response = Texter(app.test_client(), number=NUMBER).text("hm?", sid=sid_for("bug"))
    assert only_body(response) == "offline: hm?"
    assert any(sid_for("bug") in r.getMessage() and r.exc_info for r in caplog.records)


# --------------------------------------------------------- limits and lists


def limited_app(make_app, moto_storage, **limits):
    return make_app(limits=Limits(moto_storage, clock=FixedClock(), **limits))


def test_rate_limit_gives_one_notice_per_window_then_silence(make_app, moto_storage, responder, manager):
    texter = Texter(limited_app(make_app, moto_storage, per_minute=2).test_client(), number=NUMBER)
    assert only_body(texter.text("one")) == "meow: one"
    assert only_body(texter.text("two")) == "meow: two"
    assert only_body(texter.text("three")) == MINUTE_NOTICE
    assert_empty(texter.text("four"))
    assert_empty(texter.text("five", sid=sid_for("five")))
    assert_empty(texter.text("five", sid=sid_for("five")))  # a retry of a silenced text stays silent
    assert len(responder.calls) == 2
    contents = [m.content for m in manager.get_history(NUMBER)]
    assert contents == ["one", "meow: one", "two", "meow: two", "three", MINUTE_NOTICE, "four", "five"]
    other = Texter(texter.client, number="+15550009999")
    assert only_body(other.text("hi")) == "meow: hi"


def test_daily_cap(make_app, moto_storage, responder):
    texter = Texter(limited_app(make_app, moto_storage, per_day=1).test_client(), number=NUMBER)
    texter.text("one")
    assert only_body(texter.text("two")) == DAY_NOTICE
    assert_empty(texter.text("three"))
    assert len(responder.calls) == 1


def test_spent_model_budget_switches_to_the_offline_persona(
    make_app, moto_storage, responder, offline, manager
):
    app = limited_app(make_app, moto_storage, call_budget=1)
    texter = Texter(app.test_client(), number=NUMBER)
    assert app.test_client().get("/health").get_json()["model_budget_spent"] is False
    assert only_body(texter.text("one")) == "meow: one"
    assert only_body(texter.text("two")) == "offline: two"
    assert len(responder.calls) == 1 and len(offline.calls) == 1
    assert manager.get_history(NUMBER)[-1].metadata["fallback"] == "budget"
    assert app.test_client().get("/health").get_json()["model_budget_spent"] is True


def test_token_budget(make_app, moto_storage, responder, offline):
    texter = Texter(limited_app(make_app, moto_storage, token_budget=10).test_client(), number=NUMBER)
    texter.text("one")
    texter.text("two")
    assert only_body(texter.text("three")) == "offline: three"
    assert len(responder.calls) == 2


def test_blocked_number_is_ignored_before_anything_is_spent(make_app, responder, moto_storage):
    app = make_app(BLOCKED_NUMBERS="+1 555 123 4567")
    assert_empty(Texter(app.test_client(), number=NUMBER).text("let me in"))
    assert responder.calls == []
    assert ConversationManager(moto_storage).get_history(NUMBER) == []


def test_allow_list_admits_only_its_numbers(make_app, responder):
    app = make_app(ALLOWED_NUMBERS="+15550000001,+15550000002")
    assert_empty(Texter(app.test_client(), number=NUMBER).text("me?"))
    assert only_body(Texter(app.test_client(), number="+15550000002").text("me!")) == "meow: me!"
    assert len(responder.calls) == 1


# ----------------------------------------------------------- status, health


def test_delivery_status_is_recorded_on_the_reply(texter, manager):
    response = texter.text("track me", sid=sid_for("track"))
    action = parse_twiml(response.data)[0].get("action")
    assert action == f"http://localhost/sms/status?sid={sid_for('track')}"
    assert texter.status(sid_for("track"), "sent").status_code == 200
    assert texter.status(sid_for("track"), "failed", ErrorCode="30003").status_code == 200
    assert texter.status(sid_for("track"), "undelivered").status_code == 200
    assert texter.status(sid_for("track"), "sent").status_code == 200  # late, ignored
    reply = manager.get_reply(NUMBER, manager.get_message(NUMBER, sid_for("track")))
    assert reply.metadata["delivery_status"] == "undelivered"
    assert reply.metadata["delivery_error_code"] == "30003"
    assert manager.get_or_create_conversation(NUMBER).counters["delivery_failures"] == 1


def test_unsigned_status_callback_is_refused(texter, manager):
    texter.text("track me", sid=sid_for("track2"))
    response = texter.client.post("/sms/status?sid=SMtrack2", data={"To": NUMBER, "MessageStatus": "failed"})
    assert response.status_code == 403
    reply = manager.get_reply(NUMBER, manager.get_message(NUMBER, sid_for("track2")))
    assert "delivery_status" not in reply.metadata


def test_health_reports_ok_and_unavailable(app, make_app):
    ok = app.test_client().get("/health")
    assert ok.status_code == 200 and ok.get_json()["status"] == "ok"
    storage = BrokenStorage()
    down = make_app(storage=storage, manager=ConversationManager(storage)).test_client().get("/health")
    assert down.status_code == 503 and down.get_json()["status"] == "unavailable"


def test_one_info_line_per_request_without_the_body(texter, caplog):
    with caplog.at_level(logging.INFO, logger="app.webhook"):
        texter.text("a very secret body", sid=sid_for("log"))
    lines = [r.getMessage() for r in caplog.records if r.name == "app.webhook" and r.levelno == logging.INFO]
    assert len(lines) == 1
    assert sid_for("log") in lines[0] and "outcome=replied" in lines[0] and "+15*******67" in lines[0]
    assert "secret" not in lines[0] and NUMBER not in lines[0]


# ------------------------------------------------- with the real persona module


def test_offline_persona_answers_when_no_model_is_configured(moto_storage):
    from app.persona import OfflineResponder

    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "",
                      "OFFLINE_PERSONA_SEED": 7}, storage=moto_storage)
    assert isinstance(services(app).responder, OfflineResponder)
    texter = Texter(app.test_client(), number=NUMBER)
    body = only_body(texter.text("hello 🐟"))
    assert body
    reply = services(app).manager.get_history(NUMBER)[-1]
    assert reply.content == body and reply.metadata["fallback"] == "offline"
    assert services(app).manager.get_or_create_conversation(NUMBER).counters["model_calls"] == 0


def test_history_reaches_a_real_openai_client_over_http(moto_storage):
    from localpeers.fake_openai import FakeOpenAI, reply, status

    with FakeOpenAI() as fake:
        app = create_app({
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": fake.base_url, "OPENAI_MODEL": "cat-1", "REPLY_DEADLINE_SECONDS": 5,
        }, storage=moto_storage)
        texter = Texter(app.test_client(), number=NUMBER)
        fake.push(reply("purr, Ada", prompt_tokens=11, completion_tokens=3))
        assert only_body(texter.text("I am Ada")) == "purr, Ada"
        fake.push(status(500), reply("you are Ada, a moth"))
        assert only_body(texter.text("who am I?")) == "you are Ada, a moth"
        messages = fake.requests[-1]["messages"]
        assert [(m["role"], m["content"]) for m in messages[1:]] == [
            ("user", "I am Ada"), ("assistant", "purr, Ada"), ("user", "who am I?"),
        ]
        conversation = services(app).manager.get_or_create_conversation(NUMBER)
        assert conversation.counters["model_calls"] == 3
        assert conversation.counters["tokens"] >= 14


def outbound(responses) -> list[str]:
    """Return every message the texter was sent across the responses."""
    return [body for response in responses for body in twiml_bodies(response.data)]


def test_every_outbound_message_counts_against_the_rate_limit(make_app, moto_storage, responder):
    """20 texts at once with a limit of 6: busy lines count too, so at most 6 messages and one notice."""
    app = make_app(REPLY_DEADLINE_SECONDS=1.0, limits=Limits(moto_storage, clock=FixedClock(), per_minute=6))
    responder.delay = 0.2  # most texts cannot get the turn in time and would get a busy line
    results = send_in_threads(app, [f"burst {i}" for i in range(20)])
    sent = outbound(results.values())
    assert sent.count(MINUTE_NOTICE) == 1
    assert len(sent) <= 6 + 1, sent


def test_resets_over_the_limit_are_not_confirmed(make_app, moto_storage, responder, manager):
    app = limited_app(make_app, moto_storage, per_minute=2)
    texter = Texter(app.test_client(), number=NUMBER)
    assert only_body(texter.text("one")) == "meow: one"
    assert only_body(texter.text("two")) == "meow: two"
    responses = [texter.text("reset") for _ in range(10)]
    assert outbound(responses) == [MINUTE_NOTICE]
    # Still honoured: the conversation was archived, only the confirmation is withheld.
    assert manager.get_history(NUMBER) == []
