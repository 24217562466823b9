"""Shared pieces of the auto/async reply tests: a recording sender, gated responders, app builders."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from app import create_app
from app.outbound import SendFailed, Sent
from app.replies import Reply
from app.services import services
from tests.twilio_helpers import AUTH_TOKEN


class RecordingSender:
    """A ReplySender kept in the test process: records what it sends and lists it back."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail_next = 0  # this many sends fail for now (SendFailed) before any is recorded
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send(self, *, to: str, from_: str | None, body: str, status_callback: str | None) -> Sent:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                raise SendFailed("503 from the test sender")
            sid = f"SM{next(self._ids):032x}"
            self.sent.append({"sid": sid, "to": to, "from_": from_, "body": body,
                              "status_callback": status_callback, "at": time.time()})
            return Sent(sid=sid, status="queued")

    def recent_to(self, to: str, since_epoch: float) -> list[tuple[str, str]]:
        with self._lock:
            return [(m["sid"], m["body"]) for m in self.sent if m["to"] == to and m["at"] >= since_epoch]

    def bodies(self, to: str | None = None) -> list[str]:
        with self._lock:
            return [m["body"] for m in self.sent if to is None or m["to"] == to]


@dataclass
class GatedResponder:
    """A responder that answers once its gate opens (or at once when it is open); records calls."""

    prefix: str = "purr"
    gate: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[list[str], str]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    def reply(self, history, text, *, deadline=None, media_urls=(), message_id=None, summary=None):
        self.calls.append(([m.content for m in history], text))
        self.started.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return Reply(text=f"{self.prefix}: {text}", model="gated", attempts=1)


def build_app(storage: Any, sender: Any, *, responder: Any = None, **overrides: Any):
    """Build the app on ``storage`` in async mode (unless overridden) with ``sender``."""
    config = {
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "REPLY_MODE": "async",
        "RATE_LIMIT_PER_MINUTE": 0,
        "RATE_LIMIT_PER_DAY": 0,
        "OPENAI_API_KEY": "",
        **overrides,
    }
    return create_app(config, storage=storage, sender=sender, responder=responder)


def pool_of(app):
    """The app's reply pool (auto/async modes)."""
    pipeline = services(app).text_handler.pipeline
    assert pipeline is not None, "the app is in sync mode"
    return pipeline.pool


def settle(app, timeout: float = 30.0) -> None:
    """Wait until the app's background turns are done."""
    assert pool_of(app).drain(timeout), "background turns still running"


def end_background_turns(apps) -> None:
    """Let the background turns of ``apps`` (auto/async modes) finish, then stop their pools."""
    for app in apps:
        pipeline = services(app).text_handler.pipeline
        if pipeline is not None:
            pipeline.pool.drain(30)
            pipeline.pool.close()
