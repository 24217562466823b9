"""Part 4: the prompt per turn with rolling memory, and what 1,000 texts cost.

Two designs are priced at conversation lengths 10, 100 and 1,000 messages:

* **ours**: the real prompt builder (``OpenAIResponder.build_messages``) with the
  window, the running summary (``conversation.memory``: updated every 10 messages,
  at most 1,000 characters, written here by a deterministic stand-in that keeps the
  previous memory and every line the person wrote, so it is always as big as the
  bound allows) and the new text; replies normalised to GSM-7 and cut to 306
  characters (``app.sms.fit_reply``).
* **seed**: the original DadaCat design (``../shared/seeds/001``): the whole
  history sent to the model with every text and stored in one item, replies sent
  as the model wrote them.

Texts and model replies come from a fixed sample (``data/sms_sample.json``), so
the figures do not depend on a live model. Tokens are counted with a documented
approximation (no tokenizer download is needed or possible offline): one token
per 4 characters, rounded up, plus 4 per chat message and 3 to prime the answer,
the framing OpenAI documents for chat models. DynamoDB read and write units are
measured on DynamoDB Local through the real webhook (ours, summary updates
included) and the seed's own calls. Prices are in ``prices.py``.
"""

from __future__ import annotations

import json
import math
import random
import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.services import services
from conversation import DynamoDBStorage
from conversation.memory import MemoryPolicy
from conversation.models import Conversation, Message, Summary
from scripts.bench import prices
from scripts.bench.baselines import SeedLayout
from scripts.bench.common import CapacityMeter, billed_wcu

SAMPLE = Path(__file__).with_name("data") / "sms_sample.json"
LENGTHS = (10, 100, 1000)
WINDOW = 20
WINDOW_CHARS = 6000
UPDATE_EVERY = 10
SUMMARY_CHARS = 1000
REPLY_MAX_CHARS = 306
DYNAMODB_TURNS = 6  # metered texts per design and length (the cost is the same each turn)


def load_sample() -> tuple[list[str], list[str]]:
    """Return the sample's texts and model replies."""
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data["texts"], data["replies"]


def text_tokens(text: str) -> int:
    """Approximate tokens of a piece of text: one per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def chat_tokens(messages: list[dict[str, str]]) -> int:
    """Approximate prompt tokens of a chat request (4 per message of framing, 3 to prime)."""
    return sum(4 + text_tokens(m["content"]) for m in messages) + 3


def keep_lines(request: list[dict[str, str]], policy: MemoryPolicy) -> str | None:
    """A deterministic summariser: the previous memory and each line the person wrote, bounded."""
    body = request[-1]["content"]
    head, _, new = body.partition("New messages:")
    previous = head.replace("Memory so far:", "").strip()
    kept = [] if previous in ("", "(nothing yet)") else [previous]
    kept += [line[len("Person: "):] for line in new.splitlines() if line.startswith("Person: ")]
    return policy.bound(" ".join(kept))


def _responder() -> Any:
    from app.persona import OpenAIResponder, load_system_prompt

    # Never called: only its prompt builder is used (nothing listens on port 9).
    return OpenAIResponder(
        "bench", "gpt-4o-mini", base_url="http://127.0.0.1:9/v1",
        system_prompt=load_system_prompt(max_chars=REPLY_MAX_CHARS),
        history_max_messages=WINDOW, history_max_chars=WINDOW_CHARS, max_chars=REPLY_MAX_CHARS,
    )


def simulate_prompts(lengths: tuple[int, ...] = LENGTHS) -> dict[str, Any]:
    """Run a conversation to the longest length; record per-text model tokens at each length."""
    from app.sms import fit_reply

    texts, replies = load_sample()
    policy = MemoryPolicy(window_messages=WINDOW, window_chars=WINDOW_CHARS,
                          update_every=UPDATE_EVERY, max_chars=SUMMARY_CHARS)
    responder = _responder()
    system = responder.system_prompt
    history: list[Message] = []
    seed_history: list[dict[str, str]] = []
    summary: str | None = None
    covered = 0
    summary_tokens = {"input": 0, "output": 0, "updates": 0}
    rows: dict[int, dict[str, Any]] = {}
    turn = 0
    try:
        while len(history) <= max(lengths):
            text, raw = texts[turn % len(texts)], replies[turn % len(replies)]
            length = len(history)
            ours = responder.build_messages(history, text, summary=summary)
            if length in lengths:
                seed = [{"role": "system", "content": system}, *seed_history,
                        {"role": "user", "content": text}]
                done = max(1, turn)
                rows[length] = {
                    "ours_prompt": chat_tokens(ours),
                    "ours_window_messages": sum(1 for m in ours if m["role"] != "system") - 1,
                    "ours_summary_chars": len(summary or ""),
                    "seed_prompt": chat_tokens(seed),
                    # Summary updates so far, spread over the texts so far.
                    "summary_input_per_text": summary_tokens["input"] / done,
                    "summary_output_per_text": summary_tokens["output"] / done,
                    "summary_updates": summary_tokens["updates"],
                }
            answer, _ = fit_reply(raw, REPLY_MAX_CHARS)
            history += [Message(content=text, role="user"), Message(content=answer, role="assistant")]
            seed_history += [{"role": "user", "content": text}, {"role": "assistant", "content": raw}]
            header = Conversation(user_id="+1", conversation_id="c", created_at="", updated_at="",
                                  message_count=len(history),
                                  summary=Summary(text=summary, count=covered) if covered else None)
            if policy.due(header):
                fold = policy.to_fold(history[covered:], complete=True)
                if fold:
                    request = policy.request(summary, fold)
                    summary = keep_lines(request, policy)
                    covered += len(fold)
                    summary_tokens["input"] += chat_tokens(request)
                    summary_tokens["output"] += text_tokens(summary or "")
                    summary_tokens["updates"] += 1
            turn += 1
    finally:
        responder.close()
    completion = sum(text_tokens(r) for r in replies) / len(replies)
    return {"rows": {str(k): v for k, v in sorted(rows.items())}, "completion_per_text": completion}


def segment_distribution() -> dict[str, Any]:
    """Count the sample replies' segments and encodings as the model wrote them and as we send them."""
    from app.sms import count_segments, fit_reply

    texts, replies = load_sample()
    before = [count_segments(r) for r in replies]
    after = [count_segments(fit_reply(r, REPLY_MAX_CHARS)[0]) for r in replies]

    def histogram(segments: list[Any]) -> dict[str, int]:
        counts = Counter(min(s.count, 5) for s in segments)
        return {("5+" if k == 5 else str(k)): counts.get(k, 0) for k in range(1, 6)}

    return {
        "replies": len(replies),
        "before": histogram(before),
        "after": histogram(after),
        "ucs2_before": sum(s.encoding == "UCS-2" for s in before),
        "ucs2_after": sum(s.encoding == "UCS-2" for s in after),
        "segments_before": sum(s.count for s in before) / len(replies),
        "segments_after": sum(s.count for s in after) / len(replies),
        "inbound_segments": sum(count_segments(t).count for t in texts) / len(texts),
    }


class SampleModel:
    """Answers with the sample's replies in turn, and writes summaries with ``keep_lines``."""

    def __init__(self, replies: list[str], policy: MemoryPolicy) -> None:
        self.replies = replies
        self.policy = policy
        self.turn = 0

    def reply(self, history: Any, text: str, **options: Any) -> Any:
        """Return the next sample reply, as the model wrote it."""
        from app.persona import Reply

        del history, text, options
        self.turn += 1
        return Reply(text=self.replies[self.turn % len(self.replies)], model="bench-sample")

    def summarise(self, messages: list[dict[str, str]], **options: Any) -> tuple[str | None, int]:
        """Return the deterministic summary."""
        del options
        return keep_lines(messages, self.policy), 0


def measure_dynamodb(
    endpoint_url: str, lengths: tuple[int, ...], log: Callable[[str], None]
) -> dict[str, Any]:
    """Measure request units per text for ours (through the webhook) and the seed, at each length."""
    from twilio.request_validator import RequestValidator

    from app import create_app
    from app.sms import fit_reply
    from scripts.bench.bench_storage import OurStore, make_client
    from scripts.bench.bench_webhook import TOKEN, signed_post

    texts, replies = load_sample()
    policy = MemoryPolicy(window_messages=WINDOW, window_chars=WINDOW_CHARS,
                          update_every=UPDATE_EVERY, max_chars=SUMMARY_CHARS)
    meter = CapacityMeter()
    client = make_client(endpoint_url, meter)
    bulk = make_client(endpoint_url)
    suffix = secrets.token_hex(3)
    storage = DynamoDBStorage(f"bench-cost-{suffix}", client=client)
    ours = OurStore(client, storage.table_name, bulk)
    ours.create_table()
    seed = SeedLayout(client, f"bench-cost-seed-{suffix}")
    seed.create_table()
    model = SampleModel(replies, policy)
    app = create_app({
        "TWILIO_AUTH_TOKEN": TOKEN,
        "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0, "DAILY_MODEL_CALL_BUDGET": 0,
        "DAILY_TOKEN_BUDGET": 0, "LOG_LEVEL": "WARNING", "HISTORY_MAX_MESSAGES": WINDOW,
        "HISTORY_MAX_CHARS": WINDOW_CHARS, "MEMORY_UPDATE_EVERY": UPDATE_EVERY,
        "MEMORY_SUMMARY_MAX_CHARS": SUMMARY_CHARS, "REPLY_MAX_CHARS": REPLY_MAX_CHARS,
    }, storage=storage, responder=model, offline_responder=model)
    keeper = services(app).memory
    web = app.test_client()
    validator = RequestValidator(TOKEN)
    rng = random.Random(16)
    results: dict[str, Any] = {}
    for length in lengths:
        conversation = []
        for index in range(length):
            if index % 2 == 0:
                conversation.append(("user", texts[(index // 2) % len(texts)]))
            else:
                raw = replies[(index // 2) % len(replies)]
                conversation.append(("assistant", raw))
        number = f"+1777{length:07d}{rng.randint(0, 9)}"
        ours.prefill(number, [(r, fit_reply(c, REPLY_MAX_CHARS)[0] if r == "assistant" else c)
                              for r, c in conversation])
        cid = storage.get_user(number).active_conversation_id
        while keeper.update(number, cid) == "updated":
            pass  # bring the summary up to date before measuring (not metered)
        with meter.measure() as usage:
            for turn in range(DYNAMODB_TURNS):
                signed_post(web, validator, number, texts[turn % len(texts)])
                keeper.wait(60)
        ours_wru = billed_wcu(usage, bulk) / DYNAMODB_TURNS
        ours_row = {"rru": usage.rcu / DYNAMODB_TURNS, "wru": ours_wru,
                    "requests": usage.requests / DYNAMODB_TURNS}
        seed_number = number + "0"
        seed.prefill(seed_number, conversation)
        with meter.measure() as usage:
            for turn in range(DYNAMODB_TURNS):
                seed.turn(seed_number, texts[turn % len(texts)], replies[turn % len(replies)], "SM")
        seed_row = {"rru": usage.rcu / DYNAMODB_TURNS, "wru": usage.wcu / DYNAMODB_TURNS,
                    "requests": usage.requests / DYNAMODB_TURNS}
        results[str(length)] = {"ours": ours_row, "seed": seed_row}
        log(f"  {length} messages: ours {ours_row['rru']:.1f} RRU {ours_row['wru']:.1f} WRU, "
            f"seed {seed_row['rru']:.1f} RRU {seed_row['wru']:.1f} WRU per text")
    keeper.close()
    return results


def price(row: dict[str, float]) -> dict[str, float]:
    """Return the dollars per 1,000 texts of one design at one length."""
    sms = 1000 * (row["segments_in"] * prices.SMS_INBOUND_PER_SEGMENT
                  + row["segments_out"] * prices.SMS_OUTBOUND_PER_SEGMENT)
    model = 1000 * (row["input_tokens"] * prices.MODEL_INPUT_PER_TOKEN
                    + row["output_tokens"] * prices.MODEL_OUTPUT_PER_TOKEN)
    dynamodb = 1000 * (row["rru"] * prices.DYNAMODB_PER_RRU + row["wru"] * prices.DYNAMODB_PER_WRU)
    return {"sms": sms, "model": model, "dynamodb": dynamodb, "total": sms + model + dynamodb}


def run(
    endpoint_url: str, *, lengths: tuple[int, ...] = LENGTHS, log: Callable[[str], None]
) -> dict[str, Any]:
    """Compute the prompt sizes, the segment distribution, the request units and the cost table."""
    log("  prompt tokens per turn (simulated conversation, real prompt builder)")
    prompts = simulate_prompts(lengths)
    segments = segment_distribution()
    log("  DynamoDB request units per text (DynamoDB Local)")
    units = measure_dynamodb(endpoint_url, lengths, log)
    table = []
    for length in lengths:
        p = prompts["rows"][str(length)]
        for design in ("ours", "seed"):
            row = {
                "design": design,
                "length": length,
                "segments_in": segments["inbound_segments"],
                "segments_out": segments["segments_after" if design == "ours" else "segments_before"],
                "input_tokens": p["ours_prompt"] + p["summary_input_per_text"] if design == "ours"
                else p["seed_prompt"],
                "output_tokens": prompts["completion_per_text"]
                + (p["summary_output_per_text"] if design == "ours" else 0),
                "rru": units[str(length)][design]["rru"],
                "wru": units[str(length)][design]["wru"],
            }
            row["cost"] = price(row)
            table.append(row)
    return {"prompts": prompts, "segments": segments, "units": units, "table": table,
            "prices": prices.describe(), "sources": prices.SOURCES}


def cost_section(cost: dict[str, Any], *, level: str = "##") -> list[str]:
    """Return the markdown of the memory and cost part (also copied into the README)."""
    out = [f"{level} Memory and cost per 1,000 texts", ""]
    add = out.append
    add("Prompt tokens of one reply request when the text lands in a conversation of this many "
        "messages (rolling memory on: window of 20 messages plus a summary of at most 1,000 "
        "characters, updated every 10 messages), against the original design that sends the "
        "whole history:")
    add("")
    add("| messages so far | ours: prompt tokens | of which window messages | summary chars | "
        "original design: prompt tokens |")
    add("|---|---|---|---|---|")
    for length, row in cost["prompts"]["rows"].items():
        add(f"| {int(length):,} | {row['ours_prompt']:,} | {row['ours_window_messages']} | "
            f"{row['ours_summary_chars']:,} | {row['seed_prompt']:,} |")
    add("")
    add("Cost of 1,000 texts, each answered in a conversation of this length (US dollars; "
        "segments and tokens are per text; summary updates are spread over the texts they follow):")
    add("")
    add("| design | messages | SMS segments in / out | model tokens in / out | DynamoDB RRU / WRU | "
        "SMS $ | model $ | DynamoDB $ | total $ |")
    add("|---|---|---|---|---|---|---|---|---|")
    for row in cost["table"]:
        c = row["cost"]
        name = "DadaCat SMS" if row["design"] == "ours" else "original design"
        add(f"| {name} | {row['length']:,} | {row['segments_in']:.2f} / {row['segments_out']:.2f} | "
            f"{row['input_tokens']:,.0f} / {row['output_tokens']:,.0f} | "
            f"{row['rru']:.1f} / {row['wru']:.1f} | "
            f"{c['sms']:.2f} | {c['model']:.2f} | {c['dynamodb']:.3f} | **{c['total']:.2f}** |")
    seg = cost["segments"]
    add("")
    add(f"Segments of the {seg['replies']} sample replies as the model wrote them and as the bot "
        f"sends them (GSM-7 normalisation, cut to 306 characters):")
    add("")
    add("| segments | 1 | 2 | 3 | 4 | 5+ | UCS-2 replies | mean |")
    add("|---|---|---|---|---|---|---|---|")
    for label, key in (("as written", "before"), ("as sent", "after")):
        hist = seg[key]
        ucs2 = seg["ucs2_before" if key == "before" else "ucs2_after"]
        mean = seg["segments_before" if key == "before" else "segments_after"]
        add(f"| {label} | " + " | ".join(str(hist[k]) for k in ("1", "2", "3", "4", "5+"))
            + f" | {ucs2} | {mean:.2f} |")
    add("")
    add(f"Prices: {cost['prices']} (`scripts/bench/prices.py`, with sources). Tokens are approximate "
        "(4 characters a token, 4 per message, 3 to prime the reply; `scripts/bench/bench_cost.py`); "
        "texts and replies are the fixed sample in `scripts/bench/data/sms_sample.json`. SMS "
        "dominates; normalisation cuts it by the ratio of mean segments above. The original design's "
        "model and DynamoDB costs grow with every message (the whole history is read, written and sent "
        "each turn), and its one item per number stops accepting writes at 400 KB. From 100 "
        "messages on, our DynamoDB figures include the summary updates and the summary itself: it is "
        "kept on the conversation header, which every message's transaction rewrites, so the header "
        "takes one more 1 KB write unit per write.")
    add("")
    return out
