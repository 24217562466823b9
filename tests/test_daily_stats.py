"""Per-day aggregates: kept at write time on both backends, fed by the webhook, read without a Scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app import create_app
from app.services import services
from conversation.daily_stats import FIGURES, DailyStats, DayStats, latency_bucket
from tests.faults import CallRecorder
from tests.twilio_helpers import AUTH_TOKEN, Texter

NUMBER = "+15557650001"
OTHER = "+15557650002"


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_figures_added_on_every_shard_sum_up_per_day(storage):
    clock = Clock()
    shards = iter(range(100))
    stats = DailyStats(storage, clock=clock, pick=lambda n: next(shards) % n)
    for _ in range(5):  # one write per shard, and one shard twice
        stats.add({"texts": 1, "replies": 1, "tokens": 10, "segments": 2}, latency_ms=300)
    clock.now += timedelta(days=1)
    stats.add({"texts": 2, "fallbacks": 1, "replies": 2})
    days = stats.read(3)
    assert [d.day.isoformat() for d in days] == ["2026-03-09", "2026-03-10", "2026-03-11"]
    assert days[0].figures == dict.fromkeys(FIGURES, 0)
    assert days[1]["texts"] == 5 and days[1]["tokens"] == 50 and days[1]["segments"] == 10
    assert sum(days[1].latency) == 5 and days[1].latency[latency_bucket(300)] == 5
    assert days[2]["texts"] == 2 and days[2].fallback_rate == 0.5 and sum(days[2].latency) == 0


def test_reading_a_period_is_batch_gets_never_a_scan(moto_storage):
    stats = DailyStats(moto_storage, clock=Clock())
    stats.add({"texts": 1})
    with CallRecorder(moto_storage.client) as recorder:
        assert len(stats.read(90)) == 90
    # 90 days x 4 shards = 360 keys, at most 100 per BatchGetItem.
    assert recorder.operations == ["BatchGetItem"] * 4


def test_unknown_figures_are_refused_and_nothing_is_written(moto_storage):
    stats = DailyStats(moto_storage, clock=Clock())
    with pytest.raises(ValueError, match="unknown figures: textz"):
        stats.add({"textz": 1})
    assert stats.read(1)[0]["texts"] == 0


def test_first_text_today_is_true_once_per_number_and_day(storage):
    clock = Clock()
    stats = DailyStats(storage, clock=clock)
    assert stats.first_text_today(NUMBER) is True
    assert stats.first_text_today(NUMBER) is False
    assert stats.first_text_today(OTHER) is True
    clock.now += timedelta(days=1)
    assert stats.first_text_today(NUMBER) is True


def test_latency_percentiles_come_from_the_buckets():
    day = DayStats(datetime(2026, 1, 1).date())
    assert day.latency_percentile(0.5) is None and day.fallback_rate is None
    for latency in [90] * 50 + [700] * 40 + [4000] * 9 + [60000]:
        day.latency[latency_bucket(latency)] += 1
    assert day.latency_percentile(0.5) == 100
    assert day.latency_percentile(0.9) == 750
    assert day.latency_percentile(0.99) == 5000
    assert day.latency_percentile(1.0) == 24000  # past the last bound: an upper estimate


def build_app(storage, **overrides):
    from tests.test_webhook import ScriptedResponder

    return create_app({
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "RATE_LIMIT_PER_MINUTE": 0,
        **overrides,
    }, storage=storage, responder=ScriptedResponder())


@pytest.mark.parametrize("per_day", [0, 200], ids=["no-day-limit", "day-limit"])
def test_the_webhook_adds_each_turn_to_todays_figures(moto_storage, per_day):
    app = build_app(moto_storage, RATE_LIMIT_PER_DAY=per_day)
    alice = Texter(app.test_client(), number=NUMBER)
    bob = Texter(app.test_client(), number=OTHER)
    alice.text("hello cat", sid="SM" + "a" * 32)
    alice.text("hello cat", sid="SM" + "a" * 32)  # Twilio's retry of the same text
    alice.text("again")
    bob.text("hi", sid="SM" + "b" * 32)
    bob.text("reset")
    bob.status("SM" + "b" * 32, "undelivered", ErrorCode="30007")
    bob.status("SM" + "b" * 32, "failed")  # still one failure
    assert services(app).bounded.drain()  # figures are added after each answer
    (today,) = services(app).daily_stats.read(1)
    assert today["texts"] == 4
    assert today["replies"] == 4  # three model replies and one reset confirmation
    assert today["active_numbers"] == 2
    assert today["tokens"] == 3 * 7 and today["model_calls"] == 3
    assert today["segments"] >= 4
    assert today["delivery_failures"] == 1
    assert sum(today.latency) == 3
