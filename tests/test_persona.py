"""Persona replies: the real openai client against a fake OpenAI-compatible server, and the offline cat."""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import persona
from app.config import ConfigError, load_config
from app.persona import OfflineResponder, OpenAIResponder, Reply, load_system_prompt
from app.services import services
from conversation.models import Message
from localpeers.fake_openai import FakeOpenAI, empty, hang, malformed, refusal, reply, status

PROMPT = "You are a test cat."


@pytest.fixture
def make_responder(make_responder):
    """Build OpenAIResponders with this file's prompt, a short deadline and quick retries."""
    return partial(make_responder, system_prompt=PROMPT, deadline_seconds=2.0, backoff_seconds=0.01)


def conversation():
    """Return an earlier conversation with a system note and a picture in it."""
    return [
        Message("my name is Ada", role="user"),
        Message("ada. a-da. da-da! prrt.", role="assistant"),
        Message("conversation reset by operator", role="system"),
        Message("", role="user", media_urls=["https://example.com/cat.jpg"]),
        Message("a picture of a box. mrrp.", role="assistant"),
    ]


# --- what is sent ------------------------------------------------------------------------


def test_sends_system_prompt_window_in_order_and_current_text_once(fake, make_responder):
    fake.push(reply("meow, Ada."))
    answer = make_responder(temperature=0.7, max_tokens=55).reply(conversation(), "what is my name?")

    assert answer.text == "meow, Ada."
    assert answer.fallback is None
    [body] = fake.requests
    assert body["model"] == "cat-1"
    assert body["temperature"] == 0.7
    assert body["max_completion_tokens"] == 55 and "max_tokens" not in body
    assert body["messages"] == [
        {"role": "system", "content": PROMPT},
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "ada. a-da. da-da! prrt."},
        {"role": "user", "content": "[sent an attachment]"},
        {"role": "assistant", "content": "a picture of a box. mrrp."},
        {"role": "user", "content": "what is my name?"},
    ]
    assert fake.calls[0].path == "/v1/chat/completions"
    assert fake.calls[0].headers["authorization"] == "Bearer sk-test"


def test_current_text_is_not_repeated_when_history_already_holds_it(fake, make_responder):
    current = Message("twice?", role="user")
    make_responder().reply([*conversation(), current], "twice?", message_id=current.message_id)

    sent = [m["content"] for m in fake.requests[0]["messages"]]
    assert sent.count("twice?") == 1
    assert sent[-1] == "twice?"


def test_media_on_the_current_text_is_described(fake, make_responder):
    make_responder().reply([], "look", media_urls=["https://x/1.jpg", "https://x/2.jpg"])
    assert fake.requests[0]["messages"][-1] == {"role": "user", "content": "look [sent 2 attachments]"}


def test_window_keeps_only_the_newest_messages_that_fit_the_count(fake, make_responder):
    history = [Message(f"m{i}", role="user" if i % 2 == 0 else "assistant") for i in range(10)]
    make_responder(history_max_messages=3).reply(history, "now")
    assert [m["content"] for m in fake.requests[0]["messages"]] == [PROMPT, "m7", "m8", "m9", "now"]


def test_window_keeps_only_the_newest_messages_that_fit_the_characters(fake, make_responder):
    history = [Message(c * 10, role="user") for c in "abcde"]
    make_responder(history_max_chars=25).reply(history, "now")
    assert [m["content"] for m in fake.requests[0]["messages"]] == [PROMPT, "d" * 10, "e" * 10, "now"]


def test_empty_budget_sends_only_prompt_and_text(fake, make_responder):
    make_responder(history_max_messages=0).reply(conversation(), "alone")
    assert fake.requests[0]["messages"] == [{"role": "system", "content": PROMPT},
                                            {"role": "user", "content": "alone"}]


# --- failures, retries, fallbacks ---------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (status(429, retry_after=0), "rate_limited"),
        (status(500), "http_500"),
        (status(503), "http_503"),
        (malformed(), "malformed"),
        (empty(), "empty"),
        (refusal(), "refusal"),
    ],
)
def test_a_failed_attempt_is_retried_on_the_same_model(fake, make_responder, failure, kind):
    fake.push(failure, reply("second time lucky, mrrp"))
    answer = make_responder().reply([], "hi")

    assert answer.text == "second time lucky, mrrp"
    assert answer.fallback is None
    assert answer.attempts == 2
    assert answer.error == kind
    assert fake.models == ["cat-1", "cat-1"]


def test_fallback_models_are_tried_in_order(fake, make_responder):
    fake.model_default("cat-1", status(503))
    fake.model_default("cat-2", status(404))  # not retried: this model does not exist here
    fake.model_default("cat-3", reply("third cat speaks"))
    answer = make_responder(fallback_models=("cat-2", "cat-3")).reply([], "hi")

    assert fake.models == ["cat-1", "cat-1", "cat-2", "cat-3"]
    assert answer.text == "third cat speaks"
    assert answer.model == "cat-3"
    assert answer.fallback == "fallback-model"
    assert answer.attempts == 4


def test_a_long_retry_after_moves_on_to_the_next_model(fake, make_responder):
    fake.model_default("cat-1", status(429, retry_after=30))
    fake.model_default("cat-2", reply("quick cat"))
    started = time.monotonic()
    answer = make_responder(fallback_models=("cat-2",)).reply([], "hi")

    assert time.monotonic() - started < 2.0  # never sat out the 30 s
    assert fake.models == ["cat-1", "cat-2"]
    assert answer.text == "quick cat"


def test_when_every_model_fails_the_offline_persona_answers(fake, make_responder):
    fake.default = status(500)
    answer = make_responder(fallback_models=("cat-2",)).reply([], "tell me about lasagna")

    assert fake.models == ["cat-1", "cat-1", "cat-2", "cat-2"]
    assert answer.fallback == "error"
    assert answer.error == "http_500"
    assert answer.model == persona.OFFLINE_MODEL
    assert answer.text == OfflineResponder(seed=1).reply([], "tell me about lasagna").text
    assert "lasagna" in answer.text


def test_an_unreachable_server_still_gets_the_texter_an_answer():
    with FakeOpenAI() as gone:
        base_url = gone.base_url
    responder = OpenAIResponder("sk-test", "cat-1", base_url=base_url, deadline_seconds=2.0,
                                backoff_seconds=0.01, system_prompt=PROMPT)
    try:
        answer = responder.reply([], "anyone there?")
    finally:
        responder.close()
    assert answer.text
    assert answer.fallback == "error"
    assert answer.error == "connection"


def test_a_server_that_never_answers_cannot_hold_past_the_deadline(fake, make_responder):
    fake.default = hang(60)
    started = time.monotonic()
    answer = make_responder(deadline_seconds=1.0, fallback_models=("cat-2",)).reply([], "hello?")
    elapsed = time.monotonic() - started

    # A correctness bound with a generous margin, not a performance measurement.
    assert elapsed < 1.0 + 1.5
    assert answer.fallback == "error"
    assert answer.error == "timeout"
    assert answer.text


def test_the_callers_deadline_shortens_the_budget(fake, make_responder):
    fake.default = hang(60)
    started = time.monotonic()
    answer = make_responder(deadline_seconds=10.0).reply([], "hello?", deadline=started + 0.6)
    assert time.monotonic() - started < 0.6 + 1.5
    assert answer.fallback == "error"


def test_a_slow_first_attempt_leaves_time_for_a_retry(fake, make_responder):
    fake.push(status(503, delay=0.2), reply("made it"))
    answer = make_responder(deadline_seconds=2.0).reply([], "hi")
    assert answer.text == "made it"
    assert answer.attempts == 2


# --- cost and shape of the reply -----------------------------------------------------------


def test_usage_and_model_are_recorded_in_the_metadata(fake, make_responder):
    fake.push(empty(), reply("purr", prompt_tokens=40, completion_tokens=3))
    answer = make_responder().reply([], "hi")
    meta = answer.metadata()

    assert meta["model"] == "cat-1"
    # The failed attempt's prompt is paid for too (the fake counts ~len/4 of the messages).
    assert meta["usage"]["completion_tokens"] == 3
    assert meta["usage"]["prompt_tokens"] > 40
    assert meta["usage"]["total_tokens"] == meta["usage"]["prompt_tokens"] + 3
    assert meta["fallback"] is None
    assert meta["attempts"] == 2
    assert meta["latency_ms"] >= 0
    assert json.loads(json.dumps(meta)) == meta


def test_long_model_replies_are_cut_on_a_word_boundary(fake, make_responder):
    fake.push(reply("meow " * 200))
    answer = make_responder(max_chars=50).reply([], "hi")
    assert len(answer.text) <= 50
    # Cut like every reply (app.sms.truncate): on a word boundary, the cut marked.
    assert answer.text.endswith("meow...")


def test_reply_metadata_defaults():
    meta = Reply("mrrp", "m").metadata()
    assert meta == {"model": "m", "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    "latency_ms": 0.0, "fallback": None, "attempts": 0, "error": None}


# --- the offline persona --------------------------------------------------------------------


def test_offline_is_deterministic_with_a_seed():
    history = conversation()
    first = [OfflineResponder(seed=42).reply(history, t).text for t in ("fish?", "the moon", "")]
    again = [OfflineResponder(seed=42).reply(history, t).text for t in ("fish?", "the moon", "")]
    assert first == again
    texts = [f"tell me about topic number {n}" for n in range(10)]
    other_seed = [OfflineResponder(seed=7).reply([], t).text for t in texts]
    assert [OfflineResponder(seed=42).reply([], t).text for t in texts] != other_seed


def test_offline_varies_without_a_seed():
    cat = OfflineResponder()
    assert len({cat.reply([], "tell me about databases").text for _ in range(20)}) > 1


def test_offline_refers_to_what_was_said():
    answer = OfflineResponder(seed=3).reply([], "what do you think of spaghetti")
    assert "spaghetti" in answer.text
    assert answer.fallback == "offline"
    assert answer.model == persona.OFFLINE_MODEL
    assert answer.usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=400), cap=st.integers(min_value=1, max_value=400),
       seed=st.none() | st.integers(), pictures=st.integers(0, 3))
def test_offline_is_never_empty_and_never_over_the_cap(text, cap, seed, pictures):
    answer = OfflineResponder(seed=seed, max_chars=cap).reply([], text, media_urls=["u"] * pictures)
    assert answer.text.strip()
    assert len(answer.text) <= cap


# --- the persona prompt and wiring ------------------------------------------------------------


def test_builtin_prompt_is_dadacat_and_asks_for_short_replies():
    prompt = load_system_prompt(max_chars=300)
    assert "DadaCat" in prompt
    assert "under 300 characters" in prompt
    assert "{max_chars}" not in prompt


def flask_app(*, responder=None, offline=None, **settings_):
    """Build the responders from validated settings, as the factory would."""
    config = load_config({"TWILIO_VALIDATE_SIGNATURE": False, **settings_}, environ={}, dotenv_path=None)
    responder, offline = persona.build_responders(config, responder=responder, offline=offline)
    return SimpleNamespace(responder=responder, offline_responder=offline)


def test_init_app_without_a_key_answers_offline_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="app.persona"):
        app = flask_app(OFFLINE_PERSONA_SEED=5, REPLY_MAX_CHARS=100)
    responder = app.responder
    assert isinstance(responder, OfflineResponder)
    assert responder is app.offline_responder
    assert responder.seed == 5 and responder.max_chars == 100
    assert any("model replies are off" in r.getMessage() and "OPENAI_API_KEY" in r.getMessage()
               for r in caplog.records if r.levelno >= logging.WARNING)


def test_init_app_with_a_key_talks_to_the_configured_server(fake, tmp_path):
    persona_file = tmp_path / "persona.txt"
    persona_file.write_text("You are a dog now. Keep it under {max_chars} characters.\n", encoding="utf-8")
    app = flask_app(OPENAI_API_KEY="sk-local", OPENAI_BASE_URL=fake.base_url, OPENAI_MODEL="llama-cat",
                    OPENAI_FALLBACK_MODELS="cat-b, cat-c", REPLY_DEADLINE_SECONDS=2,
                    PERSONA_FILE=str(persona_file), REPLY_MAX_CHARS=120, HISTORY_MAX_MESSAGES=1)
    responder = app.responder
    try:
        assert isinstance(responder, OpenAIResponder)
        assert responder.models == ("llama-cat", "cat-b", "cat-c")
        answer = responder.reply(conversation(), "woof?")
    finally:
        responder.close()
    assert answer.model == "llama-cat"
    assert fake.requests[0]["messages"] == [
        {"role": "system", "content": "You are a dog now. Keep it under 120 characters."},
        {"role": "assistant", "content": "a picture of a box. mrrp."},
        {"role": "user", "content": "woof?"},
    ]
    assert responder.offline is app.offline_responder


def test_init_app_honours_injected_responders():
    class Parrot:
        def reply(self, history, text, **kwargs):
            return Reply(text, "parrot")

    parrot, offline = Parrot(), OfflineResponder(seed=1)
    app = flask_app(OPENAI_API_KEY="sk-x", responder=parrot, offline=offline)
    assert app.responder is parrot
    assert app.offline_responder is offline


def test_an_empty_persona_file_is_refused(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        load_system_prompt(blank)
    with pytest.raises(ConfigError, match="PERSONA_FILE"):
        flask_app(PERSONA_FILE=str(blank))  # refused at start-up even with no model key


def test_offline_does_not_echo_our_own_attachment_note():
    answer = OfflineResponder(seed=2).reply([], "[sent 1 attachment: image/jpeg]")
    assert "attachment" not in answer.text and "jpeg" not in answer.text
    assert "picture" in answer.text


def test_the_webhook_sends_the_remembered_conversation_to_the_model(fake, moto_storage):
    from app import create_app
    from tests.twilio_helpers import AUTH_TOKEN, Texter, twiml_bodies

    fake.push(reply("ada, da-da", prompt_tokens=30, completion_tokens=4), reply("you are ada, prrt"))
    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "sk-e2e",
                      "OPENAI_BASE_URL": fake.base_url, "OPENAI_MODEL": "cat-1", "REPLY_DEADLINE_SECONDS": 3,
                      "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0}, storage=moto_storage)
    try:
        texter = Texter(app.test_client(), number="+15550002222")
        assert twiml_bodies(texter.text("my name is Ada").data) == ["ada, da-da"]
        assert twiml_bodies(texter.text("who am I?").data) == ["you are ada, prrt"]
    finally:
        services(app).responder.close()

    prompt = load_system_prompt(max_chars=306)  # the REPLY_MAX_CHARS default
    assert fake.requests[1]["messages"] == [
        {"role": "system", "content": prompt},
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "ada, da-da"},
        {"role": "user", "content": "who am I?"},
    ]
    first_reply = services(app).manager.get_history("+15550002222", 10)[1]
    assert first_reply.role == "assistant"
    assert first_reply.metadata["model"] == "cat-1"
    assert first_reply.metadata["usage"] == {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34}
