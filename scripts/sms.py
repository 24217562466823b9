"""Text the running bot from a terminal, signing each text exactly as Twilio does.

Interactive:  .venv/bin/python scripts/sms.py [--from +15555550123]
One text:     .venv/bin/python scripts/sms.py "hello cat"   (prints the reply, exits)

The auth token comes from the same settings the bot reads (``.env``, else the
``.local/dev.env`` that ``make run`` generates, and the environment).

Replies the bot sends later through the Messages API (a slow model, a burst) are printed
as they arrive: ``make run`` starts a local Messages API and leaves its address in
``.local/messages-api-PORT.json``; this script reads the messages sent to your number
there. A one-shot text with no immediate reply waits up to ``--wait`` seconds for one.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from twilio.request_validator import RequestValidator

from app.config import ConfigError, load_config
from app.outbound import SendFailed
from app.sms import count_segments
from app.twilio_rest import TwilioRestSender
from scripts.run_local import dotenv_file, messages_api_file

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_FROM = "+15555550123"
DEFAULT_TO = "+15555550100"
# Longest wait for a reply sent later: the model may take MODEL_TIMEOUT_SECONDS (120 by default).
DEFAULT_WAIT = 150.0
POLL_SECONDS = 0.5


class SendError(RuntimeError):
    """The bot could not be reached or answered with an error."""


def build_params(body: str, sender: str, to: str, account_sid: str) -> dict[str, str]:
    """Return the form fields Twilio posts for an inbound text."""
    return {
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": account_sid,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": str(max(1, count_segments(body).count)),
    }


def parse_twiml(document: bytes | str) -> list[str]:
    """Return the texts of the <Message> elements in a TwiML response."""
    root = ET.fromstring(document)
    if root.tag != "Response":
        raise SendError(f"expected a TwiML <Response>, got <{root.tag}>")
    replies = []
    for message in root.iter("Message"):
        body = message.find("Body")
        replies.append((body.text if body is not None else message.text) or "")
    return replies


def send(url: str, params: dict[str, str], token: str | None, timeout: float = 20.0) -> list[str]:
    """Post one signed text to the bot and return its replies."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        "User-Agent": "TwilioProxy/1.1 (dadacat scripts/sms.py)",
    }
    if token:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, params)
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(params).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return parse_twiml(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()[:300]
        hint = ""
        if exc.code == 403:
            hint = " (the auth token differs from the bot's: check .env / .local/dev.env)"
        raise SendError(f"the bot answered HTTP {exc.code}{hint}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"cannot reach {url}: {reason}; is the bot running (`make run`)?") from None
    except ET.ParseError as exc:
        raise SendError(f"the bot's answer is not XML: {exc}") from None


def auth_token(explicit: str | None) -> str | None:
    """Return the token to sign with: the flag, else the bot's configured token."""
    if explicit:
        return explicit
    config = load_config(dotenv_path=dotenv_file(ROOT))
    return config.twilio_auth_token


class LaterReplies:
    """Reads the replies the bot sent to one number through the local Messages API.

    Only messages that appear after this object was made count; ``poll`` returns the new
    ones' bodies, oldest first, once each.
    """

    def __init__(self, base_url: str, account_sid: str, auth_token: str, number: str) -> None:
        self.number = number
        self.api = TwilioRestSender(account_sid=account_sid, username=account_sid,
                                    password=auth_token, base_url=base_url)
        self.seen = {sid for sid, _ in self.api.recent_to(number, 0)}
        self.lock = threading.Lock()
        self.arrived = 0.0  # time.monotonic() of the last new reply

    def poll(self) -> list[str]:
        with self.lock:
            new = [(sid, body) for sid, body in self.api.recent_to(self.number, 0) if sid not in self.seen]
            self.seen.update(sid for sid, _ in new)
            if new:
                self.arrived = time.monotonic()
        return [body for _, body in new]

    def wait(self, after: float, timeout: float) -> list[str]:
        """Poll until a reply arrives later than ``after`` (time.monotonic()) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        found: list[str] = []
        while self.arrived <= after and time.monotonic() < deadline:
            try:
                found += self.poll()
            except SendFailed:
                pass
            if self.arrived <= after:
                time.sleep(POLL_SECONDS)
        return found


    def wait_quiet(self, after: float, timeout: float) -> list[str]:
        """Wait for a reply later than ``after``, then for more while they keep coming.

        After each reply it waits 1.5 times as long as that reply took (at least 5 s): the
        next turn of a burst takes about as long as the last. All within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        found = self.wait(after, timeout)
        mark = after
        while self.arrived > mark and time.monotonic() < deadline:
            gap, mark = self.arrived - mark, self.arrived
            found += self.wait(mark, min(max(5.0, 1.5 * gap), deadline - time.monotonic()))
        return found


def later_replies(port: int, number: str, root: Path = ROOT) -> LaterReplies | None:
    """The reader for a local run on ``port`` (None when it has no local Messages API)."""
    path = messages_api_file(port, root)
    try:
        where = json.loads(path.read_text())
        return LaterReplies(where["base_url"], where["account_sid"], where["auth_token"], number)
    except (OSError, ValueError, KeyError, SendFailed):
        return None


def _print_later(watcher: LaterReplies, stop: threading.Event, prompt: bool) -> None:
    """Print the replies that arrive later until ``stop`` is set (a background thread)."""
    while not stop.wait(POLL_SECONDS):
        try:
            bodies = watcher.poll()
        except SendFailed:
            continue
        for body in bodies:
            print(f"\rcat> {body}" + ("\nyou> " if prompt else ""), end="" if prompt else "\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Send one text, or read texts from the terminal until end of input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="*", help="send this one text, print the reply and exit")
    parser.add_argument("--from", dest="sender", default=DEFAULT_FROM,
                        help=f"your number (default {DEFAULT_FROM})")
    parser.add_argument("--to", default=DEFAULT_TO, help=f"the bot's number (default {DEFAULT_TO})")
    parser.add_argument("--port", type=int, default=5000, help="bot port on 127.0.0.1 (default 5000)")
    parser.add_argument("--url", help="webhook URL (default http://127.0.0.1:PORT/sms)")
    parser.add_argument("--token", help="auth token to sign with (default: the bot's settings)")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT,
                        help=f"seconds to wait for a reply sent later (default {DEFAULT_WAIT:.0f})")
    args = parser.parse_args(argv)
    url = args.url or f"http://127.0.0.1:{args.port}/sms"
    try:
        token = auth_token(args.token)
    except ConfigError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return 2
    account_sid = "AC" + secrets.token_hex(16)
    watcher = later_replies(args.port, args.sender) if not args.url else None

    if args.text:
        sent_at = time.monotonic()
        try:
            replies = send(url, build_params(" ".join(args.text), args.sender, args.to, account_sid), token)
        except SendError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if not replies and watcher is not None:
            replies = watcher.wait(sent_at, args.wait)
        print("\n".join(replies) if replies else "(no reply)")
        return 0

    print(f"Texting {url} from {args.sender}. Type a text and press Enter; Ctrl-D quits.")
    # Piped input is echoed so the output reads like the conversation it was.
    echo = not sys.stdin.isatty()
    stop = threading.Event()
    printer = threading.Thread(target=_print_later, args=(watcher, stop, not echo), daemon=True)
    if watcher is not None:
        printer.start()
    unanswered_since: float | None = None  # when the last text with no immediate reply was sent
    try:
        while True:
            try:
                line = input("you> ")
            except (EOFError, KeyboardInterrupt):
                print()
                break
            if echo:
                print(line)
            if not line.strip():
                continue
            sent_at = time.monotonic()
            try:
                replies = send(url, build_params(line, args.sender, args.to, account_sid), token)
            except SendError as exc:
                print(f"error: {exc}", file=sys.stderr)
                continue
            if not replies and watcher is not None:
                unanswered_since = sent_at  # a reply will come later (or answer a later text too)
            for reply in replies or ([] if watcher is not None else ["(no reply)"]):
                print(f"cat> {reply}")
        # Input ended (a pipe): wait for the replies to the texts that got none at once.
        if watcher is not None and unanswered_since is not None:
            stop.set()
            printer.join()
            for body in watcher.wait_quiet(unanswered_since, args.wait):
                print(f"cat> {body}")
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
