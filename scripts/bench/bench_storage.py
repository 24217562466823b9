"""Part 1: storage cost of one SMS turn as the conversation grows, ours against two baselines.

A turn is what the webhook asks of storage for one text: record the texter's message
(with its MessageSid), load the context window (the newest 20 messages) and record
DadaCat's reply linked to the text. Each figure is the median over ``repeats`` turns,
each on its own conversation pre-filled to the given length.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import boto3
from botocore.config import Config

from conversation import ConversationManager, DynamoDBStorage
from conversation.dynamodb import codec, keys  # the real layout, for pre-filling
from conversation.models import Message, isoformat, utc_now
from scripts.bench.baselines import ItemTooLarge, LangChainLayout, SeedLayout, storable_limit
from scripts.bench.common import (
    REPLY_CHARS,
    USER_CHARS,
    CapacityMeter,
    Stopwatch,
    billed_wcu,
    median,
    sms_text,
)

WINDOW = 20
LAYOUTS = ("ours", "seed", "langchain")


def make_client(endpoint_url: str, meter: CapacityMeter | None = None) -> Any:
    """Return a DynamoDB client for DynamoDB Local, metered when a meter is given."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32),
    )
    return meter.attach(client) if meter else client


def conversation_texts(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Return ``count`` alternating (role, content) messages of realistic SMS sizes."""
    pool_user = [sms_text(rng, USER_CHARS) for _ in range(64)]
    pool_reply = [sms_text(rng, REPLY_CHARS) for _ in range(64)]
    return [
        ("user", pool_user[i % 64]) if i % 2 == 0 else ("assistant", pool_reply[i % 64])
        for i in range(count)
    ]


class OurStore:
    """Our store, driven through ConversationManager exactly as the webhook drives it."""

    name = "ours"

    def __init__(self, client: Any, table: str, bulk_client: Any) -> None:
        self.storage = DynamoDBStorage(table, client=client)
        self.manager = ConversationManager(self.storage)
        self.bulk = bulk_client  # unmetered, for pre-filling
        self.table = table

    def create_table(self) -> None:
        """Create the table with its index."""
        self.storage.create_table()

    def turn(self, user_id: str, text: str, reply: str, sid: str) -> list[Message]:
        """Record the text, load the window of the text's conversation, record the reply linked to it."""
        recorded = self.manager.record_user_message(user_id, text, message_id=sid)
        history = self.manager.get_history(
            user_id, limit=WINDOW, conversation_id=recorded.message.conversation_id
        )
        self.manager.record_assistant_message(user_id, reply, reply_to=recorded.message)
        return history

    def seed_turn(self, manager: ConversationManager, user_id: str, text: str, reply: str) -> list[Message]:
        """The seed API's turn: add the text, get the conversation (window), add the reply."""
        manager.add_user_message(user_id, text)
        conversation = manager.get_or_create_conversation(user_id, history_limit=WINDOW)
        manager.add_assistant_message(user_id, reply)
        return conversation.messages

    def prefill(self, user_id: str, texts: list[tuple[str, str]]) -> None:
        """Write a conversation through the real item layout with batched writes.

        Writes the very items ``append`` writes (message, MessageSid marker, reply
        at ``<parent>#R``) and adds the counts to the header, but in BatchWriteItem
        requests instead of one transaction per message, so 5,000 messages take
        seconds, not minutes. ``check_prefill`` compares it with a manager-built one.
        """
        storage = self.storage
        cid = storage.start_conversation(user_id)
        start = utc_now() - timedelta(seconds=len(texts) + 60)
        items: list[dict[str, Any]] = []
        parent_position = ""
        parent_id = None
        counts = {"user": 0, "assistant": 0}
        for index, (role, content) in enumerate(texts):
            moment = isoformat(start + timedelta(seconds=index))
            if role == "user":
                message = Message(content=content, role="user", timestamp=moment,
                                  message_id="SM" + uuid.uuid4().hex)
                position = keys.new_position(moment)
                sk = keys.message_sk(cid, position)
                items.append({**codec.message_item(user_id, message, sk), "marked": {"BOOL": True}})
                items.append({**keys.key(user_id, keys.marker_sk(message.message_id)), "msg_sk": {"S": sk}})
                parent_position, parent_id = position, message.message_id
            else:
                message = Message(content=content, role="assistant", timestamp=moment, reply_to=parent_id)
                sk = keys.message_sk(cid, keys.reply_position(parent_position))
                items.append(codec.message_item(user_id, message, sk))
            counts[role] += 1
        batches = [items[i : i + 25] for i in range(0, len(items), 25)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self._write_batch, batches))
        last_role, last_content = texts[-1]
        self.bulk.update_item(
            TableName=self.table,
            Key=keys.key(user_id, keys.conversation_sk(cid)),
            UpdateExpression="SET last_message_at = :ts, preview = :p, last_role = :r "
            "ADD message_count :n, user_count :u, assistant_count :a",
            ExpressionAttributeValues={
                ":ts": {"S": isoformat(start + timedelta(seconds=len(texts) - 1))},
                ":p": {"S": last_content[:120]},
                ":r": {"S": last_role},
                ":n": {"N": str(len(texts))},
                ":u": {"N": str(counts["user"])},
                ":a": {"N": str(counts["assistant"])},
            },
        )

    def _write_batch(self, batch: list[dict[str, Any]]) -> None:
        request = {self.table: [{"PutRequest": {"Item": item}} for item in batch]}
        while request:
            response = self.bulk.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}


def check_prefill(ours: OurStore, texts: list[tuple[str, str]]) -> None:
    """Check that a pre-filled conversation reads back like a manager-built one."""
    fast, slow = "+15550000001", "+15550000002"
    ours.prefill(fast, texts)
    for index in range(0, len(texts), 2):
        recorded = ours.manager.record_user_message(slow, texts[index][1], message_id=f"SMchk{index}")
        ours.manager.record_assistant_message(slow, texts[index + 1][1], reply_to=recorded.message)
    a = ours.manager.get_history(fast, limit=WINDOW)
    b = ours.manager.get_history(slow, limit=WINDOW)
    assert [(m.role, m.content) for m in a] == [(m.role, m.content) for m in b], "pre-fill differs"
    assert ours.manager.get_message_count(fast) == ours.manager.get_message_count(slow) == len(texts)
    reply = ours.manager.get_reply(fast, a[-2])
    assert reply is not None and reply.content == a[-1].content, "pre-filled reply link broken"


def run(
    endpoint_url: str, *, sizes: tuple[int, ...], repeats: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Measure every layout at every history length; return the results as plain data."""
    rng = random.Random(9)
    meter = CapacityMeter()
    client = make_client(endpoint_url, meter)
    bulk = make_client(endpoint_url)
    suffix = secrets.token_hex(3)
    layouts = {
        "ours": OurStore(client, f"bench-ours-{suffix}", bulk),
        "seed": SeedLayout(client, f"bench-seed-{suffix}"),
        "langchain": LangChainLayout(client, f"bench-lc-{suffix}"),
    }
    for layout in layouts.values():
        layout.create_table()
    top = max(sizes)
    texts = conversation_texts(rng, top + 2)
    check_prefill(layouts["ours"], texts[:40])
    turn_text = sms_text(rng, USER_CHARS)
    turn_reply = sms_text(rng, REPLY_CHARS)

    # One untimed turn per layout warms connections and the JVM's code paths.
    for name, layout in layouts.items():
        layout.prefill(f"+1555900{LAYOUTS.index(name)}000", texts[:10])
        for _ in range(3):
            layout.turn(f"+1555900{LAYOUTS.index(name)}000", turn_text, turn_reply, "SM" + uuid.uuid4().hex)

    results: dict[str, Any] = {"sizes": list(sizes), "repeats": repeats, "window": WINDOW,
                               "user_chars": USER_CHARS, "reply_chars": REPLY_CHARS, "layouts": {}}
    for name, layout in layouts.items():
        per_size: dict[str, Any] = {}
        for size in sizes:
            samples: list[dict[str, Any]] = []
            failure = None
            for repeat in range(repeats):
                user_id = f"+1{LAYOUTS.index(name) + 2}{size:05d}{repeat:04d}"
                try:
                    layout.prefill(user_id, texts[:size])
                except ItemTooLarge:
                    failure = "prefill"
                    break
                sid = "SM" + uuid.uuid4().hex
                try:
                    with meter.measure() as usage, Stopwatch() as watch:
                        context = layout.turn(user_id, turn_text, turn_reply, sid)
                except ItemTooLarge:
                    failure = "turn"
                    break
                assert len(context) >= min(size, WINDOW), f"{name}: context too short"
                samples.append({"requests": usage.requests, "rcu": usage.rcu, "wcu": usage.wcu,
                                "wcu_billed": billed_wcu(usage, bulk),
                                "write_bytes": usage.write_bytes, "ms": watch.seconds * 1000,
                                "calls": dict(usage.calls)})
            if failure:
                per_size[str(size)] = {"fails": True, "failed_in": failure}
                log(f"  storage {name:9s} {size:5d} msgs: fails (item over 400 KB)")
                continue
            keys = ("requests", "rcu", "wcu", "wcu_billed", "write_bytes", "ms")
            row = {key: median([s[key] for s in samples]) for key in keys}
            row["calls"] = samples[0]["calls"]
            row["ms_all"] = [round(s["ms"], 2) for s in samples]
            per_size[str(size)] = row
            log(f"  storage {name:9s} {size:5d} msgs: {row['requests']:.0f} req, "
                f"{row['wcu_billed']:.1f} WCU (Local says {row['wcu']:.1f}), "
                f"{row['rcu']:.1f} RCU, {row['write_bytes']:.0f} B, {row['ms']:.1f} ms")
        results["layouts"][name] = per_size

    # Requests per steady turn (the manager has seen the number before; a new one reads
    # the user record once more), through our store's two APIs.
    ours = layouts["ours"]
    steady: dict[str, Any] = {}
    for api in ("webhook", "seed"):
        manager = ConversationManager(ours.storage)
        user_id = f"+1555800{('webhook', 'seed').index(api)}000"
        ours.prefill(user_id, texts[:30])
        counts = []
        for _ in range(2):
            with meter.measure() as usage:
                if api == "seed":
                    ours.seed_turn(manager, user_id, turn_text, turn_reply)
                else:
                    sid = "SM" + uuid.uuid4().hex
                    recorded = manager.record_user_message(user_id, turn_text, message_id=sid)
                    manager.get_history(user_id, WINDOW, conversation_id=recorded.message.conversation_id)
                    manager.record_assistant_message(user_id, turn_reply, reply_to=recorded.message)
            counts.append({"requests": usage.requests, "calls": dict(usage.calls)})
        steady[api] = {"first": counts[0], "steady": counts[1]}
        log(f"  storage ours, {api} API: {counts[0]['requests']} requests on a number's first turn in a "
            f"process, {counts[1]['requests']} per steady turn ({counts[1]['calls']})")
    results["steady"] = steady

    # Where each baseline's single item stops accepting writes.
    limit_texts = conversation_texts(random.Random(9), 8000)
    results["limits"] = {}
    for name in ("seed", "langchain"):
        stored = storable_limit(layouts[name], f"+1999{LAYOUTS.index(name)}", limit_texts, 8000)
        results["limits"][name] = None if stored is None else stored + 1
        log(f"  storage {name}: the write of message {results['limits'][name]} fails (400 KB)")
    for layout in layouts.values():
        bulk.delete_table(TableName=layout.table)
    return results
