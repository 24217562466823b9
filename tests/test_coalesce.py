"""Which texts one reply answers (app/coalesce.py), on stored messages of the in-memory store."""

from __future__ import annotations

from app.coalesce import as_inbound, covered, repeat_answer, unanswered_texts
from conversation import ConversationManager
from conversation.inmemory import MemoryStore

NUMBER = "+15551230000"


def test_a_reply_covers_its_text_and_the_texts_it_names():
    manager = ConversationManager(MemoryStore())
    a, b, c = (manager.record_user_message(NUMBER, body, message_id=f"SM{body}").message for body in "abc")
    assert [m.content for m in unanswered_texts(manager.get_history(NUMBER))] == ["a", "b", "c"]
    manager.record_assistant_message(NUMBER, "for a and b", reply_to=b, metadata={"covers": ["SMa", "SMb"]})
    history = manager.get_history(NUMBER)
    assert covered(history, a) and covered(history, b) and not covered(history, c)
    assert [m.content for m in unanswered_texts(history)] == ["c"]
    manager.storage.update_message_metadata(NUMBER, c, {"unanswered": "rate_limited"})
    assert unanswered_texts(manager.get_history(NUMBER)) == []


def test_commands_are_not_answered_together_and_a_stored_text_keeps_its_parts():
    manager = ConversationManager(MemoryStore())
    manager.record_user_message(NUMBER, "reset", message_id="SMr", metadata={"command": "reset"})
    text = manager.record_user_message(
        NUMBER, "look", message_id="SMl", media_urls=["https://api.twilio.com/m/1"],
        metadata={"media_content_types": ["image/png"], "to": "+15550001111"}).message
    assert unanswered_texts(manager.get_history(NUMBER)) == [text]
    inbound = as_inbound(NUMBER, text)
    assert (inbound.sid, inbound.body, inbound.to) == ("SMl", "look", "+15550001111")
    assert inbound.media == [("https://api.twilio.com/m/1", "image/png")]


def test_a_retry_gets_the_reply_again_only_where_it_went_as_twiml():
    manager = ConversationManager(MemoryStore())
    text = manager.record_user_message(NUMBER, "hi", message_id="SMh").message
    reply = manager.record_assistant_message(NUMBER, "meow", reply_to=text).message
    assert repeat_answer(reply, "SMh") == "meow"
    reply.metadata.update(delivery="sent")
    assert repeat_answer(reply, "SMh") is None  # the Messages API sent it
    reply.metadata.update(delivery="twiml", answered_in="SMother")
    assert repeat_answer(reply, "SMh") is None  # it went in another text's answer
    assert repeat_answer(reply, "SMother") == "meow"


def test_a_text_the_turn_did_not_see_stays_unanswered():
    manager = ConversationManager(MemoryStore())
    a, b = (manager.record_user_message(NUMBER, body, message_id=f"SM{body}").message for body in "ab")
    manager.record_assistant_message(NUMBER, "for b", reply_to=b, metadata={"covers": ["SMb"]})
    history = manager.get_history(NUMBER)  # a was stored first but landed after the turn's read
    assert not covered(history, a) and unanswered_texts(history) == [a]
