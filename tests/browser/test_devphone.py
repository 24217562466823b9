"""The dev phone in headless Chromium: text the bot as any number and read the replies."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.fake_openai import reply

NUMBER = "+15555550142"


@pytest.fixture
def phone(live_server):
    """Serve the app with the dev phone on; return the server."""
    return live_server(DEV_PHONE_ENABLED=True)


def open_phone(page, server, number=NUMBER):
    page.goto(server("/dev-phone/"))
    page.get_by_label("Texting as").fill(number)
    page.get_by_role("button", name="Use").click()
    return page


def test_text_the_bot_and_see_the_reply(phone, page, screenshot):
    phone.fake_openai.push(reply("mrrp. the moon is a cursor."), reply("prrt 🐟 fish are clouds"))
    open_phone(page, phone)
    page.get_by_label("Text message").fill("hello cat")
    page.get_by_label("Text message").press("Enter")
    bot = page.locator(".bubble.bot")
    expect(bot).to_have_count(1)
    expect(bot.first.locator(".text")).to_have_text(re.compile("mrrp. the moon is a cursor.$"))
    expect(bot.first.locator(".meta")).to_contain_text("GSM-7 · 1 segment")

    page.get_by_label("Text message").fill("a fish? 🐟")
    page.get_by_role("button", name="Send").click()
    expect(bot).to_have_count(2)
    expect(page.locator(".bubble.me").nth(1).locator(".meta")).to_contain_text("UCS-2 · 1 segment")
    expect(bot.nth(1).locator(".meta")).to_contain_text("UCS-2 · 1 segment")

    history = phone.manager.get_history(NUMBER)
    assert [(m.role, m.content) for m in history] == [
        ("user", "hello cat"), ("assistant", "mrrp. the moon is a cursor."),
        ("user", "a fish? 🐟"), ("assistant", "prrt 🐟 fish are clouds"),
    ]
    screenshot(page, "dev-phone")
