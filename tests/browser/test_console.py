"""The operator console in headless Chromium: sign in, find what the dev phone texted, read,
export, erase; a texter's HTML stays text; a wrong token is refused, and past the limit even
the right one; the dashboard draws.

Every test runs under the strict page guard (tests/browser/conftest.py): a request to any
host but 127.0.0.1, a console error or a Content-Security-Policy violation fails it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from conversation.daily_stats import DailyStats
from localpeers.fake_openai import reply
from tests.browser.conftest import new_guarded_page
from tests.browser.test_devphone import open_phone, text
from tests.twilio_helpers import Texter

TOKEN = "browser-operator-token"
NUMBER = "+15555550177"
MASKED = "+15*******77"
OTHER = "+447700900555"


@pytest.fixture
def server(live_server):
    """Serve the app with the console (an operator token) and the dev phone."""
    return live_server(ADMIN_API_TOKEN=TOKEN, DEV_PHONE_ENABLED=True, RATE_LIMIT_PER_MINUTE=0)


def sign_in(page, server, token=TOKEN):
    page.goto(server("/console/"))
    expect(page).to_have_url(server("/console/sign-in"))
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def send(server, number, body, **kwargs):
    """Text the bot through the webhook as Twilio would (signed)."""
    Texter(server.app.test_client(), number=number).text(body, **kwargs)


def test_read_export_and_erase_what_the_dev_phone_texted(server, page, screenshot, tmp_path):
    send(server, OTHER, "another texter")
    server.fake_openai.push(reply("mrrp. spoons are moons."))
    open_phone(page, server, NUMBER)
    text(page, "hello from the phone")
    expect(page.locator(".bubble.bot")).to_have_count(1)

    sign_in(page, server)
    rows = page.locator("table.conversations tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(MASKED)
    expect(rows.first).to_contain_text("spoons are moons")
    assert NUMBER not in page.content()
    screenshot(page, "console-conversations")

    page.get_by_label("Filter by number").fill(NUMBER)
    page.get_by_role("button", name="Find").click()
    expect(rows).to_have_count(1)
    assert "5550177" not in page.url
    rows.first.get_by_role("link", name=MASKED).click()
    messages = page.locator("ol.messages > li")
    expect(messages).to_have_count(2)
    expect(messages.nth(0).locator(".content")).to_have_text("hello from the phone")
    expect(messages.nth(1).locator(".content")).to_have_text("mrrp. spoons are moons.")
    expect(messages.nth(1).locator(".details")).to_contain_text("cat-1")
    expect(messages.nth(1).locator(".details")).to_contain_text("segments")
    screenshot(page, "console-conversation", full_page=True)

    page.get_by_role("link", name="Export").click()
    expect(page.get_by_role("heading", name="Export")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Yes, export").click()
    saved = tmp_path / "export.json"
    download.value.save_as(saved)
    document = json.loads(saved.read_text())
    assert document["user_id"] == NUMBER
    assert [m["content"] for m in document["conversations"][0]["messages"]] == [
        "hello from the phone", "mrrp. spoons are moons."]

    page.get_by_role("link", name="Back").click()
    page.get_by_role("link", name="Erase number").click()
    page.get_by_role("button", name="Yes, erase number").click()
    expect(page.get_by_role("status")).to_have_text("Everything stored for the number was erased.")
    expect(rows).to_have_count(1)
    expect(rows.first).not_to_contain_text(MASKED)
    assert server.manager.export_user(NUMBER)["conversations"] == []
    assert all("5550177" not in url for url in [page.url])


def test_a_texters_html_is_shown_as_text_in_the_console(server, page):
    sneaky = '<script>window.pwned = 1</script><img src="/x" onerror="window.pwned = 2"><b>bold</b>'
    server.fake_openai.push(reply('<img src="/y" onerror="window.pwned = 3"> purr'))
    send(server, NUMBER, sneaky)
    sign_in(page, server)
    expect(page.locator("td.preview").first).to_contain_text("purr")
    page.get_by_role("link", name=MASKED).click()
    contents = page.locator("ol.messages .content")
    expect(contents.nth(0)).to_have_text(sneaky)
    expect(contents.nth(1)).to_have_text('<img src="/y" onerror="window.pwned = 3"> purr')
    assert page.locator("ol.messages script, ol.messages img, ol.messages b").count() == 0
    assert page.evaluate("window.pwned") is None


def test_a_wrong_token_is_refused_and_signing_out_ends_the_session(server, browser):
    # The refusal is a 401 page, which Chromium reports as a failed resource: allow that one.
    context, page, guard = new_guarded_page(browser)
    try:
        sign_in(page, server, "not-the-token")
        expect(page.get_by_role("alert")).to_have_text("That is not the operator token.")
        expect(page.get_by_label("Operator token")).to_be_visible()
        page.get_by_label("Operator token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("status")).to_have_text("You are signed out.")
        page.goto(server("/console/dashboard"))
        expect(page).to_have_url(server("/console/sign-in"))
    finally:
        context.close()
    unexpected = [e for e in guard.problems() if not re.search(r"status of 401", e)]
    assert not unexpected, unexpected


def test_past_the_limit_of_wrong_tokens_the_page_says_to_wait(live_server, browser):
    server = live_server(ADMIN_API_TOKEN=TOKEN, OPERATOR_AUTH_MAX_FAILURES=1)
    # The refusals are 401 and 429 pages, which Chromium reports as failed resources.
    context, page, guard = new_guarded_page(browser)
    try:
        sign_in(page, server, "not-the-token")
        expect(page.get_by_role("alert")).to_have_text("That is not the operator token.")
        page.get_by_label("Operator token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text(
            re.compile(r"^Too many wrong tokens from your address\. Try again in [1-5] minutes?\.$"))
        expect(page.get_by_label("Operator token")).to_be_visible()
        page.goto(server("/console/dashboard"))
        expect(page).to_have_url(server("/console/sign-in"))
    finally:
        context.close()
    unexpected = [e for e in guard.problems() if not re.search(r"status of (401|429)", e)]
    assert not unexpected, unexpected


def seed_past_week(storage):
    """Write the figures of the six days before today, as earlier turns would have."""
    today = datetime.now(UTC)
    for back in range(1, 7):
        stats = DailyStats(storage, clock=lambda back=back: today - timedelta(days=back))
        for turn in range(10 + 3 * back):
            stats.add({"texts": 1, "replies": 1, "tokens": 380 + 7 * turn, "segments": 1 + turn % 3,
                       "model_calls": 1, "fallbacks": int(turn % 9 == 0),
                       "active_numbers": int(turn < 2 + back % 4)},
                      latency_ms=300 + 150 * (turn % 5) + 40 * back)
        stats.add({"delivery_failures": back % 3})


def test_the_dashboard_draws_the_days_figures(server, page, screenshot):
    seed_past_week(server.storage)
    for index in range(3):
        send(server, NUMBER, f"text {index}")
    send(server, OTHER, "hello")
    sign_in(page, server)
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("figure.chart svg")).to_have_count(7)
    totals = page.locator("dl.totals")
    seeded = sum(10 + 3 * back for back in range(1, 7))
    expect(totals.locator("div", has_text="texts").first.locator("dd")).to_have_text(str(seeded + 4))
    expect(totals.locator("div", has_text="delivery failures").locator("dd")).to_have_text("6")
    today = page.locator("figure.chart").last.locator("tbody tr").last
    expect(today.locator("td").last).to_have_text("2")  # active numbers today
    expect(page.locator("figure.chart").first.locator("polyline")).to_have_count(2)
    screenshot(page, "console-dashboard", full_page=True)
    page.get_by_role("link", name="30 days").click()
    expect(page.locator("[aria-current=page]")).to_have_text("30 days")
    expect(page.locator("figure.chart svg").first).to_have_attribute("aria-label", re.compile("30 days"))
