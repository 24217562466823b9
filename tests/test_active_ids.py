"""The per-process memory of active conversation ids: bounded, and forgets on request."""

from __future__ import annotations

import pytest

from conversation.active_ids import ActiveIds


def test_least_recently_used_numbers_are_forgotten_first():
    ids = ActiveIds(capacity=2)
    ids.remember("+1", "a")
    ids.remember("+2", "b")
    assert ids.get("+1") == "a"  # +1 is now the most recent
    ids.remember("+3", "c")
    assert len(ids) == 2
    assert ids.get("+2") is None and ids.get("+1") == "a" and ids.get("+3") == "c"


def test_forget_only_the_named_conversation():
    ids = ActiveIds()
    ids.remember("+1", "a")
    ids.forget("+1", "other")
    assert ids.get("+1") == "a"
    ids.forget("+1", "a")
    assert ids.get("+1") is None
    ids.remember("+1", "b")
    ids.remember("+1", None)
    assert ids.get("+1") is None


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        ActiveIds(capacity=0)
