"""MAX_REQUEST_BYTES: oversized bodies get 413 before anything reads or parses them."""

from __future__ import annotations

import io

import pytest

from app import create_app
from app.config import ConfigError, load_config
from tests.twilio_helpers import AUTH_TOKEN, Texter


class WatchedStream(io.RawIOBase):
    """A request body of ``size`` bytes that counts how much of it is read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.size - self.read_bytes)
        buffer[:count] = b"x" * count
        self.read_bytes += count
        return count


@pytest.fixture
def app(moto_storage):
    return create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "ADMIN_API_TOKEN": "op"}, storage=moto_storage)


HUNDRED_MB = 100 * 1024 * 1024


@pytest.mark.parametrize("path", ["/sms", "/sms/status?sid=x", "/api/v1/numbers/+15551234567/reset"])
def test_a_declared_100_mb_body_is_a_413_and_never_read(app, path):
    stream = WatchedStream(HUNDRED_MB)
    response = app.test_client().post(
        path, content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": "forged", "Authorization": "Bearer op"},
        environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": str(HUNDRED_MB)},
    )
    assert response.status_code == 413
    assert stream.read_bytes == 0


def test_the_api_answers_413_as_json(app):
    response = app.test_client().post(
        "/api/v1/numbers/+15551234567/reset", headers={"Authorization": "Bearer op"},
        environ_overrides={"wsgi.input": WatchedStream(HUNDRED_MB), "CONTENT_LENGTH": str(HUNDRED_MB)},
    )
    assert response.status_code == 413 and response.json["error"]["code"] == "request_entity_too_large"


def test_a_streamed_body_is_read_only_up_to_the_cap(app):
    stream = WatchedStream(10 * 1024 * 1024)
    response = app.test_client().post(
        "/sms", content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": "forged", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert stream.read_bytes <= 65536 + 1


def test_a_text_near_the_cap_is_still_answered(app):
    texter = Texter(app.test_client())
    params = texter.params("y" * 1600, MediaUrl0="https://api.twilio.com/" + "m" * 40_000,
                           MediaContentType0="image/jpeg", NumMedia="1")
    assert texter.post(params).status_code == 200


def test_a_signed_post_over_a_raised_cap_is_answered(moto_storage):
    app = create_app(
        {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "MAX_REQUEST_BYTES": "200000"}, storage=moto_storage
    )
    texter = Texter(app.test_client())
    params = texter.params("hi", MediaUrl0="https://api.twilio.com/" + "m" * 100_000,
                           MediaContentType0="image/jpeg", NumMedia="1")
    assert texter.post(params).status_code == 200


def test_the_cap_has_a_floor():
    with pytest.raises(ConfigError, match="MAX_REQUEST_BYTES"):
        load_config({"TWILIO_AUTH_TOKEN": "t", "MAX_REQUEST_BYTES": "100"}, environ={}, dotenv_path=None)
