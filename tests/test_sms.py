"""SMS text rules: segment counting, cutting replies on a word boundary, command recognition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.sms import GSM7, UCS2, count_segments, is_gsm7, parse_command, truncate
from localpeers.fake_openai import reply


@pytest.mark.parametrize(
    "text, encoding, units, count",
    [
        ("", GSM7, 0, 0),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        ("{" * 80, GSM7, 160, 1),  # extension characters take two septets
        ("€" * 81, GSM7, 162, 2),
        ("Ça coûte 5€, à Zürich?", UCS2, 22, 1),  # û is not GSM-7
        ("é" * 160, GSM7, 160, 1),
        ("ж" * 70, UCS2, 70, 1),
        ("ж" * 71, UCS2, 71, 2),
        ("ж" * 134, UCS2, 134, 2),
        ("ж" * 135, UCS2, 135, 3),
        ("🐱" * 35, UCS2, 70, 1),  # each emoji is two UTF-16 units
        ("🐱" * 36, UCS2, 72, 2),
        ("a" * 159 + "’", UCS2, 160, 3),  # one curly quote switches the whole text
    ],
)
def test_segments(text, encoding, units, count):
    segments = count_segments(text)
    assert (segments.encoding, segments.units, segments.count) == (encoding, units, count)
    assert segments.metadata() == {"segments": count, "encoding": encoding, "sms_units": units}


@pytest.mark.parametrize(
    "text, count",
    [
        ("a" * 152 + "€" + "a" * 152, 3),  # the escape and € may not straddle segments 1 and 2
        ("a" * 151 + "€" + "a" * 153, 2),  # here they fit at the end of segment 1
        ("a" * 306, 2),
        ("€" * 153, 3),  # 306 septets, but only 76 whole pairs fit in a segment of 153
        ("ж" * 66 + "\U0001f431" + "ж" * 66, 3),  # an emoji's surrogate pair is never split
        ("ж" * 65 + "\U0001f431" + "ж" * 67, 2),
    ],
)
def test_a_character_is_never_split_between_segments(text, count):
    assert count_segments(text).count == count


def test_half_an_emoji_is_counted_not_refused():
    assert count_segments("a\ud83d") == count_segments("a\u4e00")


def test_gsm7_alphabet():
    assert is_gsm7("Hello @ £$¥ ÄÖÑÜ §¿ {[~]} ^|\\ €")
    assert not is_gsm7("hello 🐱")
    assert not is_gsm7("“quoted”")


def test_short_text_is_unchanged():
    assert truncate("  a short reply  ", 320) == "a short reply"


def test_cut_on_a_word_boundary_with_a_gsm_marker():
    text = "the moon is a cursor blinking in the dark of an unwritten page"
    cut = truncate(text, 30)
    assert cut == "the moon is a cursor..."
    assert len(cut) <= 30 and is_gsm7(cut)


def test_one_long_word_is_cut_hard():
    assert truncate("x" * 50, 20) == "x" * 17 + "..."


def test_tiny_limits_have_no_marker():
    assert truncate("hello world", 5) == "hello"
    assert truncate("abcdefghij", 3) == "abc"


@pytest.mark.parametrize("limit", [21, 22])
def test_cut_does_not_split_a_letter_from_its_accent(limit):
    text = "e\u0301" * 30  # é written as e + combining acute accent
    kept = truncate(text, limit).removesuffix("...")
    assert kept.endswith("e\u0301") and len(kept) % 2 == 0


def test_never_over_1600_characters():
    assert len(truncate("word " * 1000, 5000)) <= 1600


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        truncate("text", 0)


@given(st.text(), st.integers(min_value=1, max_value=400))
def test_truncate_fits_and_keeps_a_prefix(text, limit):
    cut = truncate(text, limit)
    assert len(cut) <= limit
    assert text.strip().startswith(cut.removesuffix("..."))


@pytest.mark.parametrize(
    "body", ["reset", "RESET", "  Reset ", "restart", "Restart!", "clear.", "CLEAR?!", "reset…", "reset\n"]
)
def test_reset_words(body):
    assert parse_command(body) == "reset"


@pytest.mark.parametrize(
    "body", [None, "", "reset me", "please reset", "re set", "resets", "clearly", "!reset x", "stop", "erase"]
)
def test_not_commands(body):
    assert parse_command(body) is None


@given(st.text(max_size=400), st.integers(min_value=1, max_value=400))
def test_cutting_twice_cuts_once(text, limit):
    once = truncate(text, limit)
    assert truncate(once, limit) == once


def test_a_long_model_reply_is_cut_the_way_every_reply_is(fake):
    from app.persona import OpenAIResponder

    long = "purr " * 100
    fake.push(reply(long))
    responder = OpenAIResponder("sk-x", "cat-1", base_url=fake.base_url, max_chars=40)
    try:
        text = responder.reply([], "hi").text
    finally:
        responder.close()
    assert text == truncate(long, 40) and text.endswith("...")
