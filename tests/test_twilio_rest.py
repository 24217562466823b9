"""Replies through Twilio's Messages API: the official client talks to localpeers/fake_twilio.py.

The sender (app/twilio_rest.py) is built from the settings by create_app; Twilio's answers
become SendRefused (retrying will not help) or SendFailed (it may pass later).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

import pytest

from app import create_app
from app.config import load_config
from app.outbound import SendFailed, SendRefused, Sent
from app.services import services
from app.twilio_rest import TwilioRestSender, build_sender
from conversation.inmemory import MemoryStore
from localpeers.dynamodb_local import free_port
from localpeers.fake_twilio import FakeTwilio
from tests.twilio_helpers import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER

TEXTER = "+15551234567"
KEY_SID, KEY_SECRET = "SK" + "2" * 32, "api-key-secret"
SERVICE_SID = "MG" + "3" * 32


@pytest.fixture
def twilio():
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, api_keys={KEY_SID: KEY_SECRET}, callbacks=False) as server:
        yield server


@pytest.fixture
def memory_storage():
    return MemoryStore()


def settings_of(values):
    return load_config(values, environ={}, dotenv_path=None)


def sender_for(twilio: FakeTwilio, **settings) -> TwilioRestSender:
    built = build_sender(settings_of({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                          "TWILIO_API_BASE_URL": twilio.base_url, **settings}))
    assert built is not None
    return built


def test_create_app_builds_the_sender_once_from_the_settings(twilio, memory_storage):
    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                      "TWILIO_API_BASE_URL": twilio.base_url}, storage=memory_storage)
    sender = services(app).sender
    assert isinstance(sender, TwilioRestSender)
    sent = sender.send(to=TEXTER, from_=BOT_NUMBER, body="purr", status_callback=None)
    assert twilio.sent_to(TEXTER) == ["purr"]
    assert sent == Sent(twilio.messages[0]["sid"], "queued")
    assert twilio.calls[0].username == ACCOUNT_SID


def test_no_credentials_no_sender(memory_storage):
    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN}, storage=memory_storage)
    assert services(app).sender is None
    # An account SID without a secret is refused at start-up; as settings it builds no sender.
    unsigned = load_config({"TWILIO_VALIDATE_SIGNATURE": False}, environ={}, dotenv_path=None)
    assert build_sender(replace(unsigned, twilio_account_sid=ACCOUNT_SID)) is None


def test_send_posts_what_twilio_expects(twilio):
    sender_for(twilio).send(to=TEXTER, from_=BOT_NUMBER, body="the moon is a cursor",
                          status_callback="http://127.0.0.1:9/sms/status/SM1")
    (call,) = twilio.calls
    assert call.method == "POST" and call.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert call.params == {"To": [TEXTER], "From": [BOT_NUMBER], "Body": ["the moon is a cursor"],
                           "StatusCallback": ["http://127.0.0.1:9/sms/status/SM1"]}


def test_api_key_and_messaging_service(twilio):
    sender = sender_for(twilio, TWILIO_API_KEY_SID=KEY_SID, TWILIO_API_KEY_SECRET=KEY_SECRET,
                        TWILIO_MESSAGING_SERVICE_SID=SERVICE_SID)
    sent = sender.send(to=TEXTER, from_=BOT_NUMBER, body="mrrp", status_callback=None)
    (call,) = twilio.calls
    assert call.username == KEY_SID
    # The service's sender pool picks the number.
    assert call.params == {"To": [TEXTER], "MessagingServiceSid": [SERVICE_SID], "Body": ["mrrp"]}
    assert sent.status == "accepted"


def test_no_sender_number_and_no_service_is_refused_without_a_request(twilio):
    with pytest.raises(SendRefused):
        sender_for(twilio).send(to=TEXTER, from_=None, body="mrrp", status_callback=None)
    assert twilio.calls == []


@pytest.mark.parametrize("code", [21610, 21211, 21614, 21408])
def test_refusals_carry_twilios_code(twilio, code):
    twilio.refuse(TEXTER, code)
    with pytest.raises(SendRefused) as refused:
        sender_for(twilio).send(to=TEXTER, from_=BOT_NUMBER, body="mrrp", status_callback=None)
    assert refused.value.code == code
    assert twilio.messages == []


def test_a_body_over_1600_characters_is_refused(twilio):
    with pytest.raises(SendRefused) as refused:
        sender_for(twilio).send(to=TEXTER, from_=BOT_NUMBER, body="m" * 1601, status_callback=None)
    assert refused.value.code == 21617


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_may_be_retried(twilio, status):
    twilio.fail(status)
    sender = sender_for(twilio)
    with pytest.raises(SendFailed):
        sender.send(to=TEXTER, from_=BOT_NUMBER, body="mrrp", status_callback=None)
    assert sender.send(to=TEXTER, from_=BOT_NUMBER, body="mrrp", status_callback=None).sid.startswith("SM")


def test_wrong_credentials_are_not_the_messages_fault(twilio):
    sender = build_sender(settings_of({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "wrong",
                           "TWILIO_API_BASE_URL": twilio.base_url}))
    with pytest.raises(SendFailed):
        sender.send(to=TEXTER, from_=BOT_NUMBER, body="mrrp", status_callback=None)
    assert twilio.calls[0].status == 401


def test_nothing_listening_is_a_transient_failure():
    sender = build_sender(settings_of({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                           "TWILIO_API_BASE_URL": f"http://127.0.0.1:{free_port()}"}))
    with pytest.raises(SendFailed):
        sender.send(to=TEXTER, from_=BOT_NUMBER, body="mrrp", status_callback=None)
    with pytest.raises(SendFailed):
        sender.recent_to(TEXTER, 0)


def test_a_send_that_times_out_is_found_by_recent_to(twilio):
    since = time.time()
    sender = TwilioRestSender(account_sid=ACCOUNT_SID, username=ACCOUNT_SID, password=AUTH_TOKEN,
                              base_url=twilio.base_url, timeout=0.3)
    twilio.slow(3.0)
    with pytest.raises(SendFailed):
        sender.send(to=TEXTER, from_=BOT_NUMBER, body="did it go?", status_callback=None)
    (message,) = twilio.messages
    assert sender.recent_to(TEXTER, since) == [(message["sid"], "did it go?")]


def test_recent_to_lists_one_numbers_messages_since_a_time_oldest_first(twilio):
    sender = sender_for(twilio)
    sender.send(to=TEXTER, from_=BOT_NUMBER, body="first", status_callback=None)
    sender.send(to="+15559876543", from_=BOT_NUMBER, body="someone else", status_callback=None)
    sender.send(to=TEXTER, from_=BOT_NUMBER, body="second", status_callback=None)
    assert [body for _, body in sender.recent_to(TEXTER, time.time() - 60)] == ["first", "second"]
    assert sender.recent_to(TEXTER, time.time() + 60) == []
    listing = twilio.calls[-1]
    assert listing.method == "GET" and listing.params["To"] == [TEXTER]


def test_info_logs_mask_the_number_and_never_show_the_body(twilio, memory_storage, caplog):
    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                      "TWILIO_API_BASE_URL": twilio.base_url}, storage=memory_storage)
    caplog.set_level(logging.INFO)
    sender = services(app).sender
    sender.send(to=TEXTER, from_=BOT_NUMBER, body="secret whiskers", status_callback=None)
    sender.recent_to(TEXTER, 0)
    twilio.refuse(TEXTER)
    with pytest.raises(SendRefused):
        sender.send(to=TEXTER, from_=BOT_NUMBER, body="secret whiskers", status_callback=None)
    assert "+15*******67" in caplog.text
    # The twilio library logs each request line (the list's ?To=+1555...) at INFO.
    assert TEXTER not in caplog.text and TEXTER.replace("+", "%2B") not in caplog.text
    assert "secret whiskers" not in caplog.text


def test_environment_edge_and_region_do_not_redirect_the_client(twilio, monkeypatch):
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    sender_for(twilio).send(to=TEXTER, from_=BOT_NUMBER, body="mrrp", status_callback=None)
    assert twilio.sent_to(TEXTER) == ["mrrp"]


def test_concurrent_sends_reuse_their_connections(twilio, caplog):
    sender = sender_for(twilio)
    twilio.slow(0.5, times=16)  # all sixteen are in flight at once
    caplog.set_level(logging.WARNING, logger="urllib3")
    threads = [threading.Thread(target=sender.send, kwargs={
        "to": TEXTER, "from_": BOT_NUMBER, "body": f"mrrp {n}", "status_callback": None}) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(twilio.messages) == 16
    assert "Connection pool is full" not in caplog.text
