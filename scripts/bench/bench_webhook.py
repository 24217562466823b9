"""Part 2: what the Flask webhook adds on top of the storage calls a turn must make.

``POST /sms`` goes through the real app (create_app, signature validation on,
requests signed with Twilio's RequestValidator) in-process through Flask's WSGI
test client, with an instant fake model. The floor is the bare boto3 calls of a
turn: the context Query and the two transactional writes (text + MessageSid
marker + header; reply + header), issued with prebuilt parameters. Webhook and
floor turns are interleaved in small blocks so that noise on this shared machine
hits both alike.
"""

from __future__ import annotations

import random
import secrets
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from twilio.request_validator import RequestValidator

from conversation import ConversationManager, DynamoDBStorage
from conversation.dynamodb import keys
from conversation.models import isoformat, utc_now
from scripts.bench.bench_storage import OurStore, conversation_texts, make_client
from scripts.bench.common import (
    REPLY_CHARS,
    USER_CHARS,
    CapacityMeter,
    Stopwatch,
    billed_wcu,
    median,
    percentile,
    sms_text,
)

TOKEN = "bench-auth-token-" + "0" * 15
URL = "http://localhost/sms"
TO = "+15005550006"


class InstantResponder:
    """A model that answers at once with a fixed reply of realistic length."""

    def __init__(self, text: str) -> None:
        self.text = text

    def reply(self, history: list[Any], text: str, **options: Any) -> Any:
        """Return the fixed reply (deadline, media and message id do not matter here)."""
        from app.persona import Reply

        del history, text, options
        return Reply(text=self.text, model="bench-instant")


class UnusedSender:
    """A Messages API sender for auto mode's quick path, where every reply goes out as TwiML."""

    def send(self, *, to: str, from_: str | None, body: str, status_callback: str | None) -> Any:
        """Refuse: a quick model's reply is never sent through the Messages API."""
        raise RuntimeError("the quick path sent a reply through the Messages API")

    def recent_to(self, to: str, since_epoch: float) -> list[tuple[str, str]]:
        """Return nothing (nothing was sent)."""
        return []


def build_app(storage: DynamoDBStorage, reply: str, mode: str = "sync", *, limits: bool = False) -> Any:
    """Build the real app on the given store with limits off (``limits``: the rate limits at
    their defaults) and an instant model.

    ``mode`` "auto" is the quick path of REPLY_MODE=auto: the turn runs on the reply pool and
    the webhook answers with its TwiML (the sweeper's first sweep is an hour away, so it does
    not add requests to the count).
    """
    from app import create_app

    responder = InstantResponder(reply)
    extra: dict[str, Any] = {} if limits else {"RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0}
    if mode != "sync":
        extra.update({"REPLY_MODE": mode, "RECOVERY_SECONDS": 3600})
    return create_app(
        {
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_VALIDATE_SIGNATURE": True,
            "DAILY_MODEL_CALL_BUDGET": 0,
            "DAILY_TOKEN_BUDGET": 0,
            "LOG_LEVEL": "WARNING",
            **extra,
        },
        storage=storage,
        manager=ConversationManager(storage, history_limit=20),
        responder=responder,
        offline_responder=responder,
        sender=UnusedSender() if mode != "sync" else None,
    )


def drain(app: Any) -> None:
    """Wait until the app's background turns (auto mode) and the work after its answers
    have finished their writes."""
    from app.services import services

    pipeline = services(app).text_handler.pipeline
    if pipeline is not None:
        pipeline.pool.drain(timeout=30)
    services(app).bounded.drain(timeout=30)


def metered_turn(app: Any, meter: CapacityMeter, validator: RequestValidator, number: str, text: str) -> Any:
    """Return the usage of one steady webhook turn: the number has texted this process
    before, and the writes after the answer are counted too."""
    client = app.test_client()
    signed_post(client, validator, number, text)
    drain(app)
    with meter.measure() as usage:
        signed_post(client, validator, number, text)
        drain(app)
    return usage


def has_webhook(app: Any) -> bool:
    """Return True when the app serves POST /sms."""
    return any(rule.rule == "/sms" and "POST" in (rule.methods or ()) for rule in app.url_map.iter_rules())


def signed_post(client: Any, validator: RequestValidator, number: str, body: str) -> str:
    """Post one text as Twilio would; return the reply text from the TwiML."""
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": number,
        "To": TO,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
    }
    signature = validator.compute_signature(URL, params)
    response = client.post("/sms", data=params, headers={"X-Twilio-Signature": signature})
    if response.status_code != 200:
        answer = response.get_data(as_text=True)[:200]
        raise RuntimeError(f"POST /sms answered {response.status_code}: {answer}")
    root = ET.fromstring(response.get_data())
    return "".join(root.itertext())


class Floor:
    """The bare boto3 calls of one turn, against our layout, with no app or manager."""

    def __init__(self, client: Any, table: str, storage: DynamoDBStorage) -> None:
        self.client = client
        self.table = table
        self.storage = storage
        self.cids: dict[str, str] = {}
        self.extra_reads = 0

    def prepare(self, number: str) -> None:
        """Note the number's active conversation (pre-filled beforehand, not timed)."""
        self.cids[number] = self.storage.get_user(number).active_conversation_id

    def turn(self, number: str, text: str, reply: str, *, like_webhook: bool = False) -> int:
        """Query the window, write the text with its marker, write the reply.

        ``like_webhook`` adds what else the webhook asks of DynamoDB (reads of the user
        item, if any; the opt-out check and the turn lease's Put in the text's
        transaction, the lease's Delete in the reply's), so that the difference from
        the webhook is the app's own Python time.
        """
        cid = self.cids[number]
        pk = keys.partition(number)
        header = keys.key(number, keys.conversation_sk(cid))
        user_key = keys.key(number, keys.USER_SK)
        if like_webhook:
            for _ in range(self.extra_reads):
                self.client.get_item(TableName=self.table, Key=user_key, ConsistentRead=True)
        response = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues={":pk": pk, ":p": {"S": keys.messages_prefix(cid)}},
            ScanIndexForward=False,
            Limit=20,
            ConsistentRead=True,
        )
        now = isoformat(utc_now())
        sid = "SM" + uuid.uuid4().hex
        position = keys.new_position(now)
        sk = keys.message_sk(cid, position)
        bump = {
            "Update": {
                "TableName": self.table,
                "Key": header,
                "UpdateExpression": "SET updated_at = :now, last_message_at = :now ADD message_count :one",
                "ExpressionAttributeValues": {":now": {"S": now}, ":one": {"N": "1"}},
            }
        }
        lease = keys.key(number, keys.LEASE_SK)
        guards: list[dict[str, Any]] = []
        release: list[dict[str, Any]] = []
        if like_webhook:
            not_opted_out = "attribute_not_exists(opted_out) OR opted_out = :f"
            guards = [
                {"ConditionCheck": {"TableName": self.table, "Key": user_key,
                                    "ConditionExpression": not_opted_out,
                                    "ExpressionAttributeValues": {":f": {"BOOL": False}}}},
                {"Put": {"TableName": self.table,
                         "Item": {**lease, "owner": {"S": "bench"}, "lease_until": {"N": "1"}},
                         "ConditionExpression": "attribute_not_exists(sk) OR lease_until < :now OR #o = :me",
                         "ExpressionAttributeNames": {"#o": "owner"},
                         "ExpressionAttributeValues": {":now": {"N": "2"}, ":me": {"S": "bench"}}}},
            ]
            release = [{"Delete": {"TableName": self.table, "Key": lease,
                                   "ConditionExpression": "attribute_not_exists(sk) OR #o = :me",
                                   "ExpressionAttributeNames": {"#o": "owner"},
                                   "ExpressionAttributeValues": {":me": {"S": "bench"}}}}]
        self.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(sk)",
                         "Item": {"pk": pk, "sk": {"S": sk}, "role": {"S": "user"}, "content": {"S": text},
                                  "ts": {"S": now}, "message_id": {"S": sid}}}},
                {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(sk)",
                         "Item": {**keys.key(number, keys.marker_sk(sid)), "msg_sk": {"S": sk}}}},
                bump,
                *guards,
            ]
        )
        self.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(sk)",
                         "Item": {**keys.key(number, keys.message_sk(cid, keys.reply_position(position))),
                                  "role": {"S": "assistant"},
                                  "content": {"S": reply}, "ts": {"S": now},
                                  "message_id": {"S": "msg_" + secrets.token_hex(12)},
                                  "reply_to": {"S": sid}}}},
                bump,
                *release,
            ]
        )
        return len(response.get("Items", []))


def run(endpoint_url: str, *, turns: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Time ``turns`` webhook posts and as many floor turns, interleaved."""
    rng = random.Random(2)
    text = sms_text(rng, USER_CHARS)
    reply = sms_text(rng, REPLY_CHARS)
    table = f"bench-hook-{secrets.token_hex(3)}"
    plain = make_client(endpoint_url)
    storage = DynamoDBStorage(table, client=plain)
    storage.create_table()
    app = build_app(storage, reply)
    if not has_webhook(app):
        log("  webhook: POST /sms is not in the app yet; skipped")
        plain.delete_table(TableName=table)
        return {"skipped": "POST /sms was not available when the benchmark ran"}
    client = app.test_client()
    validator = RequestValidator(TOKEN)
    numbers = [f"+1555{700_000 + i:07d}" for i in range(20)]
    floor_numbers = [f"+1555{800_000 + i:07d}" for i in range(20)]
    # Every conversation starts past the 20-message window, written through the
    # store's real item layout (see bench_storage.OurStore.prefill).
    filler = OurStore(plain, table, plain)
    history = conversation_texts(rng, 30)
    for number in numbers + floor_numbers:
        filler.prefill(number, history)
    floor = Floor(plain, table, storage)
    for number in floor_numbers:
        floor.prepare(number)

    # REPLY_MODE=auto's quick path (the default once Messages API credentials are set), on
    # numbers of its own.
    auto_app = build_app(storage, reply, mode="auto")
    auto_client = auto_app.test_client()
    auto_numbers = [f"+1555{900_000 + i:07d}" for i in range(20)]
    for number in auto_numbers:
        filler.prefill(number, history)

    # Warm up every path (connections, JIT of DynamoDB Local, Flask's first requests).
    for i in range(2 * len(numbers)):
        answer = signed_post(client, validator, numbers[i % len(numbers)], text)
        if reply not in answer:
            raise RuntimeError(f"webhook answered {answer[:80]!r}, not the fake model's reply")
        answer = signed_post(auto_client, validator, auto_numbers[i % len(auto_numbers)], text)
        if reply not in answer:
            raise RuntimeError(f"auto mode answered {answer[:80]!r}, not the fake model's reply in TwiML")
        floor.turn(floor_numbers[i % len(floor_numbers)], text, reply)
    drain(auto_app)

    # What one steady webhook turn asks of DynamoDB, counted on a metered copy of the app
    # (and once more with the rate limits on, at their defaults).
    meter = CapacityMeter()
    metered_storage = DynamoDBStorage(table, client=make_client(endpoint_url, meter))
    usage = metered_turn(build_app(metered_storage, reply, limits=True), meter, validator, numbers[2], text)
    limits_calls = dict(usage.calls)
    usage = metered_turn(build_app(metered_storage, reply), meter, validator, numbers[1], text)
    webhook_calls = dict(usage.calls)
    # What the turn is billed on AWS (docs/scaling.md prices it): transactions by AWS's rules.
    webhook_capacity = {"rcu": usage.rcu, "wcu": billed_wcu(usage, plain)}
    metered_auto = build_app(metered_storage, reply, mode="auto")
    metered_auto_client = metered_auto.test_client()
    signed_post(metered_auto_client, validator, auto_numbers[0], text)
    drain(metered_auto)
    with meter.measure() as usage:
        signed_post(metered_auto_client, validator, auto_numbers[1], text)
        drain(metered_auto)  # the turn's last writes come after the webhook's answer
    auto_calls = dict(usage.calls)
    metered_floor = Floor(make_client(endpoint_url, meter), table, storage)
    metered_floor.cids = floor.cids
    with meter.measure() as usage:
        metered_floor.turn(floor_numbers[0], text, reply)
    floor_calls = dict(usage.calls)

    floor.extra_reads = webhook_calls.get("GetItem", 0)
    with meter.measure() as usage:
        metered_floor.extra_reads = floor.extra_reads
        metered_floor.turn(floor_numbers[1], text, reply, like_webhook=True)
    same_calls = dict(usage.calls)

    hook_ms: list[float] = []
    auto_ms: list[float] = []
    floor_ms: list[float] = []
    same_ms: list[float] = []
    block = 10
    for start in range(0, turns, block):
        for i in range(start, min(turns, start + block)):
            with Stopwatch() as watch:
                signed_post(client, validator, numbers[i % len(numbers)], text)
            hook_ms.append(watch.seconds * 1000)
        for i in range(start, min(turns, start + block)):
            with Stopwatch() as watch:
                signed_post(auto_client, validator, auto_numbers[i % len(auto_numbers)], text)
            auto_ms.append(watch.seconds * 1000)
            drain(auto_app)  # not timed: the writes after the answer would overlap the next turn
        for i in range(start, min(turns, start + block)):
            with Stopwatch() as watch:
                floor.turn(floor_numbers[i % len(floor_numbers)], text, reply)
            floor_ms.append(watch.seconds * 1000)
        for i in range(start, min(turns, start + block)):
            with Stopwatch() as watch:
                floor.turn(floor_numbers[i % len(floor_numbers)], text, reply, like_webhook=True)
            same_ms.append(watch.seconds * 1000)
    plain.delete_table(TableName=table)

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50": median(values), "p95": percentile(values, 95), "p99": percentile(values, 99),
                "n": len(values)}

    result = {
        "turns": turns,
        "webhook": summary(hook_ms),
        "floor": summary(floor_ms),
        "same": summary(same_ms),
        "auto": summary(auto_ms),
        "auto_calls": auto_calls,
        "webhook_calls": webhook_calls,
        "limits_calls": limits_calls,
        "webhook_capacity": webhook_capacity,
        "floor_calls": floor_calls,
        "same_calls": same_calls,
    }
    result["ratio_p50"] = result["webhook"]["p50"] / result["floor"]["p50"]
    result["ratio_same_p50"] = result["webhook"]["p50"] / result["same"]["p50"]
    result["ratio_auto_p50"] = result["auto"]["p50"] / result["floor"]["p50"]
    log(f"  webhook p50 {result['webhook']['p50']:.1f} ms, floor p50 {result['floor']['p50']:.1f} ms, "
        f"ratio {result['ratio_p50']:.2f}; same requests bare {result['same']['p50']:.1f} ms "
        f"(ratio {result['ratio_same_p50']:.2f}); webhook calls per steady turn {webhook_calls} (rate limits "
        f"on: {limits_calls}); auto quick path p50 "
        f"{result['auto']['p50']:.1f} ms (ratio {result['ratio_auto_p50']:.2f}), calls {auto_calls}")
    return result
