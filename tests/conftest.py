"""Shared fixtures: storage on moto and on a real DynamoDB Local, and the Flask app.

The DynamoDB Local server is started once per test session from the jar that
``npm ci --prefix scripts/npm`` put in scripts/npm/node_modules; a missing jar or Java
is an error, never a skip.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Records the DynamoDB operations the suite's code paths call (tests/test_aws.py checks
# the IAM policies against them).
pytest_plugins = ["tests.dynamodb_operations"]

# Fake credentials for moto and DynamoDB Local; never real ones in tests.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

# Tests see only the settings they pass: none of the developer's environment or
# .env (an OPENAI_API_KEY there must never reach a test). Subprocesses inherit this.
from app.config import SETTINGS  # noqa: E402

for _setting in SETTINGS:
    os.environ.pop(_setting.name, None)
os.environ["DOTENV_FILE"] = ""

from app.bounded import Bounded  # noqa: E402
from app.persona import OfflineResponder, OpenAIResponder  # noqa: E402
from app.reply_pool import ReplyPool  # noqa: E402
from conversation import ConversationManager, DynamoDBStorage  # noqa: E402
from conversation.daily_stats import DailyStats  # noqa: E402
from localpeers.fake_openai import FakeOpenAI  # noqa: E402

# Every app runs work after its answers in background threads; a test's store must
# outlive that work (after moto's mock ends, a late call would go to AWS itself).
_BACKGROUND: list[Bounded] = []
_bounded_init = Bounded.__init__


def _recording_init(self, *args, **kwargs):
    _bounded_init(self, *args, **kwargs)
    _BACKGROUND.append(self)


Bounded.__init__ = _recording_init
# Day's figures deferred by those apps are written while the store is still there.
_FIGURES: list[DailyStats] = []
_stats_init = DailyStats.__init__


def _recording_stats_init(self, *args, **kwargs):
    _stats_init(self, *args, **kwargs)
    _FIGURES.append(self)


DailyStats.__init__ = _recording_stats_init


# Reply pools (auto/async modes) run turns, a heartbeat and a sweep in threads: they end too.
_POOLS: list[ReplyPool] = []
_pool_init = ReplyPool.__init__


def _recording_pool_init(self, *args, **kwargs):
    _pool_init(self, *args, **kwargs)
    _POOLS.append(self)


ReplyPool.__init__ = _recording_pool_init


def _serialize_moto_writes() -> None:
    """Make moto's writes atomic with each other, as DynamoDB's are.

    moto checks a transaction's conditions and, when one fails, restores a copy of the
    whole table taken when it started: without a lock, writes other threads made in
    between vanish (DynamoDB itself refuses such a write with TransactionConflict).
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, __original=original, **kwargs):
            with lock:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)


_serialize_moto_writes()


def finish_background_work() -> None:
    """Stop retries and wait for the background work of every app built so far, then
    write the day's figures it deferred."""
    while _POOLS:
        pool = _POOLS.pop()
        pool.drain(timeout=30)
        pool.close()
    while _BACKGROUND:
        bounded = _BACKGROUND.pop()
        bounded.close()
        bounded.drain(timeout=30)
    while _FIGURES:
        stats = _FIGURES.pop()
        try:
            stats.flush()
        except Exception:  # noqa: BLE001 - that test's store is gone: nothing to keep
            stats._pending.clear()  # and no later timer may send them anywhere
from localpeers.dynamodb_local import DynamoDBLocal  # noqa: E402


@pytest.fixture(scope="session")
def ddb_local():
    """Run one DynamoDB Local server (in memory) for the whole test session."""
    with DynamoDBLocal() as server:
        yield server


class SerializedClient:
    """Let one thread at a time into a boto3 client.

    moto's in-process backend is not thread-safe (concurrent transactions
    corrupt its dicts), so calls are serialised; threads still interleave
    between calls, which is where the store's races live. Real parallelism
    is tested against DynamoDB Local.
    """

    def __init__(self, client):
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute) or name in ("get_waiter", "get_paginator"):
            return attribute

        def call(*args, **kwargs):
            with self._lock:
                return attribute(*args, **kwargs)

        return call


@pytest.fixture
def moto_storage():
    """Return a store on moto's in-process DynamoDB (fresh per test)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = SerializedClient(boto3.client("dynamodb", region_name="us-east-1"))
        storage = DynamoDBStorage(f"t-{uuid.uuid4().hex[:8]}", client=client)
        storage.create_table()
        yield storage
        finish_background_work()


@pytest.fixture
def local_storage(ddb_local):
    """Return a store on the real DynamoDB Local server, in a fresh table."""
    # More patient than the bot's defaults: DynamoDB Local shares a busy machine with the tests.
    storage = DynamoDBStorage(
        f"t-{uuid.uuid4().hex[:8]}", endpoint_url=ddb_local.endpoint_url, region_name="us-east-1",
        max_retries=3, connect_timeout=2.0, read_timeout=5.0,
    )
    storage.create_table()
    yield storage
    finish_background_work()
    storage.client.delete_table(TableName=storage.table_name)
    storage.close()


@pytest.fixture
def unreachable_storage():
    """Return a store whose endpoint refuses connections (nothing listens on the port)."""
    from localpeers.dynamodb_local import free_port

    storage = DynamoDBStorage(
        "unreachable",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="us-east-1",
        auto_create=False,
        max_retries=1,
        connect_timeout=0.3,
        read_timeout=0.5,
    )
    yield storage
    finish_background_work()
    storage.close()


@pytest.fixture(params=["moto", "dynamodb_local"])
def storage(request):
    """Return a store on each backend in turn: moto, then a real DynamoDB Local."""
    if request.param == "moto":
        return request.getfixturevalue("moto_storage")
    return request.getfixturevalue("local_storage")


@pytest.fixture(params=["memory", "moto", "dynamodb_local"])
def store(request):
    """Return each ConversationStore in turn: in memory, DynamoDB on moto, DynamoDB Local."""
    if request.param == "memory":
        from conversation.inmemory import MemoryStore

        return MemoryStore()
    return request.getfixturevalue({"moto": "moto_storage", "dynamodb_local": "local_storage"}[request.param])


@pytest.fixture
def fake():
    """Run a fake OpenAI-compatible server for one test."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def make_responder(fake):
    """Build OpenAIResponders for the fake server (a seeded offline cat behind), closing them afterwards."""
    made = []

    def build(model="cat-1", **options):
        options = {"base_url": fake.base_url, "offline": OfflineResponder(seed=1), **options}
        responder = OpenAIResponder("sk-test", model, **options)
        made.append(responder)
        return responder

    yield build
    for responder in made:
        responder.close()


@pytest.fixture
def legacy_table(storage) -> str:
    """Create a table in the original DadaCat layout (``user_id`` its only key); return its name."""
    name = f"legacy-{uuid.uuid4().hex[:6]}"
    storage.client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
    )
    storage.client.get_waiter("table_exists").wait(TableName=name)
    return name


@pytest.fixture
def manager(storage):
    """Return a ConversationManager over the parametrised store."""
    return ConversationManager(storage=storage)
