"""Rate limits, budget, allow/block lists and turn leases, on moto's DynamoDB."""

from __future__ import annotations

import time

from app.limits import Limits, TurnLease, backoff_delays, normalize_number
from tests.fake_clock import FakeClock

NUMBER = "+15551230000"


def Clock(now: float = 1_767_225_600.0) -> FakeClock:  # 2026-01-01T00:00:00Z
    """A settable clock, so windows open and close when the test says."""
    return FakeClock(now)


def test_number_normalisation_and_lists(moto_storage):
    assert normalize_number(" +1 (555) 123-0000 ") == NUMBER
    blocked = Limits(moto_storage, blocked=["+1 555 123 0000"])
    assert not blocked.admits(NUMBER) and blocked.admits("+15550000000")
    allowed = Limits(moto_storage, allowed=["+15550000000"], blocked=["+15550000000"])
    assert not allowed.admits("+15550000000")  # blocking wins
    assert not allowed.admits(NUMBER)
    assert Limits(moto_storage).admits(NUMBER)


def test_minute_window_notice_once_then_silence_then_a_new_window(moto_storage):
    clock = Clock(1_767_225_605.0)
    limits = Limits(moto_storage, per_minute=2, clock=clock)
    verdicts = [limits.check_rate(NUMBER) for _ in range(4)]
    assert [(v.allowed, v.notice) for v in verdicts] == [
        (True, None), (True, None), (False, "minute"), (False, None),
    ]
    clock.now += 60
    assert limits.check_rate(NUMBER).allowed
    assert Limits(moto_storage, per_minute=2, clock=clock).check_rate("+15550000000").allowed


def test_limits_hold_across_workers(moto_storage):
    clock = Clock()
    workers = [Limits(moto_storage, per_minute=3, clock=clock) for _ in range(3)]
    verdicts = [worker.check_rate(NUMBER) for worker in workers + workers]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False, False]
    assert [v.minute_count for v in verdicts] == [1, 2, 3, 4, 5, 6]


def test_daily_cap_takes_precedence_and_resets_next_day(moto_storage):
    clock = Clock()
    limits = Limits(moto_storage, per_minute=5, per_day=2, clock=clock)
    assert limits.check_rate(NUMBER).allowed
    clock.now += 120
    assert limits.check_rate(NUMBER).allowed
    clock.now += 120
    verdict = limits.check_rate(NUMBER)
    assert (verdict.allowed, verdict.notice, verdict.day_count) == (False, "day", 3)
    clock.now += 86400
    assert limits.check_rate(NUMBER).allowed


def test_zero_means_no_limit_and_no_writes(moto_storage):
    limits = Limits(moto_storage, clock=Clock())
    assert all(limits.check_rate(NUMBER).allowed for _ in range(20))
    assert moto_storage.get_counter(NUMBER, f"rate_m_{int(Clock().time() // 60)}") == 0
    assert limits.reserve_model_call()
    assert limits.budget_status() == {"spent": False}


def test_call_budget(moto_storage):
    clock = Clock()
    limits = Limits(moto_storage, call_budget=2, clock=clock)
    assert [limits.reserve_model_call() is not None for _ in range(3)] == [True, True, False]
    assert limits.budget_status() == {"spent": True, "model_calls": 3, "model_call_budget": 2}
    clock.now += 86400
    assert limits.reserve_model_call()


def test_token_budget_is_reserved_before_the_call_and_settled_after(moto_storage):
    limits = Limits(moto_storage, token_budget=100, clock=Clock())
    first = limits.reserve_model_call(tokens=80)
    second = limits.reserve_model_call(tokens=80)  # 80 is below 100: the one call that may overshoot
    assert first and second and limits.tokens_today() == 160
    assert limits.reserve_model_call(tokens=1) is None  # reserved up to the budget: refused
    limits.settle(first, 30)
    limits.settle(second, 30)  # the unused parts go back
    assert limits.tokens_today() == 60
    third = limits.reserve_model_call(tokens=80)
    limits.settle(third, 40)
    assert limits.reserve_model_call() is None
    assert limits.budget_status()["spent"] is True and limits.tokens_today() == 100


def test_a_call_refused_by_the_call_budget_gives_its_tokens_back(moto_storage):
    limits = Limits(moto_storage, token_budget=1000, call_budget=1, clock=Clock())
    assert limits.reserve_model_call(tokens=200)
    assert limits.reserve_model_call(tokens=200) is None
    assert limits.tokens_today() == 200


def test_lease_is_exclusive_until_released(moto_storage):
    first = TurnLease(moto_storage, NUMBER, 30)
    second = TurnLease(moto_storage, NUMBER, 30)
    assert first.owner != second.owner
    assert first.try_acquire()
    assert not second.try_acquire()
    assert TurnLease(moto_storage, "+15550000000", 30).try_acquire()  # other numbers are free
    first.release()
    assert not first.held
    assert second.try_acquire()
    first.release()  # releasing a lease one does not hold changes nothing
    assert not TurnLease(moto_storage, NUMBER, 30).try_acquire()


def test_lease_of_a_dead_worker_expires(moto_storage):
    assert TurnLease(moto_storage, NUMBER, 0.2).try_acquire()
    time.sleep(0.3)
    assert TurnLease(moto_storage, NUMBER, 30).try_acquire()


def test_backoff_delays_grow_and_stay_capped():
    delays = backoff_delays(first=0.01, factor=2, cap=0.1)
    values = [next(delays) for _ in range(20)]
    assert all(0.005 <= value <= 0.15 for value in values)
    assert max(values[-5:]) > max(values[:2])
