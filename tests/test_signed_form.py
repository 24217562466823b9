"""A text's identity comes only from Twilio's signed SID, in a form that cannot be re-cut.

Twilio signs name+value pairs with no separator, so each forged form below carries
the genuine request's own signature (checked with RequestValidator) and must still
name no new text.
"""

from __future__ import annotations

import uuid

import pytest
from werkzeug.datastructures import MultiDict

from app import create_app
from app.services import services
from app.signed_form import InvalidText, text_sid
from tests.test_webhook import FakeReply
from tests.twilio_helpers import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER, Texter, sid_for, twiml_bodies

NUMBER = "+15551234567"
URL = "http://localhost/sms"


class CountingResponder:
    """Answer every text with a fixed line and count the model calls."""

    def __init__(self) -> None:
        self.calls = 0

    def reply(self, history, text, **kwargs):
        self.calls += 1
        return FakeReply(f"history of {len(history)} messages")


@pytest.fixture
def responder():
    return CountingResponder()


@pytest.fixture
def app(moto_storage, responder):
    return create_app({
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0,
    }, storage=moto_storage, responder=responder, offline_responder=responder)


@pytest.fixture
def texter(app):
    return Texter(app.test_client(), number=NUMBER)


def genuine(body: str = "hello cat", sid: str | None = None, **extra: str) -> dict[str, str]:
    """Return every parameter Twilio posts for an SMS, as it posts them."""
    sid = sid or sid_for("genuine")
    return {
        "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "Body": body, "From": NUMBER,
        "FromCity": "SEATTLE", "FromCountry": "US", "FromState": "WA", "FromZip": "98101",
        "MessageSid": sid, "NumMedia": "0", "NumSegments": "1", "SmsMessageSid": sid, "SmsSid": sid,
        "SmsStatus": "received", "To": BOT_NUMBER, "ToCity": "", "ToCountry": "US", "ToState": "CA",
        "ToZip": "", **extra,
    }


def signed_string(params) -> str:
    """Return what the signature covers besides the URL: sorted names and values, joined."""
    return "".join(name + params[name] for name in sorted(params))


def splice(params: dict[str, str], name: str, swallow: int) -> dict[str, str]:
    """Return a forged form in which ``name`` swallows the next ``swallow`` parameters whole."""
    names = sorted(params)
    start = names.index(name)
    swallowed = names[start + 1 : start + 1 + swallow]
    forged = {key: value for key, value in params.items() if key not in swallowed}
    forged[name] = params[name] + "".join(key + params[key] for key in swallowed)
    return forged


def post_with_signature_of(texter: Texter, original: dict, forged: dict):
    """Post ``forged`` carrying the signature of ``original`` (they must sign alike) and a fresh token."""
    assert signed_string(forged) == signed_string(original)
    signature = texter.sign(URL, original)
    assert texter.validator.validate(URL, forged, signature)
    return texter.post(forged, signature=signature, headers={"I-Twilio-Idempotency-Token": uuid.uuid4().hex})


def forgeries(form: dict[str, str]) -> dict[str, dict[str, str]]:
    """Return re-cuts of one genuine form that carry its signature."""
    return {
        # MessageSid=M&NumMedia=0 signs like MessageSid=MNumMedia0: a new "sid".
        "sid_swallows_next": splice(form, "MessageSid", 1),
        # FromZip swallows every SID; the unsigned token used to name the text.
        "zip_swallows_sids": splice(form, "FromZip", 8),
        "sms_sid_swallows_status": splice(form, "SmsSid", 1),
        # SmsMessageSid swallows SmsSid and the rest: only one SID field is left valid.
        "everything_after_message_sid": splice(form, "MessageSid", 10),
    }


@pytest.mark.parametrize("kind", list(forgeries(genuine())))
def test_a_replayed_request_re_cut_under_its_own_signature_names_no_new_text(texter, responder, kind):
    form = genuine()
    first = texter.post(form)
    assert first.status_code == 200
    forged = forgeries(form)[kind]
    response = post_with_signature_of(texter, form, forged)
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 200:  # only ever the same text, answered once
        assert twiml_bodies(response.data) == twiml_bodies(first.data)
    assert responder.calls == 1
    stored = services(texter.client.application).manager.get_history(NUMBER)
    assert [m.role for m in stored] == ["user", "assistant"]


def test_a_captured_request_replayed_four_times_with_new_tokens_costs_one_model_call(texter, responder):
    form = genuine()
    assert texter.post(form).status_code == 200
    spliced = [splice(form, "FromZip", 8), splice(form, "MessageSid", 1), splice(form, "FromState", 9),
               splice(form, "NumSegments", 4)]
    answers = [post_with_signature_of(texter, form, forged).status_code for forged in spliced]
    assert answers == [400, 400, 400, 400]
    assert responder.calls == 1


def test_a_form_that_repeats_a_name_is_a_400(texter, responder):
    form = MultiDict(genuine().items())
    form.add("Body", "and another body")
    signature = texter.validator.compute_signature(URL, form)
    response = texter.client.post("/sms", data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 400 and "repeats 'Body'" in response.get_data(as_text=True)
    assert responder.calls == 0


def test_the_idempotency_token_deduplicates_a_known_text_but_names_none(texter, responder):
    form = genuine()
    token = {"I-Twilio-Idempotency-Token": "one-delivery"}
    assert texter.post(form, headers=token).status_code == 200
    assert texter.post(form, headers=token).status_code == 200  # a retry: answered from the store
    no_sid = {k: v for k, v in form.items() if k not in ("MessageSid", "SmsSid", "SmsMessageSid")}
    response = texter.post(no_sid, headers={"I-Twilio-Idempotency-Token": "a-new-one"})
    assert response.status_code == 400
    assert responder.calls == 1


def test_genuine_texts_that_mention_parameter_words_are_answered(texter, responder):
    for index, body in enumerate(["From now on, To whom it may concern: my Body is ready",
                                  "FromCity Zip Sid NumMedia? cats", "a" * 1600]):
        response = texter.post(genuine(body, sid=sid_for(f"words{index}")))
        assert response.status_code == 200, response.get_data(as_text=True)
    assert responder.calls == 3


@pytest.mark.parametrize("sid", ["SM" + "a" * 31, "SM" + "A" * 32, "XX" + "a" * 32, "SM" + "a" * 33, "tok_1"])
def test_sids_outside_twilios_format_are_refused(sid):
    with pytest.raises(InvalidText, match="MessageSid"):
        text_sid(genuine(sid=sid))


def test_media_message_sids_are_accepted_and_both_sid_fields_must_agree():
    assert text_sid(genuine(sid=sid_for("picture", "MM"))) == sid_for("picture", "MM")
    with pytest.raises(InvalidText, match="disagree"):
        text_sid({**genuine(), "SmsSid": sid_for("other")})


def test_a_body_cannot_hide_a_sid_for_a_later_re_cut():
    # A texter who writes "MessageSidSM…" could, once the request is captured, cut the
    # signed string so that the SID comes from the Body.
    with pytest.raises(InvalidText, match="'Body' holds the parameter name MessageSid"):
        text_sid(genuine("hi MessageSid" + sid_for("chosen")))


def test_a_body_that_swallowed_the_sender_leaves_a_from_that_reads_as_a_city():
    form = genuine("hi")
    # Body swallows From; FromCity becomes From="CitySEATTLE": same signed string.
    forged = {k: v for k, v in form.items() if k not in ("From", "FromCity")}
    forged.update(Body="hi" + "From" + NUMBER, From="City" + form["FromCity"])
    assert signed_string(forged) == signed_string(form)
    with pytest.raises(InvalidText, match="tail of another From"):
        text_sid(forged)


def test_a_sender_cannot_be_cut_short_by_an_unknown_name():
    # "+1…" cannot start a name, but a sender id with capitals could be cut,
    # e.g. "agentLx7" into From="agent" and a new parameter "Lx7".
    form = genuine(From="agentLx7")
    for name in ("FromCity", "FromCountry", "FromState", "FromZip"):
        del form[name]
    forged = {**form, "From": "agent", "Lx7": ""}
    assert signed_string(forged) == signed_string(form)
    with pytest.raises(InvalidText, match="could end it early"):
        text_sid(forged)
    assert text_sid(form) == form["MessageSid"]


@pytest.mark.parametrize("name", ["From+15550001", "Fromwhatsapp", "MessageSidX", "body", "Body Extra"])
def test_names_twilio_never_sends_are_refused(name):
    with pytest.raises(InvalidText):
        text_sid({**genuine(), name: "x"})


def test_values_that_hold_a_parameter_name_are_refused_outside_free_text():
    with pytest.raises(InvalidText, match="'FromZip' holds the parameter name MessageSid"):
        text_sid({**genuine(), "FromZip": "98101MessageSid" + sid_for("x")})
    with pytest.raises(InvalidText, match="'SmsStatus' holds the parameter name From"):
        text_sid({**genuine(), "SmsStatus": "receivedFrom+15550001"})
    # Twilio adds parameters without notice: an unknown one with a plain value is fine.
    assert text_sid({**genuine(), "SomethingNew": "42"}) == sid_for("genuine")
