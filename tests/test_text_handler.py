"""The turn of one text runs as plain Python: no Flask app, no request, no Twilio form."""

from __future__ import annotations

import time

import pytest

from app.bounded import Bounded
from app.config import load_config
from app.limits import Limits
from app.persona import OfflineResponder
from app.text_handler import BUSY_LINE, RESET_CONFIRMATION, TextHandler
from app.turn import Turn
from app.twilio_form import InboundText
from conversation import ConversationManager
from conversation.clock import Clock, SystemClock
from conversation.daily_stats import DailyStats
from conversation.inmemory import MemoryStore
from tests.fake_clock import FakeClock

NUMBER = "+15550007777"


def build_handler(store: MemoryStore, clock: Clock | None = None) -> TextHandler:
    config = load_config({"TWILIO_AUTH_TOKEN": "t" * 32}, environ={}, dotenv_path=None)
    return TextHandler(
        config,
        manager=ConversationManager(store, history_limit=config.history_max_messages),
        storage=store,
        limits=Limits.from_settings(store, config),
        responder=OfflineResponder(seed=3),
        offline_responder=OfflineResponder(seed=4),
        memory=None,
        daily_stats=DailyStats(store),
        bounded=Bounded(),
        clock=clock or SystemClock(),
    )


def text(body: str, sid: str) -> InboundText:
    return InboundText(number=NUMBER, sid=sid, body=body)


def test_a_text_is_recorded_and_answered_without_flask():
    store = MemoryStore()
    handler = build_handler(store)
    turn = Turn.begin(handler.settings.reply_deadline_seconds)
    outcome = handler.handle(text("hello cat", "SM" + "1" * 32), turn)
    turn.run_after()
    assert outcome.kind == "replied" and outcome.answer and outcome.track_delivery
    history = handler.manager.get_history(NUMBER, 10)
    assert [m.role for m in history] == ["user", "assistant"]
    assert history[1].content == outcome.answer
    assert turn.deadline > time.monotonic() - 60


def test_a_repeated_sid_is_a_duplicate_and_reset_is_confirmed():
    store = MemoryStore()
    handler = build_handler(store)
    first = handler.handle(text("hello", "SM" + "2" * 32), Turn.begin(10))
    again = handler.handle(text("hello", "SM" + "2" * 32), Turn.begin(10))
    assert again.kind == "duplicate" and again.answer == first.answer
    reset = handler.handle(text("reset", "SM" + "3" * 32), Turn.begin(10))
    assert reset.kind == "reset" and reset.answer == RESET_CONFIRMATION


def test_a_number_busy_elsewhere_waits_its_share_of_the_deadline_on_the_clock():
    # Another worker holds the number's turn. The text polls for it for half its deadline
    # (5 of 10 s) and then gets the busy line; on a fake clock the waiting takes no time.
    store = MemoryStore()
    assert store.acquire_lease(NUMBER, "another-worker", 60)
    clock = FakeClock()
    handler = build_handler(store, clock)
    turn = Turn.begin(10, clock)
    outcome = handler.handle(text("anyone?", "SM" + "4" * 32), turn)
    assert outcome.kind == "busy" and outcome.answer == BUSY_LINE
    assert len(clock.slept) > 5 and 4.5 <= sum(clock.slept) <= 5.0
    assert turn.marks["turn"] == pytest.approx(sum(clock.slept) * 1000)
