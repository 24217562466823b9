"""The one context-window policy (conversation/window.py), used by the webhook and the persona."""

from __future__ import annotations

from conversation import ConversationManager, MemoryStore
from conversation.window import context_window

NUMBER = "+15550001111"


def _history(manager):
    manager.add_user_message(NUMBER, "one", message_id="SM1")
    manager.add_assistant_message(NUMBER, "two", reply_to="SM1")
    manager.add_system_message(NUMBER, "operator note")
    manager.add_user_message(NUMBER, "", message_id="SM2", media_urls=[])
    manager.add_user_message(NUMBER, "three", message_id="SM3")
    text = manager.add_user_message(NUMBER, "the text", message_id="SM4")
    manager.add_user_message(NUMBER, "a later text", message_id="SM5")
    return manager.get_history(NUMBER, 50), text


def test_only_earlier_conversation_goes_with_a_text():
    history, text = _history(ConversationManager(MemoryStore()))
    kept = context_window(history, text=text, max_messages=20, max_chars=1000)
    # No system note, no empty message, not the text itself, nothing stored after it.
    assert [m.content for m in kept] == ["one", "two", "three"]


def test_limits_keep_the_newest_contiguous_run():
    history, text = _history(ConversationManager(MemoryStore()))
    assert [m.content for m in context_window(history, text=text, max_messages=2, max_chars=1000)] == [
        "two", "three"
    ]
    # "three" (5) fits 8 characters, "two" (3) too; "one" would break the budget: stop there.
    assert [m.content for m in context_window(history, text=text, max_messages=20, max_chars=8)] == [
        "two", "three"
    ]
    assert context_window(history, text=text, max_messages=0, max_chars=1000) == []
    assert context_window(history, text=text, max_messages=20, max_chars=4) == []


def test_plain_dicts_and_a_text_known_by_id():
    history = [
        {"role": "user", "content": "hi", "message_id": "a"},
        {"role": "system", "content": "note"},
        {"role": "assistant", "content": "meow"},
        {"role": "user", "content": "now", "message_id": "b"},
    ]
    kept = context_window(history, text_id="b", max_messages=20, max_chars=100)
    assert [m["content"] for m in kept] == ["hi", "meow"]
    sized = context_window(history, text_id="b", max_messages=20, max_chars=100, size=lambda m: 60)
    assert [m["content"] for m in sized] == ["meow"]
