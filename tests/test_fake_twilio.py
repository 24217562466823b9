"""The local Messages API (localpeers/fake_twilio.py) holds to Twilio's own description of it.

Twilio's OpenAPI description ships in npm @twilio/cli-core; npm @stoplight/prism-cli serves a
validating mock from it. The tests run prism on 127.0.0.1 and show that:
- what the bot's sender sends through the official client is what the description allows;
- the fake refuses what prism (reading the description) refuses, and accepts what it accepts;
- the fake's answers pass prism's response validation (prism as a proxy in front of the fake).
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from app.outbound import SendRefused, Sent
from app.twilio_rest import TwilioRestSender
from localpeers.dynamodb_local import free_port, port_open
from localpeers.fake_twilio import FakeTwilio
from localpeers.twilio_openapi import SPEC_PATH, MessagesDescription
from tests.twilio_helpers import ACCOUNT_SID, AUTH_TOKEN, BOT_NUMBER

ROOT = Path(__file__).resolve().parent.parent
PRISM = ROOT / "scripts" / "npm" / "node_modules" / "@stoplight" / "prism-cli" / "dist" / "index.js"
TEXTER = "+15551234567"
KEY_SID, KEY_SECRET = "SK" + "2" * 32, "api-key-secret"
SERVICE_SID = "MG" + "3" * 32
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


class Prism:
    """``prism mock`` (or ``prism proxy``) of Twilio's description on a free 127.0.0.1 port."""

    def __init__(self, tmp: Path, *args: str) -> None:
        assert PRISM.is_file(), f"{PRISM} is missing: run `make install`"
        self.port = free_port()
        self.log = tmp / f"prism-{self.port}.log"
        command = ["node", str(PRISM), args[0], "-h", "127.0.0.1", "-p", str(self.port), *args[1:]]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        deadline = time.monotonic() + 120  # reading the 2 MB description takes seconds under load
        while not port_open(self.port):
            assert self.process.poll() is None, f"prism exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"prism did not listen: {self.log.read_text()[-2000:]}"
            time.sleep(0.1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def prism_mock(tmp_path_factory):
    prism = Prism(tmp_path_factory.mktemp("prism"), "mock", str(SPEC_PATH))
    yield prism
    prism.stop()


@pytest.fixture
def twilio():
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, api_keys={KEY_SID: KEY_SECRET}, callbacks=False) as server:
        yield server


def raw(base_url: str, method: str, path: str, form: dict | list | None = None,
        auth: tuple[str, str] | None = (ACCOUNT_SID, AUTH_TOKEN)) -> tuple[int, dict]:
    """Send one request by hand (not through the client) and return (status, JSON)."""
    data = urllib.parse.urlencode(form, doseq=True).encode() if form is not None else None
    request = urllib.request.Request(base_url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


# The sender, through the official client, against prism's validating mock

def test_the_senders_requests_validate_against_twilios_description(prism_mock):
    by_number = TwilioRestSender(account_sid=ACCOUNT_SID, username=ACCOUNT_SID, password=AUTH_TOKEN,
                                 base_url=prism_mock.base_url)
    by_service = TwilioRestSender(account_sid=ACCOUNT_SID, username=KEY_SID, password=KEY_SECRET,
                                  messaging_service_sid=SERVICE_SID, base_url=prism_mock.base_url)
    callback = "http://127.0.0.1:5000/sms/status/SM" + "4" * 32
    # prism answers with the description's own example Message.
    example = Sent("SM" + "a" * 32, "queued")
    assert by_number.send(to=TEXTER, from_=BOT_NUMBER, body="mrrp 🐈", status_callback=callback) == example
    assert by_service.send(to=TEXTER, from_=None, body="prrt", status_callback=None) == example
    assert by_number.recent_to(TEXTER, 0)  # the list example's messages, read by the client


def test_prism_is_not_a_rubber_stamp(prism_mock):
    bad_service = TwilioRestSender(account_sid=ACCOUNT_SID, username=ACCOUNT_SID, password=AUTH_TOKEN,
                                   messaging_service_sid="MG123", base_url=prism_mock.base_url)
    with pytest.raises(SendRefused):
        bad_service.send(to=TEXTER, from_=None, body="prrt", status_callback=None)
    assert raw(prism_mock.base_url, "POST", MESSAGES, {"To": TEXTER, "Body": "hi"}, auth=None)[0] == 401


GOOD = "To=%2B15551234567&Body=mrrp&From=%2B15550001111"


@pytest.mark.parametrize(("method", "path", "form"), [
    ("POST", MESSAGES, "Body=mrrp&From=%2B15550001111"),
    ("POST", MESSAGES, GOOD + "&MessagingServiceSid=MG123"),
    ("POST", MESSAGES, GOOD + "&ApplicationSid=AP1"),
    ("POST", MESSAGES, GOOD + "&ContentSid=HX12"),
    ("POST", MESSAGES, GOOD + "&ValidityPeriod=soon"),
    ("POST", MESSAGES, GOOD + "&SendAt=tomorrow"),
    ("POST", MESSAGES, GOOD + "&SendAt=2026-12-03"),
    ("POST", MESSAGES, GOOD + "&ContentRetention=forever"),
    ("POST", MESSAGES, GOOD + "&ProvideFeedback=maybe"),
    ("POST", MESSAGES, GOOD + "&StatusCallback=not%20a%20url"),
    ("POST", MESSAGES.replace(ACCOUNT_SID, "AC123"), GOOD),
    ("GET", MESSAGES + "?PageSize=0", None),
    ("GET", MESSAGES + "?PageSize=1001", None),
    ("GET", MESSAGES + "?Page=-1", None),
    ("GET", MESSAGES[:-len(".json")] + "/SM123.json", None),
    ("GET", MESSAGES[:-len(".json")] + "/XX" + "0" * 32 + ".json", None),
])
def test_the_fake_refuses_what_the_description_refuses(prism_mock, twilio, method, path, form):
    fields = urllib.parse.parse_qs(form, keep_blank_values=True) if form is not None else None
    assert raw(prism_mock.base_url, method, path, fields)[0] == 422  # prism: "Invalid request"
    status, error = raw(twilio.base_url, method, path, fields)
    assert status == 400
    assert error["status"] == 400 and isinstance(error["code"], int) and error["message"]
    assert twilio.messages == []


@pytest.mark.parametrize("form", [
    GOOD,
    GOOD + "&StatusCallback=http%3A%2F%2F127.0.0.1%3A5000%2Fsms%2Fstatus%2FSM1&ValidityPeriod=600",
    "To=%2B15551234567&Body=prrt&MessagingServiceSid=" + SERVICE_SID,
    "To=whatsapp%3A%2B15551234567&Body=prrt&From=whatsapp%3A%2B15550001111&SmartEncoded=true",
    "To=%2B15551234567&ContentSid=HX" + "5" * 32 + "&From=%2B15550001111",
    GOOD + "&SendAt=2026-12-03T13%3A00%3A00Z&ScheduleType=fixed&MessagingServiceSid=" + SERVICE_SID,
])
def test_the_fake_accepts_what_the_description_accepts(prism_mock, twilio, form):
    fields = urllib.parse.parse_qs(form)
    assert raw(prism_mock.base_url, "POST", MESSAGES, fields)[0] == 201
    status, message = raw(twilio.base_url, "POST", MESSAGES, fields)
    assert status == 201 and message["sid"].startswith("SM") and message["to"] == fields["To"][0]


@pytest.mark.parametrize(("form", "code"), [
    (GOOD + "&Colour=orange", 20001),  # a name the description does not have
    ("To=%2B15551234567&Body=mrrp", 21603),  # "From ... or MessagingServiceSid" (in prose)
    ("To=%2B15551234567&From=%2B15550001111", 21602),  # "Body, MediaUrl or ContentSid" (in prose)
    (GOOD + "&Body=again", 20001),  # one Body
])
def test_the_fake_also_holds_the_rules_prism_cannot_read(twilio, form, code):
    status, error = raw(twilio.base_url, "POST", MESSAGES, urllib.parse.parse_qs(form))
    assert (status, error["code"]) == (400, code)
    assert twilio.messages == []


def test_media_urls_repeat(twilio):
    # prism reads a form field only once, so this one is the fake's alone (the bot sends no media).
    form = [("To", TEXTER), ("From", BOT_NUMBER), ("MediaUrl", "https://example.com/a.png"),
            ("MediaUrl", "https://example.com/b.png")]
    status, message = raw(twilio.base_url, "POST", MESSAGES, form)
    assert status == 201 and message["num_media"] == "2"


def test_the_fakes_answers_pass_prisms_response_validation(twilio, tmp_path):
    proxy = Prism(tmp_path, "proxy", "--errors", str(SPEC_PATH), twilio.base_url)
    try:
        sender = TwilioRestSender(account_sid=ACCOUNT_SID, username=ACCOUNT_SID, password=AUTH_TOKEN,
                                  base_url=proxy.base_url)
        sent = sender.send(to=TEXTER, from_=BOT_NUMBER, body="mrrp",
                           status_callback="http://127.0.0.1:9/sms/status/SM1")
        assert sent == Sent(twilio.messages[0]["sid"], "queued")
        assert raw(proxy.base_url, "GET", MESSAGES[:-len(".json")] + f"/{sent.sid}.json")[0] == 200
        twilio.refuse("+15550000000")
        status, error = raw(proxy.base_url, "POST", MESSAGES, {"To": "+15550000000", "From": BOT_NUMBER,
                                                                "Body": "x"})
        assert (status, error["code"]) == (400, 21610)
        # The list: Twilio's page URIs are relative (as in the description's own example), which
        # the description's "uri" format does not allow; that is the only complaint.
        status, answer = raw(proxy.base_url, "GET", MESSAGES + "?To=%2B15551234567&PageSize=20")
        assert status == 500
        complaints = {tuple(v["location"]) for v in answer["validation"]}
        assert complaints <= {("response", "body", name) for name in
                              ("uri", "first_page_uri", "next_page_uri", "previous_page_uri")}
    finally:
        proxy.stop()


# The fake's own behaviour

def test_basic_auth_with_the_token_or_an_api_key(twilio):
    form = {"To": TEXTER, "From": BOT_NUMBER, "Body": "mrrp"}
    assert raw(twilio.base_url, "POST", MESSAGES, form, auth=None)[1]["code"] == 20003
    assert raw(twilio.base_url, "POST", MESSAGES, form, auth=(ACCOUNT_SID, "wrong"))[0] == 401
    assert raw(twilio.base_url, "POST", MESSAGES, form, auth=(KEY_SID, "wrong"))[0] == 401
    assert raw(twilio.base_url, "POST", MESSAGES, form, auth=(KEY_SID, KEY_SECRET))[0] == 201
    other_account = MESSAGES.replace(ACCOUNT_SID, "AC" + "9" * 32)
    assert raw(twilio.base_url, "POST", other_account, form)[0] == 404
    assert len(twilio.messages) == 1


def test_fetch_and_list_like_twilio(twilio):
    sids = [raw(twilio.base_url, "POST", MESSAGES, {"To": to, "From": BOT_NUMBER, "Body": body})[1]["sid"]
            for to, body in [(TEXTER, "one"), ("+15559876543", "other"), (TEXTER, "two"), (TEXTER, "three")]]
    status, message = raw(twilio.base_url, "GET", MESSAGES[:-len(".json")] + f"/{sids[0]}.json")
    assert status == 200 and message["body"] == "one" and message["direction"] == "outbound-api"
    assert raw(twilio.base_url, "GET", MESSAGES[:-len(".json")] + "/SM" + "0" * 32 + ".json")[0] == 404
    status, page = raw(twilio.base_url, "GET", MESSAGES + "?To=%2B15551234567&PageSize=2")
    assert [m["body"] for m in page["messages"]] == ["three", "two"]  # newest first
    status, page = raw(twilio.base_url, "GET", page["next_page_uri"])
    assert [m["body"] for m in page["messages"]] == ["one"] and page["next_page_uri"] is None


def test_status_callbacks_are_signed_like_twilios(tmp_path):
    received: list[tuple[str, dict, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            received.append((self.path, form, self.headers["X-Twilio-Signature"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/sms/status/SM1"
    try:
        with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.01) as twilio:
            sender = TwilioRestSender(account_sid=ACCOUNT_SID, username=ACCOUNT_SID, password=AUTH_TOKEN,
                                      base_url=twilio.base_url)
            sent = sender.send(to=TEXTER, from_=BOT_NUMBER, body="mrrp", status_callback=url)
            twilio.wait_for(lambda fake: len(fake.callbacks) == 2)
            assert twilio.messages[0]["status"] == "delivered"
    finally:
        server.shutdown()
        server.server_close()
    assert [form["MessageStatus"] for _, form, _ in received] == ["sent", "delivered"]
    validator = RequestValidator(AUTH_TOKEN)
    for path, form, signature in received:
        assert path == "/sms/status/SM1" and form["MessageSid"] == sent.sid
        assert validator.validate(url, form, signature)


def test_no_description_no_fake(tmp_path):
    with pytest.raises(RuntimeError, match="make install"):
        MessagesDescription(tmp_path / "missing.json")


def test_another_process_reads_what_the_fake_recorded():
    """The benchmark runs the fake apart and reads its record through the inspection route."""
    from scripts.bench.remote_twilio import RemoteFakeTwilio

    with RemoteFakeTwilio(ACCOUNT_SID, AUTH_TOKEN, callbacks=False) as fake:
        assert fake.messages == []
        sender = TwilioRestSender(account_sid=ACCOUNT_SID, username=ACCOUNT_SID, password=AUTH_TOKEN,
                                  base_url=fake.base_url)
        for body in ("one", "two"):
            sender.send(to="+15550001111", from_=BOT_NUMBER, body=body,
                        status_callback="http://127.0.0.1:9/never")
        assert [m["body"] for m in fake.messages] == ["one", "two"]
        sender.send(to="+15550002222", from_=BOT_NUMBER, body="three", status_callback=None)
        assert [(m["to"], m["body"]) for m in fake.messages][-1] == ("+15550002222", "three")
        assert fake.process is not None and fake.process.poll() is None
    assert fake.process.poll() is not None  # stopped with the block
