"""What a steady turn costs in DynamoDB requests in ``auto`` and ``async`` modes.

Counted with the request recorder on moto and on a real DynamoDB Local, the rate limits on.
The text's write also notes it on the number's work and takes the claim; the reply's write
checks the opt-out again and renews the claim (async) or ends the work (auto, the TwiML
answer); the write that records the REST send ends the work.
"""

from __future__ import annotations

import pytest

from app.services import services
from tests.async_helpers import (
    GatedResponder,
    RecordingSender,
    build_app,
    end_background_turns,
    settle,
)
from tests.faults import CallRecorder
from tests.twilio_helpers import Texter, twiml_bodies

NUMBER = "+15550007001"
LIMITS = {"RATE_LIMIT_PER_MINUTE": 30, "RATE_LIMIT_PER_DAY": 500}


def _open() -> GatedResponder:
    responder = GatedResponder()
    responder.gate.set()
    return responder


@pytest.fixture
def apps(storage):
    built = []

    def make(sender, **overrides):
        app = build_app(storage, sender, responder=_open(), **{**LIMITS, **overrides})
        built.append(app)
        return app

    yield make
    end_background_turns(built)


def _count_turn(app, storage, texter, body):
    """The DynamoDB calls of one text, its background turn and its work after the answer."""
    settle(app)
    assert services(app).bounded.drain()
    with CallRecorder(storage.client) as recorder:
        response = texter.text(body)
        settle(app)
        assert services(app).bounded.drain()
    return response, recorder.calls


def _kinds(params):
    return [kind for item in params["TransactItems"] for kind in item]


def test_an_async_turn_makes_four_requests(apps, storage):
    sender = RecordingSender()
    app = apps(sender)
    texter = Texter(app.test_client(), number=NUMBER)
    texter.text("warm up")
    response, calls = _count_turn(app, storage, texter, "count my requests")
    assert twiml_bodies(response.data) == []  # answered empty; the reply went through the Messages API
    assert sender.bodies(NUMBER)[-1] == "purr: count my requests"
    assert [name for name, _ in calls] == [
        "TransactWriteItems", "Query", "TransactWriteItems", "TransactWriteItems"]
    text_tx, reply_tx, sent_tx = (params for name, params in calls if name == "TransactWriteItems")
    # the text, its marker, the header, the opt-out check, two rate counters, the work item
    assert sorted(_kinds(text_tx)) == sorted(["Put", "Put", "Update", "ConditionCheck", "Update", "Update",
                                              "Update"])
    assert sorted(_kinds(reply_tx)) == ["ConditionCheck", "Put", "Update", "Update"]  # opt-out, claim renewed
    assert sorted(_kinds(sent_tx)) == ["Delete", "Update"]  # sent with its SID, and the work ended
    history = services(app).manager.get_history(NUMBER, 10)
    assert history[-1].metadata["delivery"] == "sent"
    assert history[-1].metadata["outbound_sid"] == sender.sent[-1]["sid"]
    assert services(app).storage.get_work(NUMBER) is None


def test_an_auto_turn_answered_in_the_webhook_makes_three_requests(apps, storage):
    sender = RecordingSender()
    app = apps(sender, REPLY_MODE="auto")
    texter = Texter(app.test_client(), number=NUMBER)
    texter.text("warm up")
    response, calls = _count_turn(app, storage, texter, "count my requests")
    assert twiml_bodies(response.data) == ["purr: count my requests"]
    assert sender.sent == []
    assert [name for name, _ in calls] == ["TransactWriteItems", "Query", "TransactWriteItems"]
    reply_tx = [params for name, params in calls if name == "TransactWriteItems"][1]
    assert sorted(_kinds(reply_tx)) == ["ConditionCheck", "Delete", "Put", "Update"]  # the work ends with it
    assert services(app).storage.get_work(NUMBER) is None


def test_a_status_callback_costs_one_write_with_the_place_and_three_requests_without(apps, storage):
    from urllib.parse import parse_qs, urlsplit

    sender = RecordingSender()
    app = apps(sender)
    texter = Texter(app.test_client(), number=NUMBER)
    texter.text("a reply to follow")
    settle(app)
    (sent,) = sender.sent
    sid = parse_qs(urlsplit(sent["status_callback"]).query)["sid"][0]
    with CallRecorder(storage.client) as recorder:
        answer = texter.status(sid, "sent", MessageSid=sent["sid"], callback_url=sent["status_callback"])
        assert answer.status_code == 200
    assert recorder.operations == ["UpdateItem"]
    with CallRecorder(storage.client) as recorder:  # an URL without the place (a TwiML answer's)
        assert texter.status(sid, "delivered", MessageSid=sent["sid"]).status_code == 200
    assert recorder.operations == ["GetItem", "GetItem", "UpdateItem"]  # the text's id marker, the text
    tampered = sent["status_callback"].replace("&p=", "&p=%00")  # not a place we wrote: looked up instead
    assert texter.status(sid, "failed", MessageSid=sent["sid"], callback_url=tampered).status_code == 200
    manager = services(app).manager
    reply = manager.get_reply(NUMBER, manager.get_message(NUMBER, sid))
    assert reply.metadata["delivery_status"] == "failed" and reply.metadata["outbound_sid"] == sent["sid"]
    conversation = manager.get_conversation(NUMBER, reply.conversation_id)
    assert conversation.counters.get("delivery_failures") == 1
    texter.status(sid, "undelivered", MessageSid=sent["sid"], callback_url=sent["status_callback"])
    conversation = manager.get_conversation(NUMBER, reply.conversation_id)
    assert conversation.counters.get("delivery_failures") == 1  # a reply fails once
