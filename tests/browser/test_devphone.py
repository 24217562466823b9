"""The dev phone in headless Chromium: text the bot as any number and read the replies.

Every test runs under the strict page guard (tests/browser/conftest.py): a request to
any host but 127.0.0.1, a console error or a Content-Security-Policy violation fails it.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest
from playwright.sync_api import expect

from app.webhook import RESET_CONFIRMATION
from localpeers.fake_openai import reply
from localpeers.fake_twilio import FakeTwilio
from tests.twilio_helpers import AUTH_TOKEN

NUMBER = "+15555550142"
OTHER = "+447700900123"
ACCOUNT = "AC" + "5" * 32


@pytest.fixture
def phone(live_server):
    """Serve the app with the dev phone on; return the server."""
    return live_server(DEV_PHONE_ENABLED=True)


def open_phone(page, server, number=NUMBER):
    page.goto(server("/dev-phone/"))
    page.get_by_label("Texting as").fill(number)
    page.get_by_role("button", name="Use").click()
    expect(page.locator("#status")).to_have_text(f"Texting as {number}.")
    return page


def text(page, body):
    page.get_by_label("Text message").fill(body)
    page.get_by_role("button", name="Send").click()


def test_text_the_bot_and_see_the_reply(phone, page, screenshot):
    phone.fake_openai.push(reply("mrrp. the moon is a cursor."), reply("prrt. ça va – fish are clouds"))
    open_phone(page, phone)
    page.get_by_label("Text message").fill("hello cat")
    page.get_by_label("Text message").press("Enter")
    bot = page.locator(".bubble.bot")
    expect(bot).to_have_count(1)
    expect(bot.first.locator(".text")).to_have_text(re.compile("mrrp. the moon is a cursor.$"))
    expect(bot.first.locator(".meta")).to_contain_text("GSM-7 · 1 segment")

    text(page, "a fish? – " + "tell me more about the moon " * 3)
    expect(bot).to_have_count(2)
    expect(page.locator(".bubble.me").nth(1).locator(".meta")).to_contain_text("UCS-2 · 2 segments")
    expect(bot.nth(1).locator(".meta")).to_contain_text("UCS-2 · 1 segment")

    history = phone.manager.get_history(NUMBER)
    assert [(m.role, m.content) for m in history] == [
        ("user", "hello cat"), ("assistant", "mrrp. the moon is a cursor."),
        ("user", "a fish? – " + "tell me more about the moon " * 3),
        ("assistant", "prrt. ça va – fish are clouds"),
    ]
    # The model saw the conversation: the webhook, not the page, answered.
    assert [m["content"] for m in phone.fake_openai.requests[-1]["messages"][1:3]] == [
        "hello cat", "mrrp. the moon is a cursor.",
    ]
    screenshot(page, "dev-phone")


def test_a_texters_html_is_shown_as_text_and_never_run(phone, page):
    sneaky = '<script>window.pwned = 1</script><img src="/x" onerror="window.pwned = 2"><b>bold</b>'
    answer = '<img src="/y" onerror="window.pwned = 3"> purr'
    phone.fake_openai.push(reply(answer))
    open_phone(page, phone)
    text(page, sneaky)
    expect(page.locator(".bubble.bot")).to_have_count(1)
    expect(page.locator(".bubble.me .text")).to_have_text("You: " + sneaky)
    expect(page.locator(".bubble.bot .text")).to_have_text("Bot: " + answer)
    assert page.locator("#thread script, #thread img, #thread b").count() == 0
    assert page.evaluate("window.pwned") is None


def test_reset_stop_and_start_quick_texts(phone, page):
    open_phone(page, phone)
    text(page, "remember me")
    expect(page.locator(".bubble.bot")).to_have_count(1)

    page.get_by_role("button", name="reset", exact=True).click()
    expect(page.locator(".bubble.bot").last.locator(".text")).to_have_text("Bot: " + RESET_CONFIRMATION)

    page.get_by_role("button", name="STOP", exact=True).click()
    expect(page.get_by_text("Opted out (STOP)")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("Twilio handles STOP")
    text(page, "anyone there?")
    expect(page.locator(".bubble.me").last.locator(".meta")).to_contain_text("not answered: opted out")
    bots = page.locator(".bubble.bot").count()

    page.get_by_role("button", name="START", exact=True).click()
    expect(page.get_by_text("Opted out (STOP)")).to_be_hidden()
    text(page, "back again")
    expect(page.locator(".bubble.bot")).to_have_count(bots + 1)
    assert phone.manager.is_opted_out(NUMBER) is False


def test_keyboard_alone_with_a_picture(phone, page):
    page.goto(phone("/dev-phone/"))
    keys = page.keyboard
    keys.press("Tab")  # the number field comes first
    expect(page.get_by_label("Texting as")).to_be_focused()
    keys.press("Control+A")
    keys.type(OTHER)
    keys.press("Enter")  # "Use" by submitting the number form; focus moves to the text box
    expect(page.get_by_label("Text message")).to_be_focused()
    expect(page.locator("#status")).to_have_text(f"Texting as {OTHER}.")

    keys.type("first line")
    keys.press("Shift+Enter")
    keys.type("second line")
    keys.press("Enter")
    expect(page.locator(".bubble.bot")).to_have_count(1)
    expect(page.locator(".bubble.me .text")).to_have_text("You: first line\nsecond line")

    keys.press("Shift+Tab")  # back to the picture's summary
    expect(page.locator("#attach summary")).to_be_focused()
    keys.press("Enter")
    keys.press("Tab")
    expect(page.get_by_label("Picture URL (sent as MMS)")).to_be_focused()
    keys.type("http://203.0.113.7/cat.png")  # outside the app: shown, never loaded
    keys.press("Tab")
    keys.type("look at this")
    keys.press("Enter")
    expect(page.locator(".bubble.bot")).to_have_count(2)
    expect(page.locator(".bubble.me .media")).to_have_text("Picture: http://203.0.113.7/cat.png")
    stored = phone.manager.get_history(OTHER)[-2]
    assert stored.media_urls == ["http://203.0.113.7/cat.png"]
    assert stored.metadata["media_content_types"] == ["image/png"]

    # The quick texts are reachable by Tab and pressed with Space.
    page.get_by_label("Text message").focus()
    keys.press("Shift+Tab")  # the picture's summary (closed again after sending)
    keys.press("Shift+Tab")
    expect(page.get_by_role("button", name="START", exact=True)).to_be_focused()
    keys.press("Shift+Tab")
    keys.press("Shift+Tab")
    expect(page.get_by_role("button", name="reset", exact=True)).to_be_focused()
    keys.press("Space")
    expect(page.locator(".bubble.bot").last.locator(".text")).to_have_text("Bot: " + RESET_CONFIRMATION)


@pytest.mark.parametrize("page_options", [{"viewport": {"width": 360, "height": 640}}])
def test_fits_a_360_px_screen(phone, page, screenshot):
    phone.fake_openai.push(reply("purr " * 60))
    open_phone(page, phone)
    text(page, "a long text with a long unbroken word " + "x" * 80)
    expect(page.locator(".bubble.bot")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.evaluate("document.getElementById('thread').scrollWidth") <= 360
    for index in range(page.locator(".bubble").count()):
        box = page.locator(".bubble").nth(index).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360
    for control in ("Texting as", "Text message"):
        box = page.get_by_label(control).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["y"] + box["height"] <= 640
    for name in ("Send", "reset", "STOP", "START", "Use"):
        box = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box and box["x"] + box["width"] <= 360 and box["y"] + box["height"] <= 640
    screenshot(page, "dev-phone-360")


def test_a_reply_stored_later_appears_without_reloading(phone, page):
    open_phone(page, phone)
    text(page, "write to me later")
    expect(page.locator(".bubble.bot")).to_have_count(1)
    # A reply sent later through Twilio's REST API is stored in the conversation.
    phone.manager.add_assistant_message(NUMBER, "a purr that took its time")
    expect(page.locator(".bubble.bot")).to_have_count(2)
    expect(page.locator(".bubble.bot").last.locator(".text")).to_have_text("Bot: a purr that took its time")


def test_another_number_has_its_own_conversation(live_server, page):
    phone = live_server(DEV_PHONE_ENABLED=True, storage="dynamodb_local")
    open_phone(page, phone)
    text(page, "I am the first number")
    expect(page.locator(".bubble")).to_have_count(2)
    open_phone(page, phone, OTHER)
    expect(page.locator(".bubble")).to_have_count(0)
    text(page, "I am the second")
    expect(page.locator(".bubble")).to_have_count(2)
    open_phone(page, phone, NUMBER)
    expect(page.locator(".bubble.me .text").first).to_have_text("You: I am the first number")
    assert [m.content for m in phone.manager.get_history(OTHER)][0] == "I am the second"


# ------------------------------------------------------------------ replies sent later


@pytest.fixture
def twilio():
    """The Messages API the bot sends later replies to (as make run's local stand-in)."""
    with FakeTwilio(ACCOUNT, AUTH_TOKEN) as fake:
        yield fake


def later_phone(live_server, twilio, **settings):
    """Serve the app in async mode, sending later replies to the fake Messages API."""
    return live_server(DEV_PHONE_ENABLED=True, REPLY_MODE="async", TWILIO_ACCOUNT_SID=ACCOUNT,
                       TWILIO_API_BASE_URL=twilio.base_url, RATE_LIMIT_PER_MINUTE=0,
                       RATE_LIMIT_PER_DAY=0, **settings)


def polled_twice_more(page):
    """Wait for two more answers to the page's inbox polls (a reply shown once must stay once)."""
    for _ in range(2):
        with page.expect_response(lambda response: response.url.endswith("/dev-phone/api/inbox")):
            pass


def test_a_reply_sent_later_shows_once_after_typing(live_server, twilio, page, screenshot):
    phone = later_phone(live_server, twilio)
    phone.fake_openai.push(reply("a slow and thoughtful <b>purr</b>", delay=2.0))
    open_phone(page, phone)
    text(page, "think it over")
    typing = page.locator("#typing")
    expect(typing).to_be_visible()  # the webhook answered <Response/>; the reply is on its way
    expect(page.locator("#status")).to_contain_text("comes later, through the Messages API")
    assert page.locator(".bubble.bot").count() == 0
    screenshot(page, "dev-phone-typing")

    bot = page.locator(".bubble.bot")
    expect(bot).to_have_count(1)
    expect(bot.locator(".text")).to_have_text("Bot: a slow and thoughtful <b>purr</b>")
    expect(bot.locator(".meta")).to_contain_text("sent later through the Messages API")
    expect(typing).to_be_hidden()
    expect(page.locator("#status")).to_have_text("The reply came through the Messages API.")
    assert page.locator("#thread b").count() == 0
    (sent,) = twilio.messages
    assert bot.get_attribute("data-id") == sent["sid"]
    polled_twice_more(page)
    expect(page.locator(".bubble")).to_have_count(2)
    assert page.locator(".bubble .text").all_text_contents() == [
        "You: think it over", "Bot: a slow and thoughtful <b>purr</b>",
    ]


def test_a_burst_gets_one_later_reply_shown_once(live_server, twilio, page):
    # One turn may run at a time; another number's turn holds it while the burst arrives, so
    # the burst's texts are all stored before its turn reads them: one model call, one reply.
    phone = later_phone(live_server, twilio, REPLY_WORKERS=1, RECOVERY_SECONDS=4)
    release = threading.Event()
    burst = ["hey", "you there?", "ok so the moon"]

    def answer(body):
        said = [str(message.get("content")) for message in body.get("messages", [])]
        if "hold the line" in said:
            assert release.wait(30)
            return "held"
        if all(line in said for line in burst):
            return "one purr for all three"
        return None

    phone.fake_openai.handler = answer
    request = urllib.request.Request(phone("/dev-phone/api/send"), method="POST",
                                     data=json.dumps({"number": OTHER, "body": "hold the line"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        assert json.load(response)["waiting"] is True

    open_phone(page, phone)
    for line in burst:
        text(page, line)
        expect(page.locator(".bubble.me")).to_have_count(burst.index(line) + 1)
        expect(page.locator("#typing")).to_be_visible()
    release.set()

    bot = page.locator(".bubble.bot")
    expect(bot).to_have_count(1)
    expect(bot.locator(".text")).to_have_text("Bot: one purr for all three")
    expect(page.locator("#typing")).to_be_hidden()
    assert twilio.sent_to(NUMBER) == ["one purr for all three"]
    polled_twice_more(page)
    assert page.locator(".bubble .text").all_text_contents() == [
        "You: hey", "You: you there?", "You: ok so the moon", "Bot: one purr for all three",
    ]
    turns = [r for r in phone.fake_openai.requests
             if any(m.get("content") in burst for m in r["messages"])]
    assert len(turns) == 1


def test_the_page_stops_waiting_after_the_model_timeout(live_server, twilio, page):
    # The reply is written but the Messages API refuses to take it for now: no reply comes.
    twilio.fail(500, times=20)
    phone = later_phone(live_server, twilio, MODEL_TIMEOUT_SECONDS=2)
    open_phone(page, phone)
    text(page, "hello?")
    expect(page.locator("#typing")).to_be_visible()
    expect(page.locator("#typing")).to_be_hidden()
    expect(page.locator("#status")).to_have_text(
        "No reply within 2 s (MODEL_TIMEOUT_SECONDS); one sent later still shows here.")
    assert page.locator(".bubble.bot").count() == 0 and twilio.messages == []
