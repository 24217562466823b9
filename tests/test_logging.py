"""LOG_FORMAT: the text line and the JSON object carry the same fields; numbers masked, no bodies."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app import create_app
from app.config import ConfigError, load_config
from app.persona import OfflineResponder
from tests.twilio_helpers import AUTH_TOKEN, Texter, sid_for

NUMBER = "+15551234567"
SECRET_BODY = "my secret plan involves tuna"


@pytest.fixture
def log_stream():
    """Point the app's log handler at a buffer for the test, then restore it."""
    stream = io.StringIO()
    state = {}

    def attach():
        handler = next(h for h in logging.getLogger().handlers if getattr(h, "_dadacat", False))
        state["handler"], state["old"] = handler, handler.setStream(stream)
        return stream

    yield attach
    if state:
        state["handler"].setStream(state["old"])
        state["handler"].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def build(moto_storage, log_format: str):
    return create_app({
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "",
        "LOG_FORMAT": log_format,
        "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0,
    }, storage=moto_storage, offline_responder=OfflineResponder(seed=1))


def sms_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "sms from=" in line or '"event": "sms"' in line]


def logged_failure(log_stream, error: str) -> str:
    """Log a RuntimeError(``error``) as the webhook's unexpected failure; return what was written."""
    stream = log_stream()
    try:
        raise RuntimeError(error)
    except RuntimeError:
        logging.getLogger("app.webhook").exception("sms sid=%s: unexpected failure", "SMx")
    return stream.getvalue()


def test_json_lines_are_objects_with_the_text_lines_fields(moto_storage, log_stream):
    app = build(moto_storage, "text")
    stream = log_stream()
    texter = Texter(app.test_client(), number=NUMBER)
    assert texter.text(SECRET_BODY, sid=sid_for("textline")).status_code == 200
    [text_line] = sms_lines(stream.getvalue())

    app = build(moto_storage, "json")
    texter = Texter(app.test_client(), number="+15551234568")
    stream.truncate(0)
    stream.seek(0)
    assert texter.text(SECRET_BODY, sid=sid_for("jsonline")).status_code == 200
    output = stream.getvalue()
    records = [json.loads(line) for line in output.splitlines()]  # every line is one object
    [record] = [r for r in records if r.get("event") == "sms"]

    assert {"time", "level", "logger", "message"} <= set(record)
    assert record["level"] == "INFO" and record["logger"] == "app.webhook"
    assert record["sid"] == sid_for("jsonline") and record["outcome"] == "replied" and record["status"] == 200
    # Every key=value of the text line is a field of the JSON object.
    text_keys = {part.split("=", 1)[0] for part in text_line.split(": ", 1)[1].split() if "=" in part}
    assert text_keys <= set(record), text_keys - set(record)
    assert isinstance(record["total_ms"], int) and isinstance(record["segments"], int)
    assert record["from"] == "+15*******68"
    assert "5551234568" not in output and "tuna" not in output


def test_text_format_stays_one_readable_line(moto_storage, log_stream):
    app = build(moto_storage, "text")
    stream = log_stream()
    Texter(app.test_client(), number=NUMBER).text(SECRET_BODY, sid=sid_for("plain"))
    [line] = sms_lines(stream.getvalue())
    assert f"sms from=+15*******67 sid={sid_for('plain')} outcome=replied status=200" in line
    assert not line.lstrip().startswith("{")
    assert NUMBER not in stream.getvalue() and "tuna" not in stream.getvalue()


def test_json_errors_carry_the_traceback_in_one_line(moto_storage, log_stream):
    build(moto_storage, "json")
    [line] = logged_failure(log_stream, "boom").splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and "RuntimeError: boom" in record["exc_info"]


def test_log_format_is_validated():
    base = {"TWILIO_VALIDATE_SIGNATURE": False}
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_config({**base, "LOG_FORMAT": "xml"}, environ={}, dotenv_path=None)
    assert load_config(base, environ={}, dotenv_path=None).log_format == "text"


def test_request_fields_cannot_forge_a_log_line(moto_storage, log_stream):
    app = build(moto_storage, "text")
    texter = Texter(app.test_client(), number=NUMBER)
    assert texter.text("hello", sid=sid_for("real")).status_code == 200
    stream = log_stream()
    forged = "sent\n2026-01-01 00:00:00,000 INFO app.webhook: sms from=+1 outcome=forged\u2028\x1b[2J"
    assert texter.status(sid_for("real"), forged).status_code == 200
    lines = stream.getvalue().splitlines()
    assert lines and not any(line.startswith("2026-01-01") for line in lines)
    [line] = [line for line in lines if "outcome=forged" in line]
    assert line.startswith("20") and "\\n2026-01-01" in line
    assert "\\u001b" in line and "\\u2028" in line


def test_a_traceback_stays_below_its_line(moto_storage, log_stream):
    build(moto_storage, "text")
    first, *rest = logged_failure(log_stream, "boom\n2026-01-01 00:00:00,000 INFO forged").splitlines()
    assert "ERROR app.webhook: sms sid=SMx: unexpected failure" in first
    assert rest and all(line.startswith("  ") for line in rest)


def test_the_openai_transport_does_not_log_each_model_call(moto_storage, log_stream):
    from localpeers.fake_openai import FakeOpenAI, reply

    with FakeOpenAI() as fake:
        fake.default = reply("prrt")
        app = create_app({
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": fake.base_url, "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0,
        }, storage=moto_storage)
        stream = log_stream()
        assert Texter(app.test_client(), number=NUMBER).text("hello").status_code == 200
        assert fake.requests
    output = stream.getvalue()
    assert "outcome=replied" in output
    assert "HTTP Request" not in output and "httpx" not in output and "httpcore" not in output
