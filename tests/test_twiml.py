"""TwiML is always XML: characters XML 1.0 forbids never reach it, whatever the model says."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from app import create_app
from app.services import services
from app.xmltext import xml_safe
from tests.test_webhook import FakeReply
from tests.twilio_helpers import AUTH_TOKEN, Texter

NUMBER = "+15551234567"
# NUL, BEL, ESC, a vertical tab, U+FFFE, U+FFFF and a lone surrogate (half an emoji).
FORBIDDEN = "\x00\x07\x1b\x0b\ufffe\uffff\ud83d"


class HostileResponder:
    def __init__(self, text: str) -> None:
        self.text = text

    def reply(self, history, text, **kwargs):
        return FakeReply(self.text)


@pytest.fixture
def texter_for(moto_storage):
    def build(answer: str) -> Texter:
        app = create_app({
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0,
        }, storage=moto_storage, responder=HostileResponder(answer),
            offline_responder=HostileResponder("offline"))
        return Texter(app.test_client(), number=NUMBER)

    return build


def test_a_reply_with_control_characters_is_still_valid_twiml(texter_for):
    texter = texter_for(f"mew{FORBIDDEN} \U0001f431 tab\there\nnew line é")
    response = texter.text("say something strange")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    root = ET.fromstring(response.data)  # a real XML parser, not a string check
    [message] = root.iter("Message")
    assert message.text == "mew \U0001f431 tab\there\nnew line é"


def test_a_retry_of_that_text_gets_valid_twiml_too(texter_for):
    texter = texter_for("bell\x07 and escape\x1b")
    params = texter.params("again?")
    first, second = texter.post(params), texter.post(params)
    assert [m.text for m in ET.fromstring(first.data).iter("Message")] == ["bell and escape"]
    assert second.data == first.data


@pytest.mark.parametrize("char", list(FORBIDDEN) + ["\x01", "\x1f", "\ud800", "\udfff"])
def test_every_character_xml_forbids_is_dropped(char):
    assert xml_safe(f"a{char}b") == "ab"


@pytest.mark.parametrize("char", ["\t", "\n", "\r", " ", "\ud7ff", "\ue000", "\ufffd",
                                  "\U00010000", "\U0010ffff", "€"])
def test_characters_xml_allows_are_kept(char):
    assert xml_safe(f"a{char}b") == f"a{char}b"


def test_the_reply_sent_is_the_reply_stored(texter_for):
    texter = texter_for(f"purr{FORBIDDEN}!")
    response = texter.text("hello")
    [message] = ET.fromstring(response.data).iter("Message")
    manager = services(texter.client.application).manager
    stored = [m for m in manager.get_history(NUMBER) if m.role == "assistant"]
    assert [m.content for m in stored] == [message.text] == ["purr!"]
