"""Rolling memory through the real webhook: the fake model writes summaries deterministically.

Storage is moto and a real DynamoDB Local (the ``storage`` fixture runs each test on both).
"""

from __future__ import annotations

import threading

import pytest

from app import create_app
from app.persona import OpenAIResponder
from app.services import services
from conversation.memory import SUMMARY_PREFIX, MemoryPolicy, update_summary
from localpeers.fake_openai import FakeOpenAI, is_summary_request, keep_lines_summary, reply, status
from tests.faults import CallRecorder
from tests.twilio_helpers import AUTH_TOKEN, Texter, twiml_bodies

NUMBER = "+15550007777"
FACT = "my name is Zanzibar and my goldfish is called Pixel"


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        server.handler = keep_lines_summary
        yield server


def build_app(storage, fake, **overrides):
    return create_app({
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_MODEL": "cat-1",
        "RATE_LIMIT_PER_MINUTE": 0,
        "RATE_LIMIT_PER_DAY": 0,
        **overrides,
    }, storage=storage)


def reply_requests(fake):
    return [body for body in fake.requests if body and not is_summary_request(body)]


def summary_requests(fake):
    return [body for body in fake.requests if body and is_summary_request(body)]


def chat(app, texts, start=0):
    texter = Texter(app.test_client(), number=NUMBER)
    keeper = services(app).memory
    for index in range(start, start + texts):
        response = texter.text(FACT if index == 0 else f"text {index}: the weather is fine")
        assert response.status_code == 200
        assert keeper.wait(30)
    return texter


def test_a_fact_from_the_first_text_reaches_the_model_at_message_200_and_not_after_reset(storage, fake):
    app = build_app(storage, fake)
    texter = chat(app, 100)  # 100 texts and 100 replies: the last request is at message 200
    manager = services(app).manager
    conversation = manager.get_or_create_conversation(NUMBER)
    assert conversation.message_count == 200
    last = reply_requests(fake)[-1]["messages"]
    memory = [m["content"] for m in last if m["role"] == "system" and m["content"].startswith(SUMMARY_PREFIX)]
    assert len(memory) == 1 and "Zanzibar" in memory[0]
    window = [m for m in last if m["role"] != "system"]
    assert not any("Zanzibar" in m["content"] for m in window)  # long gone from the window
    assert len(window) <= 21
    # Bounded and updated about every 10 messages: 200 messages, window 20, so 18 or 19 updates.
    summary = conversation.summary
    assert len(summary.text) <= 1000
    assert 18 <= len(summary_requests(fake)) <= 19
    assert summary.count >= 200 - 20

    texter.text("reset")
    texter.text("do you remember my name?")
    after = reply_requests(fake)[-1]["messages"]
    assert not any("Zanzibar" in m["content"] for m in after)
    assert manager.get_or_create_conversation(NUMBER).summary is None


def test_the_prompt_stays_flat_as_the_conversation_grows(storage, fake):
    app = build_app(storage, fake, MEMORY_SUMMARY_MAX_CHARS=300)
    chat(app, 60)
    sizes = [len(str(body["messages"])) for body in reply_requests(fake)]
    # Once the window is full the request stops growing: summary and window are both bounded.
    assert max(sizes[20:]) <= max(sizes[10:20]) + 300 + len(SUMMARY_PREFIX)
    assert max(sizes[30:]) - min(sizes[30:]) < 600


def test_without_memory_the_fact_is_forgotten(storage, fake):
    app = build_app(storage, fake, MEMORY_SUMMARY=False)
    assert services(app).memory is None
    texter = Texter(app.test_client(), number=NUMBER)
    for index in range(30):
        texter.text(FACT if index == 0 else f"text {index}")
    assert not any("Zanzibar" in str(body["messages"]) for body in reply_requests(fake)[-1:])
    assert summary_requests(fake) == []


def test_a_failing_model_keeps_the_previous_summary(storage, fake):
    app = build_app(storage, fake)
    manager = services(app).manager
    fake.handler = None
    fake.model_default("cat-1", reply("purr"))

    def failing(body):
        return status(500) if is_summary_request(body) else None

    fake.handler = failing
    chat(app, 12)  # 24 messages: updates were due and every one failed
    conversation = manager.get_or_create_conversation(NUMBER)
    assert conversation.summary is None  # no summary, and the texts were answered
    assert len(summary_requests(fake)) >= 1
    fake.handler = keep_lines_summary
    chat(app, 2, start=12)
    first = manager.get_or_create_conversation(NUMBER).summary
    assert first is not None and "Zanzibar" in first.text
    fake.handler = failing
    chat(app, 12, start=14)
    assert manager.get_or_create_conversation(NUMBER).summary == first


def test_two_instances_never_summarise_the_same_messages(storage, fake):
    first, second = build_app(storage, fake), build_app(storage, fake)
    keeper_a, keeper_b = services(first).memory, services(second).memory
    manager = services(first).manager
    for index in range(24):
        manager.add_user_message(NUMBER, f"text {index}")
    cid = manager.get_or_create_conversation(NUMBER).conversation_id
    outcomes = []

    # Instance B tries while instance A is asking the model for the same messages.
    def a_asks_while_b_tries(messages):
        outcomes.append(keeper_b.update(NUMBER, cid))
        return keeper_a.responder.summarise(messages)

    outcome = update_summary(storage, NUMBER, cid, a_asks_while_b_tries, keeper_a.policy)
    assert (outcome, outcomes) == ("updated", ["busy"])
    assert len(summary_requests(fake)) == 1
    # Afterwards those messages are covered: nothing is due until ten more arrive.
    assert keeper_b.update(NUMBER, cid) == "not_due"
    assert manager.get_summary(NUMBER, cid).count == 14


def test_the_reply_does_not_wait_for_the_summary(storage, fake):
    app = build_app(storage, fake, MEMORY_UPDATE_EVERY=10)
    chat(app, 10)  # 20 messages: the next text makes an update due
    release = threading.Event()

    def slow_summary(body):
        if is_summary_request(body):
            release.wait(30)
            return keep_lines_summary(body)
        return None

    fake.handler = slow_summary
    texter = Texter(app.test_client(), number=NUMBER)
    response = texter.text("one more")
    # The answer is back while the summary request is still held by the model.
    assert twiml_bodies(response.data)
    assert not services(app).memory.wait(0)
    release.set()
    assert services(app).memory.wait(30)
    assert services(app).manager.get_or_create_conversation(NUMBER).summary is not None


def test_the_offline_persona_works_without_a_summary(storage):
    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OFFLINE_PERSONA_SEED": 3,
                      "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0}, storage=storage)
    assert services(app).memory is None
    texter = Texter(app.test_client(), number=NUMBER)
    for index in range(25):
        response = texter.text(f"text {index}")
        assert twiml_bodies(response.data)[0]


def test_a_long_window_reads_the_header_once_and_a_short_one_not_at_all(local_storage, fake):
    app = build_app(local_storage, fake)
    texter = Texter(app.test_client(), number=NUMBER)
    texter.text("hello")
    with CallRecorder(local_storage.client) as recorder:
        texter.text("short conversation")
    assert recorder.operations.count("GetItem") == 0  # the active conversation is remembered
    chat(app, 12, start=2)
    with CallRecorder(local_storage.client) as recorder:
        texter.text("long conversation")
    assert recorder.operations.count("GetItem") == 1  # the header


def test_the_summary_request_carries_the_old_summary_and_the_folded_messages(fake):
    policy = MemoryPolicy(window_messages=4, update_every=2, max_chars=200)
    from conversation.models import Message

    messages = [Message(content=f"m{i}", role="user" if i % 2 == 0 else "assistant") for i in range(3)]
    messages.append(Message(content="an operator note", role="system"))
    request = policy.request("Ann likes tea.", messages)
    assert "200 characters" in request[0]["content"]
    assert request[1]["content"].splitlines() == [
        "Memory so far:", "Ann likes tea.", "", "New messages:", "Person: m0", "DadaCat: m1", "Person: m2",
    ]
    responder = OpenAIResponder("k", "cat-1", base_url=fake.base_url)
    try:
        text, tokens = responder.summarise(request)
    finally:
        responder.close()
    assert text == "Ann likes tea. m0 m2" and tokens > 0


def test_policy_bounds_and_choices():
    from conversation.models import Message

    policy = MemoryPolicy(window_messages=20, window_chars=6000, update_every=10, max_chars=100)
    assert len(policy.bound("word " * 100)) <= 100
    assert policy.bound("First sentence here. " * 10).endswith(".")
    assert policy.bound("   ") is None
    uncovered = [Message(content=f"m{i}") for i in range(20)]
    assert [m.content for m in policy.to_fold(uncovered, complete=True)] == [f"m{i}" for i in range(10)]
    assert policy.to_fold(uncovered[:9], complete=True) == []  # fewer than ten, none left the window
    # The character budget shortens the window: what it pushed out is folded too.
    long = [Message(content="x" * 500) for _ in range(20)]
    assert len(policy.to_fold(long, complete=True)) == 20 - (12 - 10)
    # More than one update's worth waiting: the oldest max_fold go first.
    small = MemoryPolicy(window_messages=20, update_every=10, max_fold=5)
    assert len(small.to_fold(uncovered, complete=False)) == 5
    with pytest.raises(ValueError):
        MemoryPolicy(update_every=0)


@pytest.mark.parametrize(("name", "value"), [
    ("MEMORY_UPDATE_EVERY", "0"), ("MEMORY_SUMMARY_MAX_CHARS", "50"), ("MEMORY_SUMMARY_MAX_CHARS", "5000"),
])
def test_memory_settings_are_checked(name, value):
    from app.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=name):
        load_config({"TWILIO_AUTH_TOKEN": "t", name: value}, environ={}, dotenv_path=None)


def test_the_token_reservation_counts_the_summary(fake):
    responder = OpenAIResponder("k", "cat-1", base_url=fake.base_url)
    try:
        plain = responder.token_estimate([], "hello")
        with_memory = responder.token_estimate([], "hello", summary="Zed likes kites. " * 50)
    finally:
        responder.close()
    assert with_memory >= plain + 850 // 2


def test_summaries_respect_the_daily_model_budget(storage, fake):
    app = build_app(storage, fake, DAILY_MODEL_CALL_BUDGET=1)
    manager = services(app).manager
    for index in range(24):
        manager.add_user_message(NUMBER, f"text {index}")
    cid = manager.get_or_create_conversation(NUMBER).conversation_id
    assert services(app).limits.reserve_model_call() is not None  # today's one call
    keeper = services(app).memory
    assert keeper.update(NUMBER, cid) == "failed"
    assert summary_requests(fake) == [] and manager.get_summary(NUMBER, cid) is None
