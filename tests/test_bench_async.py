"""Part 5 of ``make bench`` (replies that outlive the webhook): its bookkeeping, and a small real run.

The small run is the real script at CI size (a few texters, a short model latency): it checks
that the report's fields say what happened, not how fast it was (no timing asserts).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench import report_async
from scripts.bench.bench_async import MODEL_REPLY, Outbox, Sampler, Turn, count_model_calls, summarise

ROOT = Path(__file__).resolve().parent.parent


def loop_figures(turns: list[Turn], outbox_counts: dict[str, int], hung: int = 0) -> dict:
    return summarise(turns, outbox_counts, hung=hung, start=0.0, stop_at=10.0, texters=2, latency=1.0,
                     duration=10.0, sampler=Sampler(server=None), cpu_seconds=0.0, model_calls=0)  # type: ignore[arg-type]


def test_lost_and_doubled_texts_are_counted_per_number_from_what_was_sent():
    turns = [
        Turn("+1", 0.0, 0.01, 200, "rest", 1.5, MODEL_REPLY),
        Turn("+1", 1.6, 0.01, 200, "rest", 3.0, MODEL_REPLY),
        Turn("+2", 0.5, 0.01, 200, "twiml", 1.6, MODEL_REPLY),
        Turn("+2", 1.7, 0.02, 200, "none"),
    ]
    # +1 got three messages for two texts (one doubled); +2 one TwiML reply and nothing for its second.
    figures = loop_figures(turns, {"+1": 3, "+2": 0})
    assert (figures["texts"], figures["answered"], figures["via_rest"], figures["via_twiml"]) == (4, 3, 2, 1)
    assert (figures["lost"], figures["doubled"], figures["unanswered"]) == (1, 1, 1)
    # A texter still waiting when the run ended is a lost text too.
    assert loop_figures(turns[:3], {"+1": 2}, hung=1)["lost"] == 1


def test_throughput_counts_replies_after_the_first_latency_and_offline_replies_are_named():
    turns = [Turn("+1", t, 0.01, 200, "rest", t + 1.0, MODEL_REPLY) for t in range(11)]
    turns.append(Turn("+2", 0.0, 0.01, 200, "twiml", 0.5, "Purr... one thought at a time, human."))
    turns.append(Turn("+2", 0.5, 3.0, 200, "twiml", 3.5, "ah, cat. zing-zang-meow."))
    figures = loop_figures(turns, {"+1": 11})
    # The model's replies arriving in [L, stop] = [1, 10] count: ten of +1's (the last lands at
    # 11 s); +2's are not the model's (one lands before L, one in the window).
    assert figures["throughput"] == pytest.approx(10 / 9.0)
    assert figures["ideal"] == 2.0 and figures["efficiency"] == pytest.approx(10 / 9.0 / 2.0)
    assert figures["offline_replies"] == 2


def test_the_outbox_hands_each_texter_its_next_message():
    records: list[dict] = []
    outbox = Outbox(lambda: list(records)).start()
    try:
        assert outbox.wait_beyond("+1", 0, timeout=0.1) is None
        records += [{"to": "+2", "body": "not yours"}, {"to": "+1", "body": "yours"}]
        arrived = outbox.wait_beyond("+1", 0, timeout=5)
        assert arrived is not None and arrived[1] == "yours"
        assert outbox.count("+1") == 1 and outbox.count("+2") == 1 and outbox.total() == 2
    finally:
        outbox.stop()


def test_model_calls_are_attributed_by_the_texts_they_show_and_summaries_are_not_calls():
    requests = [
        {"messages": [{"role": "system", "content": "you are a cat"},
                      {"role": "user", "content": "burst ab-1 text 0"}]},
        {"messages": [{"role": "user", "content": "burst ab-1 text 1\nburst ab-1 text 2"}]},
        {"messages": [{"role": "user",
                       "content": "Memory so far: x\nNew messages:\nPerson: burst ab-1 text 0"}]},
        {"messages": [{"role": "user", "content": "burst ab-2 text 0"}]},
    ]
    assert count_model_calls(requests, "ab-1") == 2
    assert count_model_calls(requests, "ab-2") == 1


def test_the_section_marks_targets_met_and_missed():
    loop = {"kind": "closed loop", "mode": "async", "texters": 200, "latency": 20.0, "duration": 80.0,
            "texts": 700, "answered": 700, "via_twiml": 0, "via_rest": 700, "unanswered": 0, "lost": 0,
            "doubled": 0, "offline_replies": 0, "not_200": 0, "model_calls": 700, "throughput": 9.5,
            "ideal": 10.0, "efficiency": 0.95, "webhook_p50_ms": 30.0, "webhook_p99_ms": 1500.0,
            "webhook_max_s": 2.0, "webhook_over_15s": 0, "reply_p50_s": 20.1, "reply_p99_s": 21.0,
            "rss_mb": [90.0, 95.5], "app_cpu_ms_per_turn": 40.0, "wall_s": 120.0,
            "settings": {"workers": "2", "threads": "32", "REPLY_MODE": "async", "REPLY_WORKERS": "200"}}
    rows = {row[0]: row for row in report_async.targets({"scenarios": [loop]})}
    assert rows["async, N=200, L=20 s: throughput"][3] is True
    assert rows["async, N=200, L=20 s: every text answered once"][3] is True
    assert rows["async, N=200, L=20 s: webhook answer time p50 / p99"][3] is False  # p99 1.5 s > 1 s
    text = "\n".join(report_async.section({"scenarios": [loop]}))
    assert "| async | 200 | 20 | 9.5 | 10.0 | 95% | 700 | 0 / 700 | 0 | 0 | 0 | 30 | 1500 |" in text
    assert "`REPLY_WORKERS=200`" in text


def test_the_counting_proxy_passes_requests_through_and_counts_them_by_operation(local_storage):
    import boto3

    from scripts.bench.ddb_counter import CountingProxy

    with CountingProxy(local_storage.client.meta.endpoint_url) as counter:
        client = boto3.client("dynamodb", endpoint_url=counter.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        table = local_storage.table_name
        client.put_item(TableName=table, Item={"pk": {"S": "WORK#3"}, "sk": {"S": "+1555"}})
        item = client.get_item(TableName=table, Key={"pk": {"S": "WORK#3"}, "sk": {"S": "+1555"}})
        assert item["Item"]["sk"] == {"S": "+1555"}  # passed through, answered by DynamoDB Local
        client.get_item(TableName=table, Key={"pk": {"S": "USER#x"}, "sk": {"S": "x"}})
        client.close()
        assert counter.counts() == {"PutItem (work item)": 1, "GetItem (work item)": 1, "GetItem": 1}


@pytest.mark.slow
def test_a_small_run_of_part_5_reports_what_happened(tmp_path):
    out, raw = tmp_path / "benchmarks.md", tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--parts", "async", "--async-scenarios", "async,bursts-auto",
         "--async-texters", "3", "--async-latency", "1", "--async-duration", "5", "--burst-numbers", "2",
         "--burst-latency", "2", "--out", str(out), "--json", str(raw)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scenarios = {s["name"]: s for s in json.loads(raw.read_text())["async"]["scenarios"]}

    loop = scenarios["async"]
    assert loop["texts"] > 0 and loop["answered"] == loop["texts"] == loop["via_rest"]
    assert loop["via_twiml"] == 0  # async: every webhook answers <Response/>
    assert (loop["lost"], loop["doubled"], loop["unanswered"], loop["not_200"]) == (0, 0, 0, 0)
    assert loop["offline_replies"] == 0 and loop["model_calls"] == loop["texts"]
    assert len(loop["rss_mb"]) == 2 and loop["settings"]["REPLY_MODE"] == "async"

    burst = scenarios["bursts-auto"]
    totals = burst["totals"]
    assert totals["texts_in_a_model_request"] == 2 * 5
    assert 2 <= totals["model_calls"] < 2 * 5  # the point: a burst is read together
    replies = totals["replies_twiml"] + totals["replies_rest"]
    assert totals["model_replies"] == replies == totals["model_calls"]
    assert totals["other_replies"] == 0 and totals["webhooks_200"] == 2 * 5

    text = out.read_text()
    assert report_async.START in text and report_async.END in text
    assert "## 5. Replies that outlive the webhook" in text and "| bursts-auto | 2 x 5 |" in text
    assert "part 5" in result.stdout
