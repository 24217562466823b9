"""DadaCat's replies: from an OpenAI-compatible model, or from the offline persona (app/offline_persona.py).

The webhook depends on one interface only::

    responder.reply(history, text, *, deadline=None, media_urls=(), message_id=None,
                    summary=None) -> Reply

``deadline`` is an absolute ``time.monotonic()`` instant by which the reply must be ready
(None: the responder's own ``deadline_seconds`` from now). ``history`` holds the
conversation's earlier messages (oldest first) and EXCLUDES the text being answered; ``text``
is that new text. A message in ``history`` whose id equals ``message_id`` is dropped, so a
caller that loaded the window after recording the text can pass it through unchanged.
``summary`` is the conversation's running summary of messages older than the window
(see ``conversation.memory``); the model reads it before the window, the offline persona
does without.
``reply`` never raises and never returns empty text.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from app.config import DEFAULTS, ConfigError, Settings
from app.model_compat import ModelCompat, refusal_reason, refuses_parameter
from app.offline_persona import OfflineResponder
from app.replies import LAST_RESORT, OFFLINE_MODEL, Reply, Responder, zero_usage
from app.sms import truncate
from conversation.memory import summary_message
from conversation.window import context_window

log = logging.getLogger(__name__)

# Re-exported: the webhook, scripts and tests import these from here.
__all__ = ["LAST_RESORT", "OFFLINE_MODEL", "OfflineResponder", "OpenAIResponder", "Reply",
           "Responder", "build_responders", "load_system_prompt"]

PROMPT_FILE = Path(__file__).with_name("persona_prompt.txt")


# --- the persona prompt ------------------------------------------------------------------


def load_system_prompt(
    path: str | Path | None = None, *, max_chars: int = DEFAULTS["REPLY_MAX_CHARS"]
) -> str:
    """Read the system prompt (the built-in DadaCat one unless ``path``), filling ``{max_chars}``.

    :raises ConfigError: when the file is empty.
    """
    source = Path(path) if path else PROMPT_FILE
    text = source.read_text(encoding="utf-8").strip()
    if not text:
        raise ConfigError(f"PERSONA_FILE {str(source)!r} is empty")
    # A plain replace, not str.format: persona files may contain other braces.
    return text.replace("{max_chars}", str(max_chars))


# --- shared helpers ----------------------------------------------------------------------


def describe_media(count: int) -> str:
    """Say in words that attachments were sent (the model sees no media)."""
    if count <= 0:
        return ""
    return "[sent an attachment]" if count == 1 else f"[sent {count} attachments]"


def chat_content(content: str, media_urls: Sequence[str] = ()) -> str:
    """Return the text a model should see for a message, media described in words."""
    parts = [part for part in (content.strip(), describe_media(len(media_urls))) if part]
    return " ".join(parts)


def _field(message: Any, name: str, default: Any = None) -> Any:
    if isinstance(message, dict):
        return message.get(name, default)
    return getattr(message, name, default)


# --- the model-backed responder ----------------------------------------------------------


class _AttemptFailed(Exception):
    """One model call gave nothing usable; ``kind`` says why, ``retry`` whether to try again."""

    def __init__(self, kind: str, *, retry: bool = True, wait: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry = retry
        self.wait = wait


class _ParameterRefused(Exception):
    """The server does not take this reply-length parameter (a 400 naming it)."""


class OpenAIResponder:
    """Answer with an OpenAI-compatible Chat Completions model, inside one deadline.

    The messages sent are the system prompt, then the newest earlier messages that fit both
    ``history_max_messages`` and ``history_max_chars`` (oldest first; system messages skipped),
    then the new text exactly once. One deadline bounds every attempt and pause together: each
    call's timeout is the time left. A 429, 5xx, timeout, connection error, malformed body,
    empty answer or refusal is retried on the same model (up to ``attempts_per_model``) while
    time remains, then the next of ``fallback_models`` is tried; other 4xx answers skip straight
    to the next model. When nothing works in time, the offline persona answers
    (``fallback="error"``).
    """

    MIN_ATTEMPT_SECONDS = 0.2  # below this an HTTP call cannot succeed; stop and fall back

    def __init__(
        self,
        api_key: str,
        model: str = DEFAULTS["OPENAI_MODEL"],
        *,
        base_url: str | None = None,
        fallback_models: Sequence[str] = (),
        temperature: float = DEFAULTS["OPENAI_TEMPERATURE"],
        max_tokens: int = DEFAULTS["OPENAI_MAX_TOKENS"],
        deadline_seconds: float = DEFAULTS["REPLY_DEADLINE_SECONDS"],
        system_prompt: str | None = None,
        history_max_messages: int = DEFAULTS["HISTORY_MAX_MESSAGES"],
        history_max_chars: int = DEFAULTS["HISTORY_MAX_CHARS"],
        max_chars: int = DEFAULTS["REPLY_MAX_CHARS"],
        attempts_per_model: int = 2,
        backoff_seconds: float = 0.25,
        offline: Responder | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required (use OfflineResponder when there is none)")
        self.api_key = api_key
        self.model = model
        self.base_url = base_url or None
        self.models = tuple(dict.fromkeys([model, *fallback_models]))  # ordered, no repeats
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.deadline_seconds = deadline_seconds
        self.system_prompt = system_prompt or load_system_prompt(max_chars=max_chars)
        self.history_max_messages = history_max_messages
        self.history_max_chars = history_max_chars
        self.max_chars = max_chars
        self.attempts_per_model = max(1, attempts_per_model)
        self.backoff_seconds = backoff_seconds
        self.offline: Responder = offline or OfflineResponder(max_chars=max_chars)
        # Built here (in the app factory), not at import and not on the first text: importing
        # and building the client takes over a second, which the first texter would pay.
        import openai

        self._client: Any = openai.OpenAI(api_key=api_key, base_url=self.base_url, max_retries=0,
                                          timeout=deadline_seconds)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.compat = ModelCompat(self.base_url)

    # Worker threads are made on first use: threads made before gunicorn forks do not survive it.
    def _get_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                # Every request thread waiting on the model holds one of these, so the
                # pool must not be smaller than gunicorn's threads (threads start lazily).
                self._executor = ThreadPoolExecutor(max_workers=256, thread_name_prefix="dadacat-model")
            return self._executor

    def close(self) -> None:
        """Release the HTTP client and worker threads."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def build_messages(self, history: Sequence[Any], text: str, *, media_urls: Sequence[str] = (),
                       message_id: str | None = None, summary: str | None = None) -> list[dict[str, str]]:
        """Return the chat messages to send: system prompt, summary, trimmed window, new text."""
        def rendered(message: Any) -> str:
            return chat_content(_field(message, "content", "") or "", _field(message, "media_urls", ()) or ())

        kept = context_window(
            history,
            max_messages=self.history_max_messages,
            max_chars=self.history_max_chars,
            text_id=message_id,
            size=lambda message: len(rendered(message)),
        )
        window = [{"role": _field(message, "role", "user"), "content": rendered(message)} for message in kept]
        current = chat_content(text or "", media_urls) or "[sent an empty text]"
        memory = summary_message(summary)
        return [{"role": "system", "content": self.system_prompt}, *([memory] if memory else []),
                *window, {"role": "user", "content": current}]

    def token_estimate(self, history: Sequence[Any], text: str, *, media_urls: Sequence[str] = (),
                       message_id: str | None = None, summary: str | None = None) -> int:
        """Return a generous estimate of the tokens one call for this text uses: prompt plus reply.

        Reserved against the daily token budget before the call (no tokenizer here: a
        token is rarely shorter than two bytes of UTF-8, plus a few per message).
        """
        messages = self.build_messages(history, text, media_urls=media_urls, message_id=message_id,
                                       summary=summary)
        prompt = sum(len(m["content"].encode("utf-8")) // 2 + 4 for m in messages)
        return prompt + self.max_tokens

    def reply(self, history: Sequence[Any], text: str, *, deadline: float | None = None,
              media_urls: Sequence[str] = (), message_id: str | None = None,
              summary: str | None = None) -> Reply:
        """Return the model's reply, or the offline persona's when no model answers in time.

        ``deadline`` is a ``time.monotonic()`` instant; the reply is ready by it and never
        takes longer than ``deadline_seconds``.
        """
        started = time.monotonic()
        ends = started + self.deadline_seconds
        if deadline is not None:
            ends = min(ends, deadline)
        usage = zero_usage()
        attempts = 0
        last_error = "deadline"
        try:
            messages = self.build_messages(history, text, media_urls=media_urls,
                                           message_id=message_id, summary=summary)
            for index, model in enumerate(self.models):
                for attempt in range(self.attempts_per_model):
                    remaining = ends - time.monotonic()
                    if remaining < self.MIN_ATTEMPT_SECONDS:
                        raise _AttemptFailed(last_error, retry=False)
                    attempts += 1
                    try:
                        answer, answered_by = self._call(model, messages, remaining, usage)
                    except _AttemptFailed as failure:
                        last_error = failure.kind
                        log.warning("model %s attempt %d failed: %s", model, attempt + 1, failure.kind)
                        if not failure.retry or attempt + 1 >= self.attempts_per_model:
                            break
                        pause = self.backoff_seconds * (2 ** attempt)
                        if failure.wait is not None:
                            pause = max(pause, failure.wait)
                        if ends - time.monotonic() - pause < self.MIN_ATTEMPT_SECONDS:
                            break  # no time to wait and retry here; the next model may do better
                        time.sleep(pause)
                        continue
                    return Reply(
                        # One line of words (models like line breaks), fitted as every reply is.
                        text=truncate(" ".join(answer.split()), self.max_chars),
                        model=answered_by,
                        usage=usage,
                        latency_ms=(time.monotonic() - started) * 1000,
                        fallback=None if index == 0 else "fallback-model",
                        attempts=attempts,
                        error=None if attempts == 1 else last_error,
                    )
        except _AttemptFailed:
            pass
        except Exception:  # the texter must still get an answer; the cause goes to the log
            log.exception("unexpected failure while asking the model")
            last_error = "internal"
        stand_in = self.offline.reply(history, text, media_urls=media_urls)
        return Reply(
            text=truncate(stand_in.text, self.max_chars) or truncate(LAST_RESORT, self.max_chars),
            model=OFFLINE_MODEL,
            usage=usage,
            latency_ms=(time.monotonic() - started) * 1000,
            fallback="error",
            attempts=attempts,
            error=last_error,
        )

    def summarise(self, messages: list[dict[str, str]], *, max_tokens: int = 400,
                  timeout: float = 30.0) -> tuple[str | None, int]:
        """Ask for a conversation summary off the reply path: one try per model, in order.

        Returns (text, tokens used); text is None when no model gave one, and the
        caller keeps the summary it had.
        """
        tokens = 0
        for model in self.models:
            try:
                # The length parameter this model is known to take (see app/model_compat.py).
                parameter = self.compat.parameters(model)[0]
                response = self._client.chat.completions.create(
                    model=model, messages=messages, temperature=self.temperature, timeout=timeout,
                    **{parameter: max_tokens},
                )
            except Exception as exc:  # any failure: keep the previous summary
                log.warning("summary by model %s failed: %s", model, type(exc).__name__)
                continue
            counted = getattr(response, "usage", None)
            tokens += int(getattr(counted, "total_tokens", 0) or 0)
            choices = getattr(response, "choices", None) or []
            message = choices[0].message if choices else None
            content = (getattr(message, "content", None) or "").strip() if message else ""
            if content and not getattr(message, "refusal", None):
                return content, tokens
            log.warning("summary by model %s came back empty", model)
        return None, tokens

    def _call(self, model: str, messages: list[dict[str, str]], remaining: float,
              usage: dict[str, int]) -> tuple[str, str]:
        """Make one call within ``remaining`` seconds; add its usage; return (text, model).

        The reply-length parameter the server refuses is swapped for the other one within
        the same attempt (see app/model_compat.py).
        """
        ends = time.monotonic() + remaining
        refused: list[str] = []
        for parameter in self.compat.parameters(model):
            left = ends - time.monotonic()
            if left < self.MIN_ATTEMPT_SECONDS:
                raise _AttemptFailed("timeout")
            try:
                response = self._request(model, messages, parameter, left)
            except _ParameterRefused:
                refused.append(parameter)
                continue
            self.compat.worked(model, parameter)
            break
        else:
            self.compat.refused(model, f"it refuses both {' and '.join(refused)}")
            raise _AttemptFailed("parameters_refused", retry=False)
        counted = getattr(response, "usage", None)
        if counted is not None:
            for key in usage:
                usage[key] += int(getattr(counted, key, 0) or 0)
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise _AttemptFailed("empty")
        message = choices[0].message
        if getattr(message, "refusal", None):
            raise _AttemptFailed("refusal")
        content = (getattr(message, "content", None) or "").strip()
        if not content:
            raise _AttemptFailed("empty")
        return content, getattr(response, "model", None) or model

    def _request(self, model: str, messages: list[dict[str, str]], parameter: str, remaining: float) -> Any:
        """Send one request capped by ``parameter``; raise _ParameterRefused or _AttemptFailed."""
        future = self._get_executor().submit(
            self._client.chat.completions.create,
            model=model,
            messages=messages,
            temperature=self.temperature,
            timeout=remaining,
            **{parameter: self.max_tokens},
        )
        try:
            # httpx's timeout is per phase (connect, each read); this bounds the call as a whole.
            return future.result(timeout=remaining)
        except FutureTimeout:
            future.cancel()
            raise _AttemptFailed("timeout") from None
        except Exception as exc:
            if refuses_parameter(exc, parameter):
                raise _ParameterRefused(parameter) from exc
            failure = _classify(exc)
            if not failure.retry and failure.kind.startswith("http_4"):
                self.compat.refused(model, refusal_reason(exc))
            raise failure from exc


def _classify(exc: BaseException) -> _AttemptFailed:
    """Turn an exception from the openai client into a retry decision."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return _AttemptFailed("timeout")
    if isinstance(exc, openai.APIConnectionError):
        return _AttemptFailed("connection")
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if code == 429:
            return _AttemptFailed("rate_limited", wait=_retry_after(exc.response))
        if code >= 500 or code in (408, 409):
            return _AttemptFailed(f"http_{code}", wait=_retry_after(exc.response))
        # 400/401/403/404/422: this model will not answer this request; try the next one.
        return _AttemptFailed(f"http_{code}", retry=False)
    import pydantic

    # Only what a malformed answer raises; a TypeError from our own call is a bug
    # and goes to the log with its traceback.
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | pydantic.ValidationError):
        return _AttemptFailed("malformed")
    if isinstance(exc, openai.OpenAIError):
        return _AttemptFailed(type(exc).__name__)
    raise exc


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) * scale)
            except ValueError:
                return None  # an HTTP date; the deadline decides instead
    return None


# --- wiring ------------------------------------------------------------------------------


def build_responders(
    settings: Settings, *, responder: Responder | None = None, offline: Responder | None = None
) -> tuple[Responder, Responder]:
    """The configured responder and the offline one that stands in for it (either may be given)."""
    max_chars = settings.reply_max_chars
    offline = offline or OfflineResponder(seed=settings.offline_persona_seed, max_chars=max_chars)
    # Read the prompt even when offline, so a broken PERSONA_FILE stops start-up either way.
    system_prompt = load_system_prompt(settings.persona_file, max_chars=max_chars)
    if responder is None:
        if settings.openai_api_key:
            model = OpenAIResponder(
                settings.openai_api_key,
                settings.openai_model,
                base_url=settings.openai_base_url,
                fallback_models=settings.openai_fallback_models,
                temperature=settings.openai_temperature,
                max_tokens=settings.openai_max_tokens,
                # Every turn passes its own deadline; this caps them all. Background turns
                # (auto/async modes) may give the model MODEL_TIMEOUT_SECONDS.
                deadline_seconds=max(
                    settings.reply_deadline_seconds,
                    settings.model_timeout_seconds if settings.reply_mode != "sync" else 0.0,
                ),
                system_prompt=system_prompt,
                history_max_messages=settings.history_max_messages,
                history_max_chars=settings.history_max_chars,
                max_chars=max_chars,
                offline=offline,
            )
            log.info(
                "model replies on: %s at %s (fallbacks: %s), deadline %.1f s",
                model.model, model.base_url or "api.openai.com",
                ", ".join(model.models[1:]) or "none", model.deadline_seconds,
            )
            responder = model
        else:
            responder = offline
            hint = (" OPENAI_BASE_URL is set: local servers accept any non-empty key."
                    if settings.openai_base_url else "")
            log.warning(
                "model replies are off: OPENAI_API_KEY is not set, so the offline DadaCat persona "
                "answers every text. Set OPENAI_API_KEY (and OPENAI_MODEL, optionally "
                "OPENAI_BASE_URL) to turn them on.%s", hint,
            )
    return responder, offline
