"""scripts/sms.py against the real app served over HTTP on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from werkzeug.serving import make_server

from app import create_app
from app.services import services
from scripts import sms

ROOT = sms.ROOT
TOKEN = "test-token-0123456789abcdef"
TEXTER = "+15555550142"


def _responder():
    """Return the offline persona (seeded, so replies are repeatable)."""
    from app.persona import OfflineResponder

    return OfflineResponder(seed=7)


@pytest.fixture
def served(moto_storage):
    """Serve the app on a random loopback port in a thread; yield its /sms URL and manager."""
    responder = _responder()
    app = create_app(
        {
            "TWILIO_AUTH_TOKEN": TOKEN,
            "LOG_LEVEL": "WARNING",
        }, storage=moto_storage, responder=responder, offline_responder=responder
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/sms", services(app).manager
    finally:
        server.shutdown()
        thread.join(timeout=10)


def run_sms(*args: str, token: str = TOKEN, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run scripts/sms.py as a user would, with the bot's token in its environment."""
    env = {"PATH": "/usr/bin:/bin", "TWILIO_AUTH_TOKEN": token, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sms.py"), *args],
        input=stdin, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )


def test_one_shot_prints_the_reply_and_the_conversation_is_stored(served):
    url, manager = served
    result = run_sms("--url", url, "--from", TEXTER, "hello", "cat")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed and printed != "(no reply)"

    history = manager.get_history(TEXTER, 10)
    assert [(m.role, m.content) for m in history][0] == ("user", "hello cat")
    assert history[-1].role == "assistant"
    assert history[-1].content.strip() == printed
    assert len(history) == 2


def test_interactive_mode_sends_each_line(served):
    url, manager = served
    result = run_sms("--url", url, "--from", TEXTER, stdin="first text\n\nsecond text\n")
    assert result.returncode == 0, result.stderr
    replies = [line for line in result.stdout.splitlines() if "cat> " in line]
    assert len(replies) == 2
    contents = [m.content for m in manager.get_history(TEXTER, 10) if m.role == "user"]
    assert contents == ["first text", "second text"]


def test_a_wrong_token_is_refused_and_nothing_is_stored(served):
    url, manager = served
    result = run_sms("--url", url, "--from", TEXTER, "let me in", token="not-the-token")
    assert result.returncode == 1
    assert "403" in result.stderr
    assert manager.get_history(TEXTER, 10) == []


def test_no_bot_listening_says_how_to_start_it():
    result = run_sms("--url", "http://127.0.0.1:9/sms", "hello")
    assert result.returncode == 1
    assert "make run" in result.stderr


def test_twiml_parsing_and_segments():
    twiml = "<Response><Message>meow</Message><Message><Body>purr</Body></Message></Response>"
    assert sms.parse_twiml(twiml) == ["meow", "purr"]
    assert sms.parse_twiml('<?xml version="1.0" encoding="UTF-8"?><Response />') == []
    with pytest.raises(sms.SendError):
        sms.parse_twiml("<html/>")
    # Segments are counted by the bot's own rules (app.sms), not a copy.
    for body, count in [("a" * 160, "1"), ("a" * 161, "2"), ("\U0001f431" + "a" * 68, "1"),
                        ("\U0001f431" + "a" * 69, "2"), ("a" * 152 + "€" + "a" * 152, "3"), ("", "1")]:
        assert sms.build_params(body, TEXTER, "+15555550100", "AC" + "0" * 32)["NumSegments"] == count
    assert not hasattr(sms, "GSM7") and not hasattr(sms, "segments")
    params = sms.build_params("hi", TEXTER, "+15555550100", "AC" + "0" * 32)
    assert params["MessageSid"].startswith("SM") and len(params["MessageSid"]) == 34
    assert params["NumMedia"] == "0" and params["NumSegments"] == "1"


# Replies sent later, through the local Messages API that `make run` starts

class LaterBot:
    """Stands in for the bot when the model is slow: answers <Response/> at once and sends the
    reply later through the Messages API (texts starting "quick" are answered in the TwiML).
    """

    def __init__(self, sender, delay: float) -> None:
        self.sender, self.delay = sender, delay

    def __call__(self, environ, start_response):
        from werkzeug.wrappers import Request, Response

        form = Request(environ).form
        body = form["Body"]
        if body.startswith("quick"):
            answer = f"<Response><Message>now: {body}</Message></Response>"
        else:
            answer = "<Response/>"
            # "second ..." is answered by a later turn, as the rest of a burst is.
            delay = self.delay * (2 if body.startswith("second") else 1)
            threading.Timer(delay, self.reply_later, args=(form["From"], form["To"], body)).start()
        return Response(answer, mimetype="application/xml")(environ, start_response)

    def reply_later(self, to: str, from_: str, body: str) -> None:
        from app.outbound import SendRefused

        try:
            self.sender.send(to=to, from_=from_, body=f"later: {body}", status_callback=None)
        except SendRefused:
            pass


@pytest.fixture
def later_bot(tmp_path):
    """A stand-in bot on a loopback port, with the Messages API run_local starts for that port."""
    from app.config import load_config
    from app.twilio_rest import build_sender
    from scripts.run_local import messages_api_file, start_messages_api

    server = make_server("127.0.0.1", 0, lambda e, s: bot(e, s), threaded=True)
    port = server.server_port
    env = {"TWILIO_AUTH_TOKEN": TOKEN}
    fake = start_messages_api(env, port, ROOT)
    bot = LaterBot(build_sender(load_config(environ=env, dotenv_path=None)), delay=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, fake
    finally:
        server.shutdown()
        thread.join(timeout=10)
        fake.close()
        messages_api_file(port, ROOT).unlink(missing_ok=True)


def test_one_shot_waits_for_a_reply_sent_later(later_bot):
    port, fake = later_bot
    result = run_sms("--port", str(port), "--from", TEXTER, "hello", "cat")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "later: hello cat"
    assert fake.sent_to(TEXTER) == ["later: hello cat"]


def test_one_shot_gives_up_after_the_wait(later_bot):
    port, fake = later_bot
    fake.refuse(TEXTER)  # the later reply is never created
    result = run_sms("--port", str(port), "--from", TEXTER, "--wait", "2", "hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(no reply)"


def test_interactive_prints_replies_now_and_later_and_only_new_ones(later_bot):
    port, fake = later_bot
    # A reply to this number from before sms.py started is not printed again.
    run_sms("--port", str(port), "--from", TEXTER, "earlier")
    result = run_sms("--port", str(port), "--from", TEXTER, stdin="quick one\nslow one\n")
    assert result.returncode == 0, result.stderr
    replies = [line.split("cat> ", 1)[1] for line in result.stdout.splitlines() if "cat> " in line]
    assert replies == ["now: quick one", "later: slow one"]


@pytest.fixture
def async_bot(moto_storage):
    """The real app in async mode on a loopback port, sending its replies through the Messages API
    that run_local starts for that port (as `make run` does)."""
    from scripts.run_local import messages_api_file, start_messages_api

    app = None
    server = make_server("127.0.0.1", 0, lambda environ, start: app(environ, start), threaded=True)
    port = server.server_port
    env = {"TWILIO_AUTH_TOKEN": TOKEN}
    fake = start_messages_api(env, port, ROOT)
    responder = _responder()
    app = create_app({"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": env["TWILIO_ACCOUNT_SID"],
                      "TWILIO_API_BASE_URL": env["TWILIO_API_BASE_URL"], "REPLY_MODE": "async",
                      "LOG_LEVEL": "WARNING"},
                     storage=moto_storage, responder=responder, offline_responder=responder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, fake, services(app).manager
    finally:
        server.shutdown()
        thread.join(timeout=10)
        fake.close()
        messages_api_file(port, ROOT).unlink(missing_ok=True)


def test_the_bot_in_async_mode_replies_through_the_local_messages_api(async_bot):
    port, fake, manager = async_bot
    result = run_sms("--port", str(port), "--from", TEXTER, "hello", "cat")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed and printed != "(no reply)"
    assert fake.sent_to(TEXTER) == [printed]
    history = manager.get_history(TEXTER, 10)
    assert [(m.role, m.content) for m in history] == [("user", "hello cat"), ("assistant", printed)]
    # Twilio's delivery callbacks, signed with the token, reach the bot and are accepted.
    fake.wait_for(lambda f: len(f.callbacks) == 2)
    assert [(form["MessageStatus"], status) for _, form, status in fake.callbacks] == [
        ("sent", 200), ("delivered", 200)]


def test_piped_input_waits_for_every_turn_of_a_burst(later_bot):
    port, fake = later_bot
    result = run_sms("--port", str(port), "--from", TEXTER, stdin="first\nsecond\n")
    assert result.returncode == 0, result.stderr
    replies = [line.split("cat> ", 1)[1] for line in result.stdout.splitlines() if "cat> " in line]
    assert replies == ["later: first", "later: second"]
