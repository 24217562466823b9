"""Replies fit GSM-7 where look-alike punctuation was all that made them UCS-2."""

from __future__ import annotations

import pytest

from app import create_app
from app.services import services
from app.sms import GSM7, UCS2, count_segments, fit_reply, to_gsm7
from localpeers.fake_openai import FakeOpenAI, reply
from tests.twilio_helpers import AUTH_TOKEN, Texter, twiml_bodies

NUMBER = "+15550006666"


@pytest.mark.parametrize(("raw", "plain"), [
    ("it\u2019s \u2018fine\u2019", "it's 'fine'"),
    ("\u201cmeow\u201d \u201epurr\u201f \u00abyarn\u00bb", '"meow" "purr" "yarn"'),
    ("moon \u2014 cursor \u2013 box \u2212 1 \u2010 2", "moon - cursor - box - 1 - 2"),
    ("wait\u2026", "wait..."),
    ("a\u00a0b\u2009c\u202fd\u3000e\u2003f", "a b c d e f"),
    ("zero\u200bwidth\u00adsoft\ufeff", "zerowidthsoft"),
    ("\u2022 dot", "- dot"),
])
def test_look_alikes_become_gsm7(raw, plain):
    text, replaced = to_gsm7(raw)
    assert text == plain and replaced > 0
    assert count_segments(text).encoding == GSM7


@pytest.mark.parametrize("raw", [
    "purr \U0001F63A it\u2019s warm",   # emoji: UCS-2 anyway, so nothing is changed
    "\u043c\u044f\u0443 \u2014 \u043c\u044f\u0443",  # Cyrillic
    "\u732b\u2026",                      # Chinese
    "plain ascii already",
])
def test_texts_that_stay_ucs2_or_are_gsm7_already_are_unchanged(raw):
    assert to_gsm7(raw) == (raw, 0)


def test_one_curly_apostrophe_no_longer_costs_three_more_segments():
    raw = ("the moon is a monitor left on and I nap on its warm glow, counting packets like "
           "fish in a bowl. mrrp. the cursor blinks, I pounce, the yarn unspools into a "
           "linked list with no end. don\u2019t you hear the modem purr at midnight? dada.")
    assert count_segments(raw) .encoding == UCS2
    answer, meta = fit_reply(raw, 306)
    assert count_segments(answer).encoding == GSM7
    assert meta == {"gsm7_replaced": 1, "segments_before_gsm7": count_segments(raw).count}
    assert count_segments(answer).count == 2 < meta["segments_before_gsm7"]
    assert fit_reply("plain", 306) == ("plain", {})


def test_the_default_reply_size_is_two_gsm7_segments():
    from app.config import load_config

    config = load_config({"TWILIO_AUTH_TOKEN": "t"}, environ={}, dotenv_path=None)
    assert count_segments("x" * config.reply_max_chars).count == 2
    assert count_segments("x" * (config.reply_max_chars + 1)).count == 3


def test_the_webhook_stores_the_normalised_reply_with_its_encoding_and_segments(moto_storage):
    curly = ("\u201cprrt\u201d \u2014 the box is a server\u2026 it\u2019s warm in here, human. "
             "purr, the fan hums.")
    with FakeOpenAI() as fake:
        fake.push(reply(curly), reply("warm \U0001F63A it\u2019s"))
        app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                          "OPENAI_API_KEY": "k", "OPENAI_BASE_URL": fake.base_url}, storage=moto_storage)
        texter = Texter(app.test_client(), number=NUMBER)
        first = twiml_bodies(texter.text("hello").data)
        second = twiml_bodies(texter.text("again").data)
    assert first == ['"prrt" - the box is a server... it\'s warm in here, human. purr, the fan hums.']
    assert second == ["warm \U0001F63A it\u2019s"]
    replies = [m for m in services(app).manager.get_history(NUMBER, 10) if m.role == "assistant"]
    assert replies[0].metadata["encoding"] == GSM7 and replies[0].metadata["segments"] == 1
    assert replies[0].metadata["gsm7_replaced"] == 5 and replies[0].metadata["segments_before_gsm7"] == 2
    assert replies[1].metadata["encoding"] == UCS2 and "gsm7_replaced" not in replies[1].metadata
