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


class Timers:
    """Stands in for the flush timer: records what was scheduled; tests run it."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, object]] = []

    def __call__(self, seconds, work) -> None:
        self.scheduled.append((seconds, work))

    def fire(self) -> None:
        (_, work), *self.scheduled = self.scheduled
        work()


def test_deferred_figures_are_written_once_per_flush_not_once_per_turn(moto_storage):
    timers = Timers()
    clock = Clock()
    stats = DailyStats(moto_storage, clock=clock, flush_seconds=7, schedule=timers)
    assert stats.read(1)[0]["texts"] == 0  # the table is known to be there
    with CallRecorder(moto_storage.client) as recorder:
        for _ in range(50):
            stats.defer({"texts": 1, "replies": 1, "tokens": 3}, latency_ms=300)
        assert recorder.operations == []  # nothing written per turn
        assert [seconds for seconds, _ in timers.scheduled] == [7]  # one flush scheduled
        timers.fire()
    assert recorder.operations == ["UpdateItem"]
    (today,) = stats.read(1)
    assert today["texts"] == 50 and today["tokens"] == 150 and sum(today.latency) == 50
    # The next figures schedule the next flush; a read writes them first.
    stats.defer({"texts": 2})
    assert len(timers.scheduled) == 1
    assert stats.read(1)[0]["texts"] == 52


def test_deferred_figures_a_failed_flush_could_not_write_are_kept(local_storage):
    from conversation import StorageError
    from tests.faults import INTERNAL, FaultInjector

    timers = Timers()
    stats = DailyStats(local_storage, clock=Clock(), schedule=timers)
    stats.defer({"texts": 3})
    # (On DynamoDB Local: under moto the injected error would come after the write.)
    with FaultInjector(local_storage.client, INTERNAL, times=10, operations=("UpdateItem",)):
        with pytest.raises(StorageError):
            stats.flush()
    assert len(timers.scheduled) == 2  # the first one, and another try
    stats.defer({"texts": 1})
    assert stats.read(1)[0]["texts"] == 4


def test_deferred_figures_are_written_when_the_process_exits(local_storage, tmp_path):
    """A worker that stops (gunicorn's graceful exit) writes what it had not flushed yet."""
    import subprocess
    import sys

    script = tmp_path / "defer.py"
    script.write_text(
        "import sys\n"
        "from conversation import DynamoDBStorage\n"
        "from conversation.daily_stats import DailyStats\n"
        "storage = DynamoDBStorage(sys.argv[1], endpoint_url=sys.argv[2])\n"
        "stats = DailyStats(storage, flush_seconds=3600)\n"
        "stats.defer({'texts': 5, 'replies': 4}, latency_ms=120)\n"
    )
    endpoint = local_storage.client.meta.endpoint_url
    env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run([sys.executable, str(script), local_storage.table_name, endpoint], check=True, timeout=60,
                   env=env)
    (today,) = DailyStats(local_storage).read(1)
    assert today["texts"] == 5 and today["replies"] == 4 and sum(today.latency) == 1
