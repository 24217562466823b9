"""A local stand-in for Twilio's Messages API, for tests and ``make run``.

Usage::

    from localpeers.fake_twilio import FakeTwilio

    with FakeTwilio(account_sid, auth_token) as fake:       # 127.0.0.1, a free port, threads
        # point the bot at it: TWILIO_API_BASE_URL=fake.base_url, TWILIO_ACCOUNT_SID=account_sid
        fake.refuse("+15551230000", 21610)                  # this number texted STOP
        fake.fail(500)                                      # the next create answers 500
        fake.fail(429, times=2)                             # the next two answer 429 (20429)
        fake.slow(6.0)                                      # the next create is recorded, then
                                                            # answered after 6 s (a client timeout)
        ...
        fake.messages                                       # created Message resources, in order
        fake.sent_to("+15551234567")                        # the bodies sent to one number
        fake.wait_for(lambda f: len(f.messages) == 2)       # poll until true (or AssertionError)
        fake.calls                                          # every request: method, path, params, status

Endpoints (paths as Twilio's): ``POST`` and ``GET /2010-04-01/Accounts/{sid}/Messages.json``
(create; list newest first, filtered by ``To`` / ``From``, paged by ``PageSize`` / ``Page``) and
``GET .../Messages/{sid}.json``. Requests need HTTP Basic auth: the account SID with the auth
token, or an API key SID (``api_keys={sid: secret}``) with its secret; otherwise 401 (20003).
Every request is first checked against Twilio's own OpenAPI description
(localpeers/twilio_openapi.py); what it does not allow gets 400 with Twilio's error JSON, and
the Message is not created. Answers are shaped like Twilio's (201 and the Message resource).

A created message moves ``queued`` (``accepted`` through a messaging service) -> ``sent`` ->
``delivered``; when it has a ``StatusCallback`` on 127.0.0.1 / localhost, each step is posted
there as Twilio does, form-encoded and signed with the auth token (``X-Twilio-Signature``).
``FakeTwilio(callbacks=False)`` turns the posts off; ``callback_delay`` spaces the steps.

Run alone: ``python -m localpeers.fake_twilio --port 5099 --account-sid AC... --auth-token T``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from localpeers.twilio_openapi import MessagesDescription, Problem, messages_description

API_VERSION = "2010-04-01"
SERVICE_NUMBER = "+15005550006"
# What Twilio says for the errors the fake can be told to give.
ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit",
}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


# ``GET /_fake/messages?after=N``: the messages created after the first N, oldest first, for a
# reader in another process (the benchmark). Not part of Twilio's API.
INSPECT_PATH = "_fake"


@dataclass
class Call:
    """One request as the fake saw it."""

    method: str
    path: str
    params: dict[str, list[str]]
    username: str | None
    status: int = 0


@dataclass
class _Trouble:
    """An answer the fake was told to give to the next creates."""

    status: int
    code: int
    times: int
    delay: float = 0.0
    record: bool = False


@dataclass
class _State:
    messages: list[dict[str, Any]] = field(default_factory=list)
    by_sid: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    troubles: list[_Trouble] = field(default_factory=list)
    callbacks: list[tuple[str, dict[str, str], int]] = field(default_factory=list)


class FakeTwilio:
    """Twilio's Messages API on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        account_sid: str = "AC" + "f" * 32,
        auth_token: str = "fake-twilio-auth-token",
        *,
        api_keys: dict[str, str] | None = None,
        port: int = 0,
        callbacks: bool = True,
        callback_delay: float = 0.05,
        service_number: str = SERVICE_NUMBER,
        description: MessagesDescription | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {})
        self.callbacks_on = callbacks
        self.callback_delay = callback_delay
        self.service_number = service_number
        self.description = description or messages_description()
        self._state = _State()
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # Lifecycle
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What TWILIO_API_BASE_URL should be."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeTwilio:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-twilio", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Telling it what to do
    def refuse(self, number: str, code: int = 21610) -> None:
        """Answer 400 with ``code`` to every create for ``number`` (21610: it texted STOP)."""
        with self._lock:
            self._state.refused[number] = code

    def fail(self, status: int = 500, *, times: int = 1, code: int | None = None) -> None:
        """Answer the next ``times`` creates with ``status`` (429: 20429, 5xx: 20500/20503)."""
        code = code or {429: 20429, 503: 20503}.get(status, 20500)
        with self._lock:
            self._state.troubles.append(_Trouble(status, code, times))

    def slow(self, seconds: float, *, times: int = 1) -> None:
        """Create the next ``times`` messages as usual but answer only after ``seconds``."""
        with self._lock:
            self._state.troubles.append(_Trouble(201, 0, times, delay=seconds, record=True))

    # Reading what happened
    @property
    def messages(self) -> list[dict[str, Any]]:
        """The created Message resources, oldest first (copies)."""
        with self._lock:
            return [dict(m) for m in self._state.messages]

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._state.calls)

    @property
    def callbacks(self) -> list[tuple[str, dict[str, str], int]]:
        """Status callbacks posted: (url, form, HTTP status the receiver answered; 0: unreachable)."""
        with self._lock:
            return list(self._state.callbacks)

    def sent_to(self, number: str) -> list[str]:
        """The bodies of the messages created for ``number``, oldest first."""
        return [m["body"] for m in self.messages if m["to"] == number]

    def wait_for(self, condition: Callable[[FakeTwilio], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition(self)`` holds, re-checked at every request and callback."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake Twilio: condition not met within {timeout} s")
                self._lock.wait(min(left, 0.1))

    # Serving (called by the handler threads)
    def _authenticated(self, username: str | None, password: str | None) -> bool:
        if username == self.account_sid:
            return password == self.auth_token
        return username is not None and username in self.api_keys and self.api_keys[username] == password

    def _record(self, call: Call) -> None:
        with self._lock:
            self._state.calls.append(call)
            self._lock.notify_all()

    def _create(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any], float]:
        """Create a message from an already valid form; (status, JSON, seconds to wait before answering)."""
        to, body = form["To"][0], (form.get("Body") or [""])[0]
        with self._lock:
            if to in self._state.refused:
                return _error(400, self._state.refused[to]) + (0.0,)
            trouble = self._state.troubles[0] if self._state.troubles else None
            if trouble is not None:
                trouble.times -= 1
                if trouble.times <= 0:
                    self._state.troubles.pop(0)
                if not trouble.record:
                    return _error(trouble.status, trouble.code) + (0.0,)
            if len(body) > 1600:
                return _error(400, 21617) + (0.0,)
            message = self._message(form, to, body)
            self._state.messages.append(message)
            self._state.by_sid[message["sid"]] = message
            self._lock.notify_all()
        callback = (form.get("StatusCallback") or [None])[0]
        threading.Thread(target=self._advance, args=(message["sid"], callback), daemon=True).start()
        return 201, dict(message), trouble.delay if trouble else 0.0

    def _message(self, form: dict[str, list[str]], to: str, body: str) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC))
        service = (form.get("MessagingServiceSid") or [None])[0]
        sender = (form.get("From") or [None])[0]
        media = form.get("MediaUrl") or []
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": body,
            "date_created": now, "date_sent": None, "date_updated": now,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": sender, "messaging_service_sid": service,
            "num_media": str(len(media)), "num_segments": str(_segments(body)),
            "price": None, "price_unit": "USD", "sid": sid,
            "status": "queued" if sender else "accepted",
            "subresource_uris": {"media": uri + "/Media.json"}, "to": to, "uri": uri + ".json",
        }

    def _advance(self, sid: str, callback: str | None) -> None:
        """Move a message through queued -> sent -> delivered, posting each step to ``callback``."""
        steps = [] if self._current(sid)["status"] == "queued" else ["queued"]
        for status in steps + ["sent", "delivered"]:
            if self._closing.wait(self.callback_delay):
                return
            with self._lock:
                message = self._state.by_sid[sid]
                message["status"] = status
                message["from"] = message["from"] or self.service_number
                now = format_datetime(datetime.now(UTC))
                message["date_updated"] = now
                if status == "sent":
                    message["date_sent"] = now
                snapshot = dict(message)
                self._lock.notify_all()
            if callback and self.callbacks_on and status != "queued":
                self._post_callback(callback, snapshot)

    def _current(self, sid: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._state.by_sid[sid])

    def _post_callback(self, url: str, message: dict[str, Any]) -> None:
        from twilio.request_validator import RequestValidator

        form = {
            "AccountSid": self.account_sid, "ApiVersion": API_VERSION, "From": message["from"],
            "MessageSid": message["sid"], "MessageStatus": message["status"],
            "SmsSid": message["sid"], "SmsStatus": message["status"], "To": message["to"],
        }
        if message["messaging_service_sid"]:
            form["MessagingServiceSid"] = message["messaging_service_sid"]
        status = 0
        if urllib.parse.urlsplit(url).hostname in LOCAL_HOSTS:  # network only to this machine
            request = urllib.request.Request(
                url, data=urllib.parse.urlencode(form).encode(), method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded",
                         "X-Twilio-Signature": RequestValidator(self.auth_token).compute_signature(url, form),
                         "User-Agent": "TwilioProxy/1.1"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except (urllib.error.URLError, OSError):
                status = 0
        with self._lock:
            self._state.callbacks.append((url, form, status))
            self._lock.notify_all()

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        to, sender = (query.get("To") or [None])[0], (query.get("From") or [None])[0]
        size, page = int((query.get("PageSize") or ["50"])[0]), int((query.get("Page") or ["0"])[0])
        with self._lock:
            found = [dict(m) for m in reversed(self._state.messages)
                     if (to is None or m["to"] == to) and (sender is None or m["from"] == sender)]
        chunk = found[page * size:(page + 1) * size]
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

        def page_uri(number: int) -> str:
            params = {k: v for k, v in {"To": to, "From": sender}.items() if v}
            params.update(PageSize=str(size), Page=str(number))
            return path + "?" + urllib.parse.urlencode(params)

        more = (page + 1) * size < len(found)
        return {
            "messages": chunk, "end": page * size + max(len(chunk) - 1, 0), "start": page * size,
            "page": page, "page_size": size, "uri": page_uri(page), "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if more else None,
            "previous_page_uri": page_uri(page - 1) if page else None,
        }

    def _fetch(self, sid: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            message = self._state.by_sid.get(sid)
            if message is not None:
                return 200, dict(message)
        return _error(404, 20404)


def _error(status: int, code: int, message: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {
        "code": code, "message": message or ERROR_MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status,
    }


def _problems(problems: list[Problem]) -> tuple[int, dict[str, Any]]:
    return _error(400, problems[0].code, "; ".join(p.message for p in problems))


def _segments(body: str) -> int:
    """Segments the way carriers count them, roughly: GSM-7 for plain ASCII, else UCS-2."""
    single, multi = (160, 153) if body.isascii() else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


def _handler_for(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            del format, args  # quiet: tests read fake.calls instead

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def _serve(self, method: str) -> None:
            split = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            params = urllib.parse.parse_qs(raw if method == "POST" else split.query, keep_blank_values=True)
            username, password = _basic(self.headers.get("Authorization"))
            call = Call(method, split.path, params, username)
            status, payload, delay = self._answer(method, split.path, params, username, password)
            call.status = status
            fake._record(call)
            if delay and fake._closing.wait(delay):
                return
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, method: str, path: str, params: dict[str, list[str]],
                    username: str | None, password: str | None) -> tuple[int, dict[str, Any], float]:
            parts = path.strip("/").split("/")
            if parts == [INSPECT_PATH, "messages"] and method == "GET":  # not Twilio's (see INSPECT_PATH)
                after = int((params.get("after") or ["0"])[0] or 0)
                return 200, {"messages": fake.messages[max(0, after):]}, 0.0
            # 2010-04-01 / Accounts / {sid} / Messages.json | Messages / {sid}.json
            if len(parts) not in (4, 5) or parts[:2] != [API_VERSION, "Accounts"]:
                return _error(404, 20404) + (0.0,)
            if not fake._authenticated(username, password):
                return _error(401, 20003) + (0.0,)
            problems = fake.description.check_account(parts[2])
            if problems:
                return _problems(problems) + (0.0,)
            if parts[2] != fake.account_sid:
                return _error(404, 20404) + (0.0,)
            if len(parts) == 4 and parts[3] == "Messages.json":
                if method == "POST":
                    problems = fake.description.check_create(params)
                    return _problems(problems) + (0.0,) if problems else fake._create(params)
                problems = fake.description.check_list(params)
                return (_problems(problems) if problems else (200, fake._list(params))) + (0.0,)
            if len(parts) == 5 and parts[3] == "Messages" and parts[4].endswith(".json") and method == "GET":
                sid = parts[4][:-len(".json")]
                problems = fake.description.check_message_sid(sid)
                return (_problems(problems) if problems else fake._fetch(sid)) + (0.0,)
            return _error(404, 20404) + (0.0,)

    return Handler


def _basic(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user, password


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted (for trying the bot's REST replies by hand)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", default="AC" + "f" * 32)
    parser.add_argument("--auth-token", default="fake-twilio-auth-token")
    parser.add_argument("--no-callbacks", action="store_true", help="post no status callbacks")
    args = parser.parse_args(argv)
    callbacks = not args.no_callbacks
    with FakeTwilio(args.account_sid, args.auth_token, port=args.port, callbacks=callbacks) as fake:
        print(f"fake Twilio Messages API at {fake.base_url} (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
