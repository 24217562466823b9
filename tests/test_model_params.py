"""Newer OpenAI models and older compatible servers: the reply-length parameter each accepts.

The fake server refuses like OpenAI does: reasoning models (gpt-5, o-series) answer a
request carrying ``max_tokens`` with a 400 ``unsupported_parameter``; a server started with
``knows_max_completion_tokens=False`` refuses ``max_completion_tokens``.
"""

from __future__ import annotations

import logging
from functools import partial

import openai
import pytest

from app import create_app
from app.persona import OFFLINE_MODEL
from app.services import services
from localpeers.fake_openai import reply
from tests.twilio_helpers import AUTH_TOKEN, Texter, twiml_bodies


@pytest.fixture
def make_responder(make_responder):
    """Build OpenAIResponders with a 60-token reply limit (the figure the requests are checked for)."""
    return partial(make_responder, system_prompt="cat", deadline_seconds=3.0, max_tokens=60)


def test_the_fake_refuses_max_tokens_for_reasoning_models_like_openai(fake):
    client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=10)
    assert refused.value.param == "max_tokens" and refused.value.code == "unsupported_parameter"
    assert "Use 'max_completion_tokens' instead" in refused.value.message
    client.close()


@pytest.mark.parametrize("model", ["gpt-5-mini", "o4-mini", "gpt-4o-mini"])
def test_current_openai_models_are_sent_max_completion_tokens(fake, make_responder, model):
    fake.push(reply("prrt, a newer cat"))
    answer = make_responder(model).reply([], "hello")
    assert (answer.text, answer.fallback, answer.model) == ("prrt, a newer cat", None, model)
    [body] = fake.requests
    assert body["max_completion_tokens"] == 60 and "max_tokens" not in body


def test_a_server_that_knows_only_max_tokens_keeps_working_and_is_remembered(fake, make_responder):
    fake.knows_max_completion_tokens = False
    fake.push(reply("old server purr"), reply("still purring"))
    responder = make_responder("llama3")
    first = responder.reply([], "hello")
    second = responder.reply([], "again")
    assert (first.text, first.fallback) == ("old server purr", None)
    assert (second.text, second.fallback) == ("still purring", None)
    names = ("max_completion_tokens", "max_tokens")
    sent = [[name for name in names if name in body] for body in fake.requests]
    # One refused request the first time; afterwards the parameter that worked goes first.
    assert sent == [["max_completion_tokens"], ["max_tokens"], ["max_tokens"]]
    assert responder.compat.problems() == {}


def test_a_model_refusing_both_parameters_is_an_error_in_the_log_and_in_health(fake, moto_storage, caplog):
    fake.knows_max_completion_tokens = False  # and gpt-5 refuses max_tokens: nothing works
    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "sk-test",
                      "OPENAI_BASE_URL": fake.base_url, "OPENAI_MODEL": "gpt-5",
                      "REPLY_DEADLINE_SECONDS": 3, "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0},
                     storage=moto_storage)
    client = app.test_client()
    try:
        assert client.get("/health").get_json()["status"] == "ok"
        caplog.set_level(logging.INFO)
        (answer,) = twiml_bodies(Texter(client, number="+15550003333").text("hi").data)
        health = client.get("/health")
    finally:
        services(app).responder.close()
    assert answer.strip()  # the texter still hears from the (offline) cat
    stored = services(app).manager.get_history("+15550003333")[-1]
    assert stored.metadata["model"] == OFFLINE_MODEL
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("gpt-5" in line and "max_tokens" in line for line in errors), errors
    assert health.status_code == 200
    body = health.get_json()
    assert body["status"] == "degraded"
    [problem] = body["model_errors"]
    assert problem["model"] == "gpt-5"
    assert "max_completion_tokens" in problem["error"] and "max_tokens" in problem["error"]


def test_a_refused_model_is_reported_until_it_answers_again(fake, make_responder):
    responder = make_responder("gpt-5")
    fake.knows_max_completion_tokens = False
    assert responder.reply([], "hi").fallback == "error"
    assert list(responder.compat.problems()) == ["gpt-5"]
    fake.knows_max_completion_tokens = True  # the operator fixed the server
    assert responder.reply([], "hi").fallback is None
    assert responder.compat.problems() == {}
