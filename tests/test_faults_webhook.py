"""The webhook under faults, with real peers: DynamoDB Local, the real openai client, Twilio signatures.

Each scenario states what the texter must see and what must be stored.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from app import create_app
from app.services import services
from conversation import DynamoDBStorage
from localpeers.dynamodb_local import DynamoDBLocal
from localpeers.fake_openai import hang, reply, status
from tests.faults import INTERNAL, THROTTLED, CallRecorder, FaultInjector
from tests.twilio_helpers import AUTH_TOKEN, Texter, new_sid, twiml_bodies

NUMBER = "+15550004444"
DEADLINE = 3.0


def build_app(storage, fake, **overrides):
    config = {
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_MODEL": "cat-1",
        "REPLY_DEADLINE_SECONDS": DEADLINE,
        "RATE_LIMIT_PER_MINUTE": 0,
        "RATE_LIMIT_PER_DAY": 0,
        "OFFLINE_PERSONA_SEED": 7,
        **overrides,
    }
    return create_app(config, storage=storage)


def stored(manager, number=NUMBER):
    """Return (texts, replies) stored for the number across its conversations."""
    messages = []
    for conversation in manager.list_conversations(number, limit=50).items:
        messages += manager.list_messages(number, conversation.conversation_id, limit=500).items
    return [m for m in messages if m.role == "user"], [m for m in messages if m.role == "assistant"]


def test_dynamodb_throttling_is_retried_and_the_turn_completes(local_storage, fake, request):
    # Three retries (the bot's default is one): two throttles and a failed Query are retried away.
    storage = DynamoDBStorage(local_storage.table_name, endpoint_url=local_storage.client.meta.endpoint_url,
                              max_retries=3)
    request.addfinalizer(storage.close)
    # botocore backs off up to a few seconds on throttling: use the default deadline.
    app = build_app(storage, fake, REPLY_DEADLINE_SECONDS=10.0)
    fake.push(reply("a throttled purr"))
    texter = Texter(app.test_client(), number=NUMBER)
    with FaultInjector(storage.client, THROTTLED, times=2, operations=("TransactWriteItems",)) as throttled, \
            FaultInjector(storage.client, INTERNAL, times=1, operations=("Query",)) as broken:
        response = texter.text("are you there?")
    assert (throttled.injected, broken.injected) == (2, 1)
    assert response.status_code == 200
    assert twiml_bodies(response.data) == ["a throttled purr"]
    texts, replies = stored(services(app).manager)
    assert [t.content for t in texts] == ["are you there?"]
    assert [r.content for r in replies] == ["a throttled purr"]
    assert len(fake.requests) == 1


def test_dynamodb_unreachable_still_answers_logs_the_sid_and_health_says_503(
    fake, caplog, unreachable_storage
):
    app = build_app(unreachable_storage, fake)
    texter = Texter(app.test_client(), number=NUMBER)
    sid = new_sid()
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    response = texter.text("hello in the dark", sid=sid)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    (answer,) = twiml_bodies(response.data)
    assert answer.strip()
    assert elapsed < DEADLINE + 2  # a bound on correctness (within Twilio's 15 s), not a benchmark
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(sid in line for line in errors)
    assert not any("hello in the dark" in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    health = app.test_client().get("/health")
    assert health.status_code == 503
    assert health.get_json()["status"] == "unavailable"


@pytest.mark.parametrize(
    "failures",
    [
        [status(429, retry_after=0)],
        [status(500)],
        [status(503), status(502)],
    ],
    ids=["429", "500", "503-then-502"],
)
def test_model_errors_fall_back_within_the_deadline(local_storage, fake, failures):
    app = build_app(local_storage, fake, OPENAI_FALLBACK_MODELS="cat-2")
    fake.on_model("cat-1", *failures, *failures)  # every attempt on the first model fails
    fake.on_model("cat-2", reply("second cat speaks"))
    texter = Texter(app.test_client(), number=NUMBER)
    started = time.monotonic()
    response = texter.text("anyone?")
    assert time.monotonic() - started < DEADLINE + 1.5
    assert twiml_bodies(response.data) == ["second cat speaks"]
    texts, replies = stored(services(app).manager)
    assert len(texts) == len(replies) == 1
    assert replies[0].metadata["model"] == "cat-2"
    assert [m for m in fake.models][-1] == "cat-2"


def test_model_that_never_answers_gets_an_offline_reply_within_the_deadline(local_storage, fake):
    app = build_app(local_storage, fake)
    fake.default = hang(60)
    texter = Texter(app.test_client(), number=NUMBER)
    started = time.monotonic()
    response = texter.text("hello?")
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + 1.5
    (answer,) = twiml_bodies(response.data)
    assert answer.strip()
    texts, replies = stored(services(app).manager)
    assert len(texts) == len(replies) == 1
    assert replies[0].content == answer
    assert replies[0].metadata["fallback"] in ("offline", "error")


def test_retry_storm_calls_the_model_once_and_stores_once(local_storage, fake):
    """Twilio retries one text five times at once: one model call, one text, one reply."""
    app = build_app(local_storage, fake)
    fake.default = reply("one answer for five knocks", delay=0.5)
    sid = new_sid()
    barrier = threading.Barrier(5)

    def deliver(_):
        texter = Texter(app.test_client(), number=NUMBER)
        params = texter.params("knock knock", sid=sid)
        barrier.wait()
        return texter.post(params, headers={"I-Twilio-Idempotency-Token": uuid.uuid4().hex})

    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(deliver, range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    assert [twiml_bodies(r.data) for r in responses] == [["one answer for five knocks"]] * 5
    assert len(fake.requests) == 1
    texts, replies = stored(services(app).manager)
    assert [t.message_id for t in texts] == [sid]
    assert [r.reply_to for r in replies] == [sid]
    conversation = services(app).manager.get_or_create_conversation(NUMBER)
    assert conversation.message_count == 2


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_hanging_dynamodb_with_default_settings_answers_within_twilios_deadline(fake, caplog):
    """DynamoDB accepts connections but never answers; the factory's defaults still answer in time."""
    with SilentServer() as silent:
        app = create_app({
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.port}",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": fake.base_url,
        })
        texter = Texter(app.test_client(), number=NUMBER)
        sid = new_sid()
        started = time.monotonic()
        try:
            response = texter.text("is anyone home?", sid=sid)
        finally:
            services(app).storage.close()
        elapsed = time.monotonic() - started
    assert silent.accepted  # the store really tried
    assert response.status_code == 200
    (answer,) = twiml_bodies(response.data)
    assert answer.strip()
    assert elapsed < 15, f"Twilio gives up after 15 s; this took {elapsed:.1f} s"
    assert any(sid in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_a_steady_turn_makes_three_dynamodb_requests(local_storage, fake):
    """The text's transaction (with the opt-out check and the lease), the window, the
    reply's transaction (with the lease's release); the day's figures are written later."""
    app = build_app(local_storage, fake)
    texter = Texter(app.test_client(), number=NUMBER)
    for index in range(3):
        texter.text(f"warm up {index}")
    assert services(app).bounded.drain()
    with CallRecorder(local_storage.client) as recorder:
        response = texter.text("count my requests")
        assert services(app).bounded.drain()  # nothing is left for after the answer
    assert twiml_bodies(response.data) == [fake.default.text]
    assert recorder.operations == ["TransactWriteItems", "Query", "TransactWriteItems"]


def test_token_budget_is_overshot_by_at_most_one_call_under_concurrency(local_storage, fake):
    """30 numbers text at once with DAILY_TOKEN_BUDGET=30: reserve before the call, settle after."""
    app = build_app(local_storage, fake, DAILY_TOKEN_BUDGET=30, REPLY_DEADLINE_SECONDS=14.0)
    fake.default = reply("a costly purr", delay=0.3)  # every text is in flight together
    barrier = threading.Barrier(30)

    def send(index):
        texter = Texter(app.test_client(), number=f"+1555000{index:04d}")
        params = texter.params(f"hello {index}")
        barrier.wait()
        return texter.post(params)

    with ThreadPoolExecutor(30) as pool:
        responses = list(pool.map(send, range(30)))
    assert all(len(twiml_bodies(r.data)) == 1 for r in responses)
    manager = services(app).manager
    usages = []
    for index in range(30):
        _, replies = stored(manager, f"+1555000{index:04d}")
        usages += [r.metadata["usage"]["total_tokens"] for r in replies if r.metadata.get("model") == "cat-1"]
    assert len(usages) == len(fake.requests) >= 1
    assert sum(usages) <= 30 + max(usages), f"{len(usages)} calls spent {sum(usages)} tokens"
    # What was reserved was settled to what was used (after the answers).
    assert services(app).bounded.drain()
    assert services(app).limits.tokens_today() == sum(usages)


def test_dynamodb_frozen_during_the_model_call_still_answers_in_time_and_loses_nothing(fake):
    """A private DynamoDB Local is stopped (SIGSTOP) when an 8 s model call starts.

    Everything after the model gets only the time left before the reply deadline, so the
    texter has the model's reply within Twilio's 15 s; once DynamoDB runs again the reply
    is stored, the token budget settled and the number's turn lease given back.
    """
    with DynamoDBLocal() as private:
        table = f"t-{uuid.uuid4().hex[:8]}"
        setup = DynamoDBStorage(table, endpoint_url=private.endpoint_url)
        setup.create_table()
        setup.close()
        app = create_app({
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "AWS_ENDPOINT_URL": private.endpoint_url,  # the factory's own DynamoDB timeouts
            "DYNAMODB_TABLE_NAME": table,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_MODEL": "cat-1",
            "REPLY_DEADLINE_SECONDS": 12.0,
            "DAILY_TOKEN_BUDGET": 1_000_000,
        })
        storage, bounded = services(app).storage, services(app).bounded
        texter = Texter(app.test_client(), number=NUMBER)
        try:
            assert twiml_bodies(texter.text("warm up").data) == [fake.default.text]
            assert bounded.drain()
            frozen = threading.Event()

            def freeze_then_answer(_body):
                os.kill(private.process.pid, signal.SIGSTOP)
                frozen.set()
                return reply("a slow purr from a frozen world", delay=8)

            fake.handler = freeze_then_answer
            sid = new_sid()
            started = time.monotonic()
            try:
                response = texter.text("are you there?", sid=sid)
                elapsed = time.monotonic() - started
            finally:
                os.kill(private.process.pid, signal.SIGCONT)
            assert frozen.is_set()
            assert twiml_bodies(response.data) == ["a slow purr from a frozen world"]
            assert elapsed < 15, f"Twilio gives up after 15 s; this took {elapsed:.1f} s"

            assert bounded.drain(timeout=90)
            manager = services(app).manager
            replies = [manager.get_reply(NUMBER, m) for m in manager.get_history(NUMBER) if m.role == "user"]
            assert [r.content for r in replies] == [fake.default.text, "a slow purr from a frozen world"]
            assert replies[1].reply_to == sid
            used = sum(r.metadata["usage"]["total_tokens"] for r in replies)
            assert services(app).limits.tokens_today() == used
            assert storage.acquire_lease(NUMBER, "the-next-text", 5)  # the lease was given back
        finally:
            bounded.close()
            bounded.drain(timeout=30)
            storage.close()
