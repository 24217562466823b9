"""The operator console through Flask's test client: sign-in, pages, actions, headers.

Browser tests (tests/browser/test_console.py) drive the same pages in Chromium.
"""

from __future__ import annotations

import html
import json
import logging
import re

import pytest

from app import create_app
from app.services import services
from tests.twilio_helpers import AUTH_TOKEN, Texter

TOKEN = "console-operator-token"
ALICE = "+15551230001"
BOB = "+447700900222"


class Console:
    """A signed-in (or not) operator using the console through the test client."""

    def __init__(self, client) -> None:
        self.client = client
        self.urls: list[str] = []
        self.last_html = ""

    def get(self, path: str, **kwargs):
        self.urls.append(path)
        response = self.client.get(path, **kwargs)
        self.last_html = response.get_data(as_text=True)
        return response

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kwargs):
        self.urls.append(path)
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf", hidden(self.last_html, "csrf"))
        response = self.client.post(path, data=form, **kwargs)
        if response.mimetype == "text/html":
            self.last_html = response.get_data(as_text=True)
        return response

    def sign_in(self, token: str = TOKEN):
        self.get("/console/sign-in")
        response = self.post(
            "/console/sign-in", {"token": token, "nonce": hidden(self.last_html, "nonce")}, csrf=False
        )
        if response.status_code == 303:
            self.get(response.headers["Location"])
        return response

    def follow(self, response):
        assert response.status_code == 303, response.get_data(as_text=True)
        self.urls.append(response.headers["Location"])
        return self.get(response.headers["Location"])


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden {name} field in the page"
    return html.unescape(match.group(1))


def links(page: str, pattern: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page) if re.search(pattern, h)]


@pytest.fixture
def app(moto_storage, fake):
    return create_app({
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "ADMIN_API_TOKEN": TOKEN,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_MODEL": "cat-1",
        "RATE_LIMIT_PER_MINUTE": 0,
    }, storage=moto_storage)


@pytest.fixture
def console(app):
    console = Console(app.test_client())
    assert console.sign_in().status_code == 303
    return console


def text(app, number: str, body: str, **kwargs):
    return Texter(app.test_client(), number=number).text(body, **kwargs)


def open_conversation(console: Console, number: str):
    """Find a number with the filter form and open its newest conversation."""
    console.get("/console/")
    page = console.follow(console.post("/console/find", {"number": number}))
    (first, *_) = links(page.get_data(as_text=True), r"^/console/c/[^/]+$")
    return console.get(first), first


# ------------------------------------------------------------ existence and sign-in


def test_without_an_operator_token_the_console_does_not_exist(moto_storage):
    client = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN}, storage=moto_storage).test_client()
    for path in ("/console/", "/console/sign-in", "/console/dashboard", "/console/static/console.css"):
        assert client.get(path).status_code == 404, path
    assert client.post("/console/sign-in", data={"token": ""}).status_code == 404


def test_pages_need_a_session_and_a_wrong_token_is_refused_clearly(app):
    console = Console(app.test_client())
    response = console.get("/console/")
    assert response.status_code == 303 and response.headers["Location"].endswith("/console/sign-in")
    refused = console.sign_in("not-the-token")
    assert refused.status_code == 401
    assert "That is not the operator token." in refused.get_data(as_text=True)
    assert "dadacat_console=" not in refused.headers.get("Set-Cookie", "")
    assert console.get("/console/dashboard").status_code == 303


def test_signing_in_sets_a_strict_session_cookie(app):
    console = Console(app.test_client())
    response = console.sign_in()
    assert response.status_code == 303
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("dadacat_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http (make run); https below
    assert TOKEN not in cookie
    assert console.get("/console/").status_code == 200

    secure = Console(app.test_client())
    secure.get("/console/sign-in", base_url="https://bot.example")
    answer = secure.client.post(
        "/console/sign-in", base_url="https://bot.example",
        data={"token": TOKEN, "nonce": hidden(secure.last_html, "nonce")},
    )
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("dadacat_console="))
    assert "Secure" in cookie


def test_the_sign_in_form_needs_its_own_nonce(app):
    client = app.test_client()
    assert client.post("/console/sign-in", data={"token": TOKEN}).status_code == 400
    client.get("/console/sign-in")
    assert client.post("/console/sign-in", data={"token": TOKEN, "nonce": "forged"}).status_code == 400


def test_signing_out_ends_the_session_on_the_server(app):
    console = Console(app.test_client())
    console.sign_in()
    session_id = console.client.get_cookie("dadacat_console", path="/console").value
    page = console.follow(console.post("/console/sign-out"))
    assert "You are signed out." in page.get_data(as_text=True)
    # The same cookie, replayed, no longer opens anything.
    console.client.set_cookie("dadacat_console", session_id, path="/console")
    assert console.get("/console/").status_code == 303


def test_every_form_needs_the_sessions_csrf_token(app, console):
    text(app, ALICE, "hello")
    _, ref = open_conversation(console, ALICE)
    for data in ({}, {"csrf": "0" * 64}):
        response = console.client.post(ref + "/erase", data=data)
        assert response.status_code == 400
        assert "reload the page" in response.get_data(as_text=True)
    # Another session's token does not work either.
    other = Console(app.test_client())
    other.sign_in()
    other_csrf = hidden(other.last_html, "csrf")
    assert console.client.post(ref + "/erase", data={"csrf": other_csrf}).status_code == 400
    assert services(app).manager.list_conversations(ALICE).items  # nothing erased


# ----------------------------------------------------------------- the pages


def test_the_list_shows_conversations_newest_first_with_masked_numbers(app, console):
    text(app, ALICE, "first from alice")
    text(app, BOB, "bob says hi")
    page = console.get("/console/").get_data(as_text=True)
    assert page.index("+44********22") < page.index("+15*******01")  # newest activity first
    assert ALICE not in page and BOB not in page
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)
    assert len(rows) == 2 and all("(untitled)" in row for row in rows)
    assert all(re.search(r'class="count">2<', row) for row in rows)  # a text and its reply
    revealed = console.post("/console/", {"reveal": "1"}).get_data(as_text=True)
    assert ALICE in revealed and BOB in revealed


def test_the_filter_takes_the_number_in_a_post_and_never_puts_it_in_a_url(app, console):
    text(app, ALICE, "alice here")
    text(app, BOB, "bob here")
    console.get("/console/")
    response = console.post("/console/find", {"number": ALICE})
    page = console.follow(response).get_data(as_text=True)
    assert "+15*******01" in page and "+44********22" not in page
    assert all("5551230001" not in url and "1230001" not in url for url in console.urls)
    bad = console.post("/console/find", {"number": "555?not/a number"})
    assert bad.status_code == 400 and "number must be a sender id" in bad.get_data(as_text=True)


def test_the_filter_finds_a_whatsapp_sender_and_an_agent_session(app, console):
    text(app, "whatsapp:+15551230009", "over whatsapp")
    services(app).manager.add_user_message("agent:chat-1", "from an agent")
    console.get("/console/")
    senders = (("whatsapp:+15551230009", "whatsapp:+15*******09"), ("agent:chat-1", "agent:cha*-1"))
    for sender, masked in senders:
        response = console.post("/console/find", {"number": sender})
        assert response.status_code == 303, response.get_data(as_text=True)
        page = console.follow(response).get_data(as_text=True)
        assert masked in page and sender not in page
        assert len(links(page, r"^/console/c/[^/]+$")) == 1


def test_the_list_pages_with_sealed_cursors(app, console):
    manager = services(app).manager
    for index in range(27):
        manager.add_user_message(f"+1555999{index:04d}", f"text {index}")
    first = console.get("/console/").get_data(as_text=True)
    (older,) = links(first, r"page=")
    second = console.get("/console/" + older).get_data(as_text=True)
    assert len(re.findall(r"<tr>", first)) == 26 and len(re.findall(r"<tr>", second)) == 3  # with headers
    assert console.get("/console/?page=" + older.split("=", 1)[1][:-4] + "AAAA").status_code == 404


def test_a_conversation_shows_every_message_with_its_details(app, console, fake):
    texter = Texter(app.test_client(), number=ALICE)
    media = [("https://api.twilio.com/media/ME1", "image/jpeg")]
    texter.text("look at this", sid="SM" + "c" * 32, media=media)
    texter.status("SM" + "c" * 32, "delivered")
    texter.text("and again")
    page, _ = open_conversation(console, ALICE)
    body = page.get_data(as_text=True)
    assert body.count('class="message user"') == 2 and body.count('class="message assistant"') == 2
    assert "look at this" in body and fake.default.text in body
    assert "https://api.twilio.com/media/ME1" in body and "<img" not in body
    for label in ("model", "latency", "tokens", "segments", "fallback", "delivery"):
        assert f"<dt>{label}</dt>" in body, label
    assert "<dd>cat-1</dd>" in body and "<dd>delivered</dd>" in body and "<dd>not reported</dd>" in body
    assert re.search(r"<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</time>", body)


def test_a_texters_html_is_shown_as_text(app, console):
    text(app, ALICE, '<script>alert("owned")</script><b>bold</b> & "quotes"')
    listing = console.get("/console/").get_data(as_text=True)
    page, _ = open_conversation(console, ALICE)
    for body in (listing, page.get_data(as_text=True)):
        assert "<script>alert" not in body and "<b>bold</b>" not in body
    shown = "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp;"
    assert shown in page.get_data(as_text=True)


def test_every_console_page_has_strict_security_headers(app, console):
    text(app, ALICE, "hello")
    page, ref = open_conversation(console, ALICE)
    answers = [
        page, console.get("/console/"), console.get("/console/dashboard"), console.get(ref + "/erase"),
        console.get("/console/c/not-a-reference"), Console(app.test_client()).get("/console/sign-in"),
        console.get("/console/static/console.css"),
    ]
    for answer in answers:
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'none'" in csp and "unsafe-inline" not in csp
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Frame-Options"] == "DENY"
    assert answers[4].status_code == 404
    # Nothing on the pages comes from elsewhere, and no page has a script or inline style.
    for answer in answers[:-1]:
        body = answer.get_data(as_text=True)
        assert "<script" not in body and "style=" not in body and "<style" not in body
        assert not re.search(r'(src|href)="(https?:)?//', body)
    for answer in answers:
        answer.close()


# ---------------------------------------------------------------- the actions


def test_actions_ask_for_confirmation_first(app, console):
    text(app, ALICE, "hello")
    _, ref = open_conversation(console, ALICE)
    for name in ("rename", "archive", "reset", "export", "delete", "hard-delete", "erase"):
        confirm = console.get(f"{ref}/{name}")
        body = confirm.get_data(as_text=True)
        assert confirm.status_code == 200 and '<form method="post">' in body and ">Back</a>" in body, name
    assert services(app).manager.list_conversations(ALICE).items[0].is_active


def test_rename_archive_and_reset(app, console):
    text(app, ALICE, "hello")
    _, ref = open_conversation(console, ALICE)
    console.get(ref + "/rename")
    blank = console.post(ref + "/rename", {"title": "   "})
    assert blank.status_code == 400 and "title must be a non-blank string" in blank.get_data(as_text=True)
    page = console.follow(console.post(ref + "/rename", {"title": "Cat <talk>"})).get_data(as_text=True)
    assert "Renamed." in page and "<h1>Cat &lt;talk&gt;</h1>" in page
    console.get(ref + "/archive")
    page = console.follow(console.post(ref + "/archive")).get_data(as_text=True)
    assert "Archived." in page and "<dd>archived</dd>" in page
    console.get(ref + "/archive")
    again = console.post(ref + "/archive")
    assert again.status_code == 409 and "already archived" in again.get_data(as_text=True)
    text(app, ALICE, "a new start")
    manager = services(app).manager
    assert manager.get_user_state(ALICE)["active_conversation_id"]
    console.get(ref + "/reset")
    console.follow(console.post(ref + "/reset"))
    assert manager.get_user_state(ALICE)["active_conversation_id"] is None


def test_export_downloads_everything_for_the_number(app, console):
    text(app, ALICE, "keep this")
    _, ref = open_conversation(console, ALICE)
    console.get(ref + "/export")
    response = console.post(ref + "/export")
    assert response.status_code == 200 and response.mimetype == "application/json"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "1230001" not in disposition
    document = json.loads(response.get_data(as_text=True))
    assert document["user_id"] == ALICE
    assert [m["content"] for m in document["conversations"][0]["messages"]][0] == "keep this"
    assert response.headers["Content-Security-Policy"]


def test_soft_and_hard_delete_remove_the_conversation_from_the_list(app, console):
    text(app, ALICE, "soft")
    text(app, BOB, "hard")
    manager = services(app).manager
    for number, name, done in ((ALICE, "delete", "deleted."), (BOB, "hard-delete", "deleted for good.")):
        _, ref = open_conversation(console, number)
        console.get(f"{ref}/{name}")
        page = console.follow(console.post(f"{ref}/{name}")).get_data(as_text=True)
        assert done in page
    assert "No conversations." in page
    assert manager.list_conversations(ALICE).items == []
    (soft,) = manager.export_user(ALICE)["conversations"]
    assert soft["deleted_at"] and len(soft["messages"]) == 2  # hidden, kept
    assert manager.list_conversations(BOB).items == []


def test_erasing_a_number_removes_everything_and_it_is_gone_from_the_list(app, console, caplog):
    text(app, ALICE, "forget me")
    text(app, BOB, "remember me")
    page, ref = open_conversation(console, ALICE)
    console.get(ref + "/erase")
    with caplog.at_level(logging.INFO, logger="app.operations"):
        listing = console.follow(console.post(ref + "/erase")).get_data(as_text=True)
    assert "Everything stored for the number was erased." in listing
    assert "+15*******01" not in listing and "+44********22" in listing
    manager = services(app).manager
    assert manager.export_user(ALICE)["conversations"] == []
    # The same operation as the API, audited the same way, numbers masked.
    (line,) = [r.getMessage() for r in caplog.records if "operator erase" in r.getMessage()]
    assert "via=console" in line and "+15*******01" in line and ALICE not in line
    assert console.get(ref).status_code == 404
    # A number page offers the number's actions too.
    console.get("/console/")
    number_page = console.follow(console.post("/console/find", {"number": BOB})).get_data(as_text=True)
    (erase_link,) = links(number_page, r"/erase$")
    console.get(erase_link)
    console.follow(console.post(erase_link))
    assert manager.export_user(BOB)["conversations"] == []


def test_no_full_number_or_body_reaches_a_url_or_a_log_line(app, console, caplog):
    with caplog.at_level(logging.DEBUG):
        text(app, ALICE, "secret words")
        page, ref = open_conversation(console, ALICE)
        for name in ("rename", "export", "erase"):
            console.get(f"{ref}/{name}")
        console.post(ref + "/export")
    visited = " ".join(console.urls)
    assert "1230001" not in visited and "secret" not in visited
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert ALICE not in logged and "secret words" not in logged


# ------------------------------------------------------------------ dashboard


def test_the_dashboard_charts_the_stored_daily_figures(app, console):
    text(app, ALICE, "one")
    text(app, ALICE, "two")
    text(app, BOB, "three")
    assert services(app).bounded.drain()  # figures are added after each answer
    page = console.get("/console/dashboard").get_data(as_text=True)
    totals = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", page))
    assert totals["texts"] == "3" and totals["replies"] == "3"
    assert totals["busiest day, active numbers"] == "2" and totals["fallback rate"] == "0.0%"
    assert page.count("<svg") == 7 and "<polyline" in page
    for title in ("Texts and replies per day", "Model tokens per day", "SMS segments per day",
                  "Fallback rate", "Model latency percentiles", "Delivery failures per day",
                  "Active numbers per day"):
        assert title in page
    for days in (30, 90):
        longer = console.get(f"/console/dashboard?days={days}").get_data(as_text=True)
        assert f"last {days} days" in longer
    assert "last 7 days" in console.get("/console/dashboard?days=12345").get_data(as_text=True)


def test_the_console_says_when_the_store_is_unreachable(unreachable_storage):
    app = create_app(
        {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "ADMIN_API_TOKEN": TOKEN}, storage=unreachable_storage
    )
    console = Console(app.test_client())
    console.get("/console/sign-in")
    response = console.post(
        "/console/sign-in", {"token": TOKEN, "nonce": hidden(console.last_html, "nonce")}, csrf=False
    )
    assert response.status_code == 503
    assert "cannot be reached" in response.get_data(as_text=True)


def test_long_conversations_page_their_messages(app, console, monkeypatch):
    from app.console import views

    monkeypatch.setattr(views, "MESSAGES_PER_PAGE", 3)
    manager = services(app).manager
    for index in range(4):
        manager.add_user_message(ALICE, f"line {index}")
    page, ref = open_conversation(console, ALICE)
    body = page.get_data(as_text=True)
    assert [f"line {i}" in body for i in range(4)] == [True, True, True, False]
    (more,) = links(body, r"page=")
    rest = console.get(ref + more).get_data(as_text=True)
    assert "line 3" in rest and "line 0" not in rest


def test_references_die_with_the_operator_token(moto_storage):
    def signed_in(token):
        app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "ADMIN_API_TOKEN": token}, storage=moto_storage)
        console = Console(app.test_client())
        console.get("/console/sign-in")
        console.post("/console/sign-in", {"token": token, "nonce": hidden(console.last_html, "nonce")},
                     csrf=False)
        return app, console

    app, old = signed_in("old-token")
    services(app).manager.add_user_message(ALICE, "hello")
    _, ref = open_conversation(old, ALICE)
    _, new = signed_in("new-token")
    assert new.get(ref).status_code == 404
    # A session started under the old token is signed out under the new one.
    cookie = old.client.get_cookie("dadacat_console", path="/console").value
    new.client.set_cookie("dadacat_console", cookie, path="/console")
    assert new.client.get("/console/").status_code == 303
    assert new.client.post(ref + "/erase", data={"csrf": hidden(old.last_html, "csrf")}).status_code == 403
    assert old.get("/console/").status_code == 200  # the old token's console still knows it


def test_the_conversation_shows_its_running_summary_and_can_forget_it(app, console):
    text(app, ALICE, "my name is Zed")
    manager = services(app).manager
    storage = services(app).storage
    cid = manager.list_conversations(ALICE).items[0].conversation_id
    first = storage.messages_after(ALICE, cid, None, 1)[0]
    assert storage.claim_summary(ALICE, cid, "t", 30, upto=None)
    assert storage.save_summary(ALICE, cid, "t", "Zed <likes> kites.", upto=first.position, count=1)
    page, ref = open_conversation(console, ALICE)
    body = page.get_data(as_text=True)
    assert "<h2>Memory</h2>" in body and "Zed &lt;likes&gt; kites." in body
    confirm = console.get(ref + "/forget-summary").get_data(as_text=True)
    assert '<form method="post">' in confirm and "running summary" in confirm
    page = console.follow(console.post(ref + "/forget-summary")).get_data(as_text=True)
    assert "The running summary was forgotten." in page and "<h2>Memory</h2>" not in page
    assert manager.get_summary(ALICE, cid).text is None
