"""DynamoDBSession: the OpenAI Agents SDK session contract, side by side with SQLiteSession.

Every contract test runs on moto and on a real DynamoDB Local (the ``storage``
fixture) and gives the SDK's own in-memory ``SQLiteSession`` the same calls,
expecting the same answers.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import time

import pytest
from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from agents.memory import Session, SessionSettings, SQLiteSession
from openai import AsyncOpenAI

from conversation import ConversationManager, DynamoDBStorage, Message, MessageTooLarge
from conversation.agents_session import DynamoDBSession
from localpeers.fake_openai import FakeOpenAI
from tests.conftest import ROOT

# The awkward values, in one place: floats that Decimal conversion would mangle,
# nesting, unicode, empty containers, None, booleans, big ints, and every item kind.
AWKWARD_ITEMS = [
    {"role": "system", "content": "be a cat"},
    {"role": "developer", "content": "answer briefly"},
    {"role": "user", "content": "héllo 🐈 — ünïcode"},
    {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "meow", "annotations": [], "logprob": -0.30000000000000004}
        ],
    },
    {"type": "function_call", "call_id": "call_1", "name": "weigh", "arguments": '{"kg": 4.2}'},
    {"type": "function_call_output", "call_id": "call_1", "output": json.dumps({"kg": 0.1 + 0.2})},
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": None},
    {
        "type": "custom",
        "floats": [0.1, 1e-300, 1.7976931348623157e308, -0.0, 3.0],
        "ints": [0, -1, 2**70],
        "nested": {"a": {"b": [{}, [], None, True, False, ""]}},
    },
]


class Twins:
    """Make the same call on a DynamoDBSession and a SQLiteSession and check they agree."""

    def __init__(self, dynamo: DynamoDBSession, sqlite: SQLiteSession) -> None:
        self.dynamo = dynamo
        self.sqlite = sqlite

    async def call(self, name: str, *args):
        ours = await getattr(self.dynamo, name)(*copy.deepcopy(args))
        theirs = await getattr(self.sqlite, name)(*copy.deepcopy(args))
        assert ours == theirs, f"{name}{args!r}: DynamoDB gave {ours!r}, SQLite gave {theirs!r}"
        return ours


@pytest.fixture
def session(storage):
    """Return a fresh DynamoDB session on the parametrised store."""
    return DynamoDBSession("chat-1", storage)


@pytest.fixture
def twins(session):
    """Return the DynamoDB session paired with an in-memory SQLiteSession."""
    sqlite = SQLiteSession(session.session_id)
    yield Twins(session, sqlite)
    sqlite.close()


def numbered(count: int, start: int = 0) -> list[dict]:
    return [
        {"role": "user", "content": f"item {i}", "n": i, "w": i / 10} for i in range(start, start + count)
    ]


def header(session: DynamoDBSession):
    return session.storage.get_conversation(session.user_id, session.conversation_id)


# ------------------------------------------------------------- the contract


def test_is_an_sdk_session(session):
    assert isinstance(session, Session)
    assert session.session_id == "chat-1"
    assert session.session_settings == SessionSettings()


def test_items_round_trip_exactly_in_order(twins):
    async def scenario():
        assert await twins.call("get_items") == []
        await twins.call("add_items", AWKWARD_ITEMS)
        await twins.call("add_items", numbered(3))
        items = await twins.call("get_items")
        assert items == AWKWARD_ITEMS + numbered(3)
        floats = items[7]["floats"]
        assert all(type(value) is float for value in floats)
        assert floats[1] == 1e-300 and items[3]["content"][0]["logprob"] == -0.30000000000000004
        assert items[7]["ints"][2] == 2**70

    asyncio.run(scenario())


def test_limit_returns_the_newest_oldest_first(twins):
    async def scenario():
        await twins.call("add_items", numbered(6))
        await twins.call("add_items", numbered(5, start=6))
        for limit in (0, 1, 2, 5, 11, 50, -1, None):
            items = await twins.call("get_items", limit)
            expected = numbered(11)
            if limit is not None and limit >= 0:
                expected = expected[len(expected) - limit :] if limit else []
            assert items == expected, limit

    asyncio.run(scenario())


def test_session_settings_limit_is_the_default(storage):
    async def scenario():
        dynamo = DynamoDBSession("s", storage, session_settings=SessionSettings(limit=2))
        sqlite = SQLiteSession("s", session_settings={"limit": 2})
        twins = Twins(dynamo, sqlite)
        await twins.call("add_items", numbered(4))
        assert await twins.call("get_items") == numbered(4)[2:]
        assert await twins.call("get_items", 3) == numbered(4)[1:]
        sqlite.close()

    asyncio.run(scenario())


def test_a_bounded_read_is_one_query_of_limit_items(session):
    queries = []

    def record(parsed, **kwargs):
        queries.append((parsed.get("Count"), parsed.get("ScannedCount")))

    async def scenario():
        await session.add_items(numbered(30))
        session.storage.client.meta.events.register("after-call.dynamodb.Query", record)
        try:
            items = await session.get_items(3)
        finally:
            session.storage.client.meta.events.unregister("after-call.dynamodb.Query", record)
        assert items == numbered(30)[-3:]

    asyncio.run(scenario())
    assert queries == [(3, 3)]


def test_reads_page_through_long_sessions(twins, monkeypatch):
    monkeypatch.setattr("conversation.agents_session.MAX_PAGE_SIZE", 4)
    queries = []
    client = twins.dynamo.storage.client

    def count(**kwargs):
        queries.append(1)

    async def scenario():
        await twins.call("add_items", numbered(11))
        client.meta.events.register("after-call.dynamodb.Query", count)
        try:
            assert await twins.call("get_items") == numbered(11)
            assert await twins.call("get_items", 9) == numbered(11)[2:]
        finally:
            client.meta.events.unregister("after-call.dynamodb.Query", count)

    asyncio.run(scenario())
    assert len(queries) == 3 + 3  # pages of 4, 4, 3 for each read


def test_batch_larger_than_one_transaction_keeps_order_and_counts(twins):
    items = numbered(130)

    async def scenario():
        await twins.call("add_items", items)
        assert await twins.call("get_items") == items
        assert await twins.call("get_items", 120) == items[-120:]

    asyncio.run(scenario())
    stored = header(twins.dynamo)
    assert stored.message_count == 130
    assert stored.role_counts["user"] == 130


def test_pop_returns_newest_until_empty(twins):
    async def scenario():
        await twins.call("add_items", AWKWARD_ITEMS)
        popped = [await twins.call("pop_item") for _ in range(len(AWKWARD_ITEMS))]
        assert popped == list(reversed(AWKWARD_ITEMS))
        assert await twins.call("pop_item") is None
        assert await twins.call("get_items") == []

    asyncio.run(scenario())
    stored = header(twins.dynamo)
    assert stored.message_count == 0
    assert stored.role_counts == {"user": 0, "assistant": 0, "system": 0}


def test_pop_then_add_keeps_order(twins):
    async def scenario():
        await twins.call("add_items", numbered(3))
        assert await twins.call("pop_item") == numbered(3)[2]
        await twins.call("add_items", numbered(2, start=10))
        assert await twins.call("get_items") == numbered(2) + numbered(2, start=10)

    asyncio.run(scenario())
    assert header(twins.dynamo).message_count == 4


def test_clear_removes_items_and_header_and_the_session_lives_on(twins):
    async def scenario():
        await twins.call("add_items", numbered(40))
        assert await twins.call("clear_session") is None
        assert await twins.call("get_items") == []
        assert await twins.call("pop_item") is None
        assert header(twins.dynamo) is None
        await twins.call("clear_session")  # clearing an empty session is fine
        await twins.call("add_items", numbered(2, start=100))
        assert await twins.call("get_items") == numbered(2, start=100)

    asyncio.run(scenario())
    assert header(twins.dynamo).message_count == 2
    remaining = list(twins.dynamo.storage.iter_user_items(twins.dynamo.user_id))
    assert [item["type"] for item in remaining] == ["conversation", "message", "message"]


def test_header_counts_roles(session):
    asyncio.run(session.add_items(AWKWARD_ITEMS))
    stored = header(session)
    assert stored.message_count == len(AWKWARD_ITEMS)
    assert stored.role_counts == {"user": 1, "assistant": 5, "system": 2}
    messages = session.storage.recent_messages(session.user_id, session.conversation_id, 100)
    assert [m.metadata["sdk_type"] for m in messages] == [
        "message", "message", "message", "message", "function_call",
        "function_call_output", "reasoning", "custom",
    ]


def test_concurrent_pops_never_hand_out_the_same_item(session):
    items = numbered(24)

    async def drain() -> list[dict]:
        taken = []
        while (item := await session.pop_item()) is not None:
            taken.append(item)
        return taken

    async def scenario():
        await session.add_items(items)
        return await asyncio.gather(*(drain() for _ in range(6)))

    results = asyncio.run(scenario())
    everything = [item["n"] for taken in results for item in taken]
    assert sorted(everything) == list(range(24)), "an item was lost or handed out twice"
    for taken in results:  # each caller saw newest-first order
        assert [item["n"] for item in taken] == sorted((item["n"] for item in taken), reverse=True)
    assert header(session).message_count == 0


def test_concurrent_batches_stay_whole_and_ordered(session):
    async def scenario():
        batches = [numbered(5, start=100 * k) for k in range(5)]
        await asyncio.gather(*(session.add_items(batch) for batch in batches))
        return batches, await session.get_items()

    batches, stored = asyncio.run(scenario())
    assert len(stored) == 25
    for start in range(0, 25, 5):
        assert stored[start : start + 5] in batches, "a batch was split or reordered"
    assert header(session).message_count == 25


def test_oversized_item_refuses_the_whole_batch(twins):
    too_big = {"role": "user", "content": "x" * 360_000}

    async def scenario():
        await twins.call("add_items", numbered(2))
        with pytest.raises(MessageTooLarge):
            await twins.dynamo.add_items(numbered(3, start=10) + [too_big] + numbered(1, start=20))
        return await twins.dynamo.get_items()

    assert asyncio.run(scenario()) == numbered(2)
    assert header(twins.dynamo).message_count == 2


def test_large_items_split_by_size_and_round_trip(session):
    # Twelve 300 KB items exceed DynamoDB's 4 MB per transaction: two transactions.
    items = [{"role": "user", "content": chr(0x41 + i) * 300_000, "i": i} for i in range(12)]

    async def scenario():
        await session.add_items(items)
        return await session.get_items(), await session.get_items(2)

    everything, newest = asyncio.run(scenario())
    assert everything == items
    assert newest == items[-2:]


def test_ttl_marks_items_and_hides_expired_ones(storage):
    expiring = DynamoDBStorage(storage.table_name, client=storage.client, ttl_days=7)
    session = DynamoDBSession("ttl", expiring)
    asyncio.run(session.add_items(numbered(3)))
    raw = expiring.client.query(
        TableName=expiring.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "U#agent:ttl"}},
    )["Items"]
    week = time.time() + 7 * 86400
    assert len(raw) == 4 and all(abs(int(item["expires_at"]["N"]) - week) < 120 for item in raw)
    oldest = min((item for item in raw if item["sk"]["S"].startswith("M#")), key=lambda i: i["sk"]["S"])
    expiring.client.update_item(
        TableName=expiring.table_name,
        Key={"pk": oldest["pk"], "sk": oldest["sk"]},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 10)}},
    )
    assert asyncio.run(session.get_items()) == numbered(3)[1:]


def test_sessions_are_apart_from_each_other_and_from_sms(storage):
    sms = ConversationManager(storage)
    sms.add_user_message("+15551234567", "hello from a phone")
    first = DynamoDBSession("+15551234567", storage)
    second = DynamoDBSession("other", storage)

    async def scenario():
        await first.add_items(numbered(2))
        await second.add_items(numbered(1, start=50))
        return await first.get_items(), await second.get_items()

    assert asyncio.run(scenario()) == (numbered(2), numbered(1, start=50))
    assert [m.content for m in sms.get_history("+15551234567", 10)] == ["hello from a phone"]


def test_session_id_must_fit_the_key_scheme(moto_storage):
    with pytest.raises(ValueError):
        DynamoDBSession("a#b", moto_storage)
    with pytest.raises(ValueError):
        DynamoDBSession("", moto_storage)
    with pytest.raises(ValueError):
        DynamoDBSession("x" * 251, moto_storage)


def test_append_many_uses_the_active_conversation_without_an_id(moto_storage):
    messages = [Message(content=f"m{i}", timestamp="2024-01-01T00:00:00.000000Z") for i in range(3)]
    stored = moto_storage.append_many("+15550001111", messages)
    active = moto_storage.get_active_conversation("+15550001111")
    assert {m.conversation_id for m in stored} == {active.conversation_id}
    assert active.message_count == 3
    recent = moto_storage.recent_messages("+15550001111", active.conversation_id, 10)
    assert [m.content for m in recent] == ["m0", "m1", "m2"]


# ----------------------------------------------------- with the real SDK


def test_runner_sends_the_first_turn_with_the_second(storage):
    set_tracing_disabled(True)
    session = DynamoDBSession("runner", storage)
    answers = iter(["purr one", "purr two"])

    async def scenario(base_url: str):
        async with AsyncOpenAI(api_key="test", base_url=base_url, max_retries=0) as client:
            agent = Agent(
                name="DadaCat",
                instructions="You are a dadaist cat.",
                model=OpenAIChatCompletionsModel(model="gpt-fake", openai_client=client),
            )
            first = await Runner.run(agent, "what is the moon?", session=session)
            second = await Runner.run(agent, "and the sun?", session=session)
            return first.final_output, second.final_output

    with FakeOpenAI(handler=lambda body: next(answers)) as fake:
        outputs = asyncio.run(scenario(fake.base_url))
    assert outputs == ("purr one", "purr two")
    assert len(fake.requests) == 2
    sent = [(m["role"], m["content"]) for m in fake.requests[1]["messages"]]
    assert sent[0] == ("system", "You are a dadaist cat.")
    roles_and_text = [(role, c if isinstance(c, str) else json.dumps(c)) for role, c in sent]
    assert roles_and_text[1] == ("user", "what is the moon?")
    assert roles_and_text[2][0] == "assistant" and "purr one" in roles_and_text[2][1]
    assert roles_and_text[3] == ("user", "and the sun?")
    stored = asyncio.run(session.get_items())
    assert [item.get("role") for item in stored] == ["user", "assistant", "user", "assistant"]
    assert header(session).message_count == 4


def test_the_sms_bot_does_not_import_the_agents_sdk():
    code = (
        "import sys, conversation, conversation.storage, app; "
        "from app import create_app; "
        "print(sorted(m for m in sys.modules if m == 'agents' or m.startswith('agents.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_example_script_runs(ddb_local, capsys):
    from scripts import agent_example

    table = f"t-example-{time.time_ns()}"
    argv = ["--endpoint-url", ddb_local.endpoint_url, "--table", table, "--fake", "--session", "ex"]
    try:
        assert agent_example.main([*argv, "what is the moon?", "and the sun?"]) == 0
        assert agent_example.main([*argv, "--show", "still there?"]) == 0
    finally:
        DynamoDBStorage(table, endpoint_url=ddb_local.endpoint_url).client.delete_table(TableName=table)
    out = capsys.readouterr().out
    # The fake answers with the number of messages it was sent: memory at work.
    assert "cat> mrrp #2:" in out and "cat> mrrp #4:" in out and "cat> mrrp #6:" in out
    assert "[session 'ex': 6 items in " in out
    assert '{"content": "what is the moon?", "role": "user"}' in out


def test_a_cancelled_write_still_finishes_before_the_cancellation_surfaces(twins):
    async def cancel_midway(target):
        task = asyncio.ensure_future(target.add_items(numbered(3)))
        await asyncio.sleep(0)  # the write is now under way in a worker thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await target.get_items()

    async def scenario():
        return await cancel_midway(twins.dynamo), await cancel_midway(twins.sqlite)

    ours, theirs = asyncio.run(scenario())
    assert ours == theirs == numbered(3)


def test_each_batch_is_sent_with_an_idempotency_token(session):
    # botocore fills ClientRequestToken once per call and reuses it on retries, so
    # DynamoDB applies a retried batch once (within its ten-minute window).
    sent = []

    def record(params, **kwargs):
        body = json.loads(params["body"])  # the request as it goes on the wire
        sent.append((len(body["TransactItems"]), body.get("ClientRequestToken")))

    session.storage.client.meta.events.register("before-call.dynamodb.TransactWriteItems", record)
    try:
        asyncio.run(session.add_items(numbered(120)))
    finally:
        session.storage.client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", record)
    assert [count for count, _ in sent] == [100, 22]
    tokens = [token for _, token in sent]
    assert all(tokens) and len(set(tokens)) == 2


# ------------------------------------------- order is insertion order, not the clock


def _clock(monkeypatch, *moments: str):
    """Make the session see these timestamps, one per add_items call."""
    import conversation.agents_session as module
    from conversation.models import parse_iso

    queue = [parse_iso(moment) for moment in moments]
    monkeypatch.setattr(module, "utc_now", lambda: queue.pop(0) if len(queue) > 1 else queue[0])


def test_adds_with_the_same_timestamp_keep_call_order(twins, monkeypatch):
    _clock(monkeypatch, "2026-01-01T00:00:00.000000Z")

    async def scenario():
        for i in range(20):
            await twins.call("add_items", [{"role": "user", "content": f"item {i}"}])
        return await twins.call("get_items")

    assert [item["content"] for item in asyncio.run(scenario())] == [f"item {i}" for i in range(20)]


def test_a_clock_stepping_back_keeps_order_and_pop_takes_the_newest(twins, monkeypatch):
    _clock(monkeypatch, "2026-01-01T00:00:00.005000Z", "2026-01-01T00:00:00.000000Z")

    async def scenario():
        await twins.call("add_items", [{"role": "user", "content": "first"}])
        await twins.call("add_items", [{"role": "assistant", "content": "second"}])
        in_order = await twins.call("get_items")
        popped = await twins.call("pop_item")
        return in_order, popped, await twins.call("get_items")

    in_order, popped, left = asyncio.run(scenario())
    assert [item["content"] for item in in_order] == ["first", "second"]
    assert popped["content"] == "second"
    assert [item["content"] for item in left] == ["first"]


def test_order_holds_across_instances_whose_clocks_disagree(storage, monkeypatch):
    # Two processes on one session: the second writer's clock is behind.
    _clock(monkeypatch, "2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z")
    first, second = DynamoDBSession("shared", storage), DynamoDBSession("shared", storage)

    async def scenario():
        await first.add_items([{"role": "user", "content": "call"}])
        await second.add_items([{"type": "function_call_output", "call_id": "c", "output": "4.2"}])
        await first.add_items([{"role": "assistant", "content": "done"}])
        return await second.get_items(), await second.get_items(limit=2)

    everything, newest = asyncio.run(scenario())
    assert [item.get("content", item.get("output")) for item in everything] == ["call", "4.2", "done"]
    assert [item.get("content", item.get("output")) for item in newest] == ["4.2", "done"]


def test_a_lone_surrogate_is_stored_and_returned_exactly(twins):
    half = {"role": "user", "content": "half an emoji: \ud83d, a whole one: \U0001f408", "\udc00": ["\udfff"]}

    async def scenario():
        await twins.call("add_items", [half, {"type": "\ud800custom"}])
        items = await twins.call("get_items")
        popped = await twins.call("pop_item")
        return items, popped

    items, popped = asyncio.run(scenario())
    assert items == [half, {"type": "\ud800custom"}]
    assert popped == {"type": "\ud800custom"}
