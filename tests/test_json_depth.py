"""Deeply nested JSON is malformed JSON: a 400, never a RecursionError and a 500."""

from __future__ import annotations

import pytest

from app import create_app
from app.services import services

TOKEN = "op-token"
NUMBER = "+15551234567"


def nested(depth: int) -> bytes:
    return b'{"title": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture
def make_app(moto_storage):
    def build(**settings):
        return create_app({"TWILIO_AUTH_TOKEN": "t", "ADMIN_API_TOKEN": TOKEN,
                           "DEV_PHONE_ENABLED": True, **settings}, storage=moto_storage)

    return build


def patch(app, body: bytes):
    manager = services(app).manager
    manager.add_user_message(NUMBER, "hello")
    conversation = manager.get_or_create_conversation(NUMBER).conversation_id
    return app.test_client().patch(
        f"/api/v1/numbers/{NUMBER}/conversations/{conversation}", data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )


def test_a_100000_deep_body_to_the_operator_api_is_a_400(make_app):
    app = make_app(MAX_REQUEST_BYTES=1_000_000)  # let it past the size cap to reach the parser
    response = patch(app, nested(100_000))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_body"


def test_deep_enough_to_break_the_parser_fits_under_the_default_cap_and_is_a_400(make_app):
    body = nested(30_000)
    assert len(body) < 65536
    response = patch(make_app(), body)
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_body"


def test_the_dev_phone_refuses_deep_json_with_a_400(make_app):
    response = make_app().test_client().post(
        "/dev-phone/api/send", data=b'{"number": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        content_type="application/json",
    )
    assert response.status_code == 400


def test_ordinary_json_still_works(make_app):
    response = patch(make_app(), b'{"title": "spoons"}')
    assert response.status_code == 200 and response.json["title"] == "spoons"
