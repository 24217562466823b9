"""A fake OpenAI-compatible server on 127.0.0.1 for tests that use the real ``openai`` client.

Usage::

    from localpeers.fake_openai import FakeOpenAI, reply, status, hang, malformed, empty, refusal
    from localpeers.fake_openai import keep_lines_summary   # a deterministic summary writer

    with FakeOpenAI() as fake:                       # random port, server thread
        client = openai.OpenAI(api_key="test", base_url=fake.base_url, max_retries=0)
        fake.push(status(429, retry_after=0), reply("purr", prompt_tokens=7))
        fake.on_model("gpt-big", status(503))        # only requests for model "gpt-big"
        ...
        fake.requests[0]["messages"]                 # parsed JSON bodies, in arrival order
        fake.calls[0].headers["authorization"]       # path, headers (lower-cased keys), body

Endpoints: ``POST /v1/chat/completions`` (non-streaming), a minimal
``POST /v1/responses`` (one output_text message; extend it for the Agents SDK)
and ``GET /v1/models``.

Choosing the answer for a request, first match wins:

1. the next behaviour queued for the request's model by ``on_model(model, *behaviours)``;
2. the next behaviour queued for any model by ``push(*behaviours)``;
3. ``handler(body) -> Behaviour | str | None`` if set (a str means ``reply(str)``; None falls through);
4. the model's default set by ``model_default(model, behaviour)``;
5. ``default`` (a short cat reply unless changed).

Behaviours (all are :class:`Behaviour`; build them with the helpers):
``reply(text, prompt_tokens=None, completion_tokens=None)`` (usage counted roughly when not given),
``status(code, retry_after=None, message=None)`` (an OpenAI-style error body, optional Retry-After),
``hang(seconds, then=None)`` (wait, then answer ``then`` or the default reply; closing the server
cuts the wait short), ``malformed(raw=...)`` (a 200 whose body is not JSON), ``empty()``
(``choices: []``), ``refusal(text)`` (an assistant message with ``refusal`` set and no content).
Every behaviour accepts ``delay=`` seconds before answering.

Requests are checked the way OpenAI checks them before any of that: a chat request for a
reasoning model (``gpt-5*``, ``o1*``, ``o3*``, ``o4*``) that sends ``max_tokens`` gets OpenAI's
400 ``unsupported_parameter`` error. ``FakeOpenAI(knows_max_completion_tokens=False)`` plays an
older OpenAI-compatible server that knows only ``max_tokens`` and refuses
``max_completion_tokens`` with a 400. Rejected requests are recorded in ``calls`` too.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = "mrrp. meow? the moon is a cursor, blinking. prrt."
# OpenAI's reasoning models: they refuse max_tokens and take max_completion_tokens.
REASONING_MODELS = re.compile(r"^(gpt-5|o1|o3|o4)")


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers one request."""

    kind: str = "reply"  # reply | status | malformed | empty | refusal
    text: str = DEFAULT_TEXT
    status: int = 200
    retry_after: float | None = None
    message: str | None = None
    raw: bytes = b""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay: float = 0.0
    then: Behaviour | None = None
    finish_reason: str = "stop"


def reply(text: str = DEFAULT_TEXT, *, prompt_tokens: int | None = None,
          completion_tokens: int | None = None, delay: float = 0.0,
          finish_reason: str = "stop") -> Behaviour:
    """Answer with one assistant message and a usage block."""
    return Behaviour("reply", text=text, prompt_tokens=prompt_tokens,
                     completion_tokens=completion_tokens, delay=delay, finish_reason=finish_reason)


def status(code: int, *, retry_after: float | None = None, message: str | None = None,
           delay: float = 0.0) -> Behaviour:
    """Answer with an HTTP error status and an OpenAI-style error body."""
    return Behaviour("status", status=code, retry_after=retry_after, message=message, delay=delay)


def hang(seconds: float = 3600.0, then: Behaviour | None = None) -> Behaviour:
    """Wait ``seconds`` (cut short when the server closes), then answer ``then``."""
    return Behaviour("hang", delay=seconds, then=then)


def malformed(raw: bytes = b'{"id": "chatcmpl-broken", "choices": [', *, delay: float = 0.0) -> Behaviour:
    """Answer 200 with a body that is not valid JSON."""
    return Behaviour("malformed", raw=raw, delay=delay)


def empty(*, delay: float = 0.0) -> Behaviour:
    """Answer 200 with ``choices: []``."""
    return Behaviour("empty", delay=delay)


def refusal(text: str = "I can't help with that.", *, delay: float = 0.0) -> Behaviour:
    """Answer 200 with a refusal instead of content."""
    return Behaviour("refusal", text=text, delay=delay)


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was not JSON

    @property
    def model(self) -> str | None:
        """Return the requested model name, if any."""
        return self.body.get("model") if isinstance(self.body, dict) else None


@dataclass
class FakeOpenAI:
    """Serve OpenAI-compatible answers on 127.0.0.1 from a script; a context manager."""

    default: Behaviour = field(default_factory=reply)
    handler: Callable[[Any], Behaviour | str | None] | None = None
    knows_max_completion_tokens: bool = True

    def __post_init__(self) -> None:
        self.calls: list[Call] = []
        self._queue: deque[Behaviour] = deque()
        self._by_model: dict[str, deque[Behaviour]] = defaultdict(deque)
        self._model_defaults: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -----------------------------------------------------------------

    def push(self, *behaviours: Behaviour | str) -> FakeOpenAI:
        """Queue behaviours for the next requests, whatever their model."""
        with self._lock:
            self._queue.extend(_as_behaviour(b) for b in behaviours)
        return self

    def on_model(self, model: str, *behaviours: Behaviour | str) -> FakeOpenAI:
        """Queue behaviours for the next requests naming ``model``."""
        with self._lock:
            self._by_model[model].extend(_as_behaviour(b) for b in behaviours)
        return self

    def model_default(self, model: str, behaviour: Behaviour | str) -> FakeOpenAI:
        """Answer every otherwise unscripted request for ``model`` with ``behaviour``."""
        with self._lock:
            self._model_defaults[model] = _as_behaviour(behaviour)
        return self

    @property
    def requests(self) -> list[Any]:
        """Return the parsed JSON bodies received so far, in arrival order."""
        return [call.body for call in self.calls]

    @property
    def models(self) -> list[str | None]:
        """Return the model named by each request so far, in arrival order."""
        return [call.model for call in self.calls]

    # --- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Return the ``/v1`` base URL to hand to ``openai.OpenAI(base_url=...)``."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running; use it as a context manager or call start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        """Start serving on a random free port in a daemon thread."""
        fake = self

        class Handler(_Handler):
            owner = fake

        self._closed.clear()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and cut short any request still hanging."""
        self._closed.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------

    def _choose(self, body: Any) -> Behaviour:
        model = body.get("model") if isinstance(body, dict) else None
        with self._lock:
            if model is not None and self._by_model.get(model):
                return self._by_model[model].popleft()
            if self._queue:
                return self._queue.popleft()
        if self.handler is not None:
            chosen = self.handler(body)
            if chosen is not None:
                return _as_behaviour(chosen)
        with self._lock:
            if model in self._model_defaults:
                return self._model_defaults[model]
        return self.default

    def _refusal(self, body: Any) -> tuple[str, str | None, str | None] | None:
        """Return (message, param, code) when the request would be refused as invalid, else None."""
        if not isinstance(body, dict):
            return None
        model = str(body.get("model") or "")
        if "max_tokens" in body and REASONING_MODELS.match(model):
            return ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter")
        if "max_completion_tokens" in body and not self.knows_max_completion_tokens:
            return "Unrecognized request argument supplied: max_completion_tokens", None, None
        return None

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-fake{next(self._ids)}"


def is_summary_request(body: Any) -> bool:
    """Return True for a request asking for a conversation summary (``conversation.memory``)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    return bool(messages) and "Memory so far:" in str(messages[-1].get("content", ""))


def keep_lines_summary(body: Any) -> Behaviour | None:
    """A deterministic summariser: the previous memory, then every line the person wrote.

    Use as ``fake.handler``; other requests fall through to the usual answers.
    """
    if not is_summary_request(body):
        return None
    text = body["messages"][-1]["content"]
    head, _, new = text.partition("New messages:")
    previous = head.replace("Memory so far:", "").strip()
    kept = [] if previous in ("", "(nothing yet)") else [previous]
    kept += [line[len("Person: "):] for line in new.splitlines() if line.startswith("Person: ")]
    return reply(" ".join(kept) or "nothing to remember.")


def _as_behaviour(value: Behaviour | str) -> Behaviour:
    return reply(value) if isinstance(value, str) else value


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):  # noqa: ARG002
        # A client that gave up (timeout) leaves a broken pipe; that is expected here.
        pass


def _usage_for(body: Any, behaviour: Behaviour, text: str) -> tuple[int, int]:
    prompt = behaviour.prompt_tokens
    if prompt is None:
        sent = (body.get("messages") or body.get("input") or "") if isinstance(body, dict) else ""
        chars = len(json.dumps(sent))
        prompt = max(1, chars // 4)
    completion = behaviour.completion_tokens
    if completion is None:
        completion = max(1, len(text.split()))
    return prompt, completion


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass  # keep test output quiet

    def do_GET(self):  # noqa: N802
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            models = sorted({"gpt-4o-mini", *self.owner._model_defaults, *self.owner._by_model})
            self._json(200, {"object": "list",
                             "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                                      for m in models]})
        else:
            self._error(404, "not found", "invalid_request_error")

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(body)
        path = self.path.split("?", 1)[0].rstrip("/")
        if not (path.endswith("/chat/completions") or path.endswith("/responses")):
            self._error(404, f"unknown path {self.path}", "invalid_request_error")
            return
        refused = self.owner._refusal(body) if path.endswith("/chat/completions") else None
        if refused is not None:
            message, param, code = refused
            self._error(400, message, "invalid_request_error", param=param, code=code)
            return
        behaviour = self.owner._choose(body)
        self._serve(behaviour, body, responses_api=path.endswith("/responses"))

    def _record(self, body: Any) -> None:
        headers = {key.lower(): value for key, value in self.headers.items()}
        with self.owner._lock:
            self.owner.calls.append(Call(self.command, self.path, headers, body))

    def _serve(self, behaviour: Behaviour, body: Any, *, responses_api: bool) -> None:
        if behaviour.delay and self.owner._closed.wait(behaviour.delay):
            return  # server closing: drop the request
        if behaviour.kind == "hang":
            self._serve(behaviour.then or self.owner.default, body, responses_api=responses_api)
            return
        if behaviour.kind == "status":
            headers = {}
            if behaviour.retry_after is not None:
                headers["Retry-After"] = f"{behaviour.retry_after:g}"
            code = behaviour.status
            kind = {429: "rate_limit_exceeded", 400: "invalid_request_error"}.get(code, "server_error")
            self._error(code, behaviour.message or f"fake error {code}", kind, headers)
            return
        if behaviour.kind == "malformed":
            self._send(200, behaviour.raw, "application/json")
            return
        model = (body or {}).get("model", "gpt-4o-mini") if isinstance(body, dict) else "gpt-4o-mini"
        if responses_api:
            self._json(200, self._response_object(behaviour, body, model))
        else:
            self._json(200, self._chat_completion(behaviour, body, model))

    def _chat_completion(self, behaviour: Behaviour, body: Any, model: str) -> dict:
        choices: list[dict] = []
        text = ""
        if behaviour.kind == "reply":
            text = behaviour.text
            message = {"role": "assistant", "content": text, "refusal": None}
            choices = [{"index": 0, "message": message, "finish_reason": behaviour.finish_reason,
                        "logprobs": None}]
        elif behaviour.kind == "refusal":
            message = {"role": "assistant", "content": None, "refusal": behaviour.text}
            choices = [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]
        prompt, completion = _usage_for(body, behaviour, text)
        if behaviour.kind == "empty":
            completion = 0
        return {
            "id": self.owner._next_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }

    def _response_object(self, behaviour: Behaviour, body: Any, model: str) -> dict:
        output: list[dict] = []
        text = ""
        if behaviour.kind == "reply":
            text = behaviour.text
            content = [{"type": "output_text", "text": text, "annotations": []}]
        else:
            content = [{"type": "refusal", "refusal": behaviour.text}] if behaviour.kind == "refusal" else []
        if content:
            output = [{"type": "message", "id": self.owner._next_id("msg"), "role": "assistant",
                       "status": "completed", "content": content}]
        prompt, completion = _usage_for(body, behaviour, text)
        return {
            "id": self.owner._next_id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": "completed",
            "output": output,
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {"input_tokens": prompt, "output_tokens": completion,
                      "total_tokens": prompt + completion,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        }

    def _error(self, http_status: int, message: str, kind: str, headers: dict[str, str] | None = None, *,
               param: str | None = None, code: str | None | object = ...) -> None:
        error_code = kind if code is ... else code
        payload = {"error": {"message": message, "type": kind, "param": param, "code": error_code}}
        self._json(http_status, payload, headers)

    def _json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (ConnectionError, OSError):
            pass  # the client gave up (its timeout); nothing to tell it


__all__ = ["Behaviour", "Call", "FakeOpenAI", "DEFAULT_TEXT", "reply", "status", "hang", "malformed",
           "empty", "refusal"]
