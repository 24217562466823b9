"""The one place that reads configuration: environment, ``.env``, then overrides.

Every setting is listed in ``SETTINGS`` with its default and a one-line help
text; ``.env.example`` and the README's configuration table mirror it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

# Defaults the conversation layer uses too live there, once; the table below takes them.
from conversation import defaults as shared


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None


def _list(name: str, raw: str) -> tuple[str, ...]:
    del name
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _str(name: str, raw: str) -> str:
    del name
    return raw.strip()


@dataclass(frozen=True)
class Setting:
    """One configuration variable."""

    name: str
    default: Any
    parse: Callable[[str, str], Any]
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    # Twilio
    Setting("TWILIO_AUTH_TOKEN", None, _str, "Twilio auth token; signs every webhook request. Required unless validation is off.", True),
    Setting("TWILIO_VALIDATE_SIGNATURE", True, _bool, "Check X-Twilio-Signature on every request. Turning it off logs a warning."),
    Setting("PUBLIC_BASE_URL", None, _str, "Public URL Twilio calls (e.g. https://dadacat.example.com); used to check signatures behind proxies."),
    Setting("TRUST_PROXY_HOPS", 0, _int, "Number of proxies in front of the app whose X-Forwarded-* headers are trusted (Heroku: 1)."),
    Setting("MAX_REQUEST_BYTES", 65536, _int, "Largest request body accepted; bigger ones get 413 unread (Twilio posts a few KB)."),
    # Twilio's Messages API (replies sent after the webhook has answered)
    Setting("TWILIO_ACCOUNT_SID", None, _str, "Twilio account SID (AC...); with TWILIO_AUTH_TOKEN or an API key it lets the bot send replies through the Messages API."),
    Setting("TWILIO_API_KEY_SID", None, _str, "Twilio API key SID (SK...) used instead of the auth token to send messages; needs TWILIO_API_KEY_SECRET."),
    Setting("TWILIO_API_KEY_SECRET", None, _str, "Secret of TWILIO_API_KEY_SID.", True),
    Setting("TWILIO_MESSAGING_SERVICE_SID", None, _str, "Messaging service (MG...) that sends replies; empty: the number the text was sent to sends them."),
    Setting("TWILIO_API_BASE_URL", None, _str, "Base URL of the Messages API (a local stand-in for runs and tests); empty means Twilio (https://api.twilio.com)."),
    # Storage
    Setting("DYNAMODB_TABLE_NAME", shared.TABLE_NAME, _str, "DynamoDB table holding conversations."),
    Setting("AWS_REGION", None, _str, "AWS region of the table. Empty means boto3's own chain (AWS_DEFAULT_REGION, the profile); us-east-1 only with AWS_ENDPOINT_URL."),
    Setting("AWS_ENDPOINT_URL", None, _str, "DynamoDB endpoint; set for DynamoDB Local (http://127.0.0.1:8000). Empty means AWS."),
    Setting("DYNAMODB_AUTO_CREATE", True, _bool, "Create the table on first use if missing (needs CreateTable; off is least privilege)."),
    Setting("DYNAMODB_CONNECT_TIMEOUT", shared.DYNAMODB_CONNECT_TIMEOUT, _float, "Seconds to wait for a connection to DynamoDB."),
    Setting("DYNAMODB_READ_TIMEOUT", shared.DYNAMODB_READ_TIMEOUT, _float, "Seconds to wait for one DynamoDB answer."),
    Setting("DYNAMODB_MAX_RETRIES", shared.DYNAMODB_MAX_RETRIES, _int, "Retries of a throttled or failed DynamoDB request (botocore standard mode); a texter is waiting."),
    Setting("CONVERSATION_TTL_DAYS", None, _float, "Delete conversations this many days after their last message (DynamoDB TTL). Empty keeps them."),
    # Memory
    Setting("HISTORY_MAX_MESSAGES", shared.HISTORY_MAX_MESSAGES, _int, "Most earlier messages sent to the model with each text."),
    Setting("HISTORY_MAX_CHARS", shared.HISTORY_MAX_CHARS, _int, "Most characters of earlier messages sent to the model with each text."),
    Setting("MEMORY_SUMMARY", True, _bool, "Fold messages that leave the window into a running summary the model reads (needs a model)."),
    Setting("MEMORY_UPDATE_EVERY", shared.MEMORY_UPDATE_EVERY, _int, "Update the running summary about once every this many messages (at least 1)."),
    Setting("MEMORY_SUMMARY_MAX_CHARS", shared.MEMORY_SUMMARY_MAX_CHARS, _int, "Longest running summary, in characters (100 to 4000)."),
    # Model
    Setting("OPENAI_API_KEY", None, _str, "OpenAI (or compatible server) API key. Empty: the offline DadaCat persona answers.", True),
    Setting("OPENAI_MODEL", "gpt-4o-mini", _str, "Chat model used for replies."),
    Setting("OPENAI_FALLBACK_MODELS", (), _list, "Comma-separated models tried in order when the first is unavailable."),
    Setting("OPENAI_BASE_URL", None, _str, "Base URL of an OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio)."),
    Setting("OPENAI_TEMPERATURE", 1.0, _float, "Sampling temperature."),
    Setting("OPENAI_MAX_TOKENS", 200, _int, "Most tokens in one reply."),
    Setting("REPLY_DEADLINE_SECONDS", 10.0, _float, "Every text is answered within this many seconds (Twilio waits 15 s); the model gets it minus up to 1.5 s kept for storing its reply."),
    # Reply modes (see the README: what happens to a text from arrival to delivery)
    Setting("REPLY_MODE", None, _str, "sync: every reply in the webhook's answer (TwiML); async: answer at once, send the reply through the Messages API; auto: TwiML when ready within SYNC_REPLY_SECONDS, else the Messages API. Empty: auto when Messages API credentials are set, else sync."),
    Setting("SYNC_REPLY_SECONDS", 8.0, _float, "In auto mode, how long the webhook waits for the reply before answering empty and sending it later (at most 12: Twilio waits 15 s)."),
    Setting("MODEL_TIMEOUT_SECONDS", 120.0, _float, "In auto and async modes, how long a background turn gives the model before the offline persona answers."),
    Setting("RECOVERY_SECONDS", 60.0, _float, "In auto and async modes, a text whose process died is answered by another within about this many seconds."),
    Setting("REPLY_WORKERS", 32, _int, "In auto and async modes, background turns in flight per process (more wait for another process or the recovery sweep)."),
    Setting("PERSONA_FILE", None, _str, "Text file with the system prompt; the built-in DadaCat persona when empty."),
    Setting("REPLY_MAX_CHARS", 306, _int, "Replies are cut to this many characters on a word boundary (at most 1600; 306 is two GSM-7 segments)."),
    Setting("OFFLINE_PERSONA_SEED", None, _int, "Seed for the offline persona (makes its replies repeatable)."),
    # Operators
    Setting("ADMIN_API_TOKEN", None, _str, "Operator token: bearer token of the API under /api/v1 and sign-in of the console at /console. Empty: both answer 404.", True),
    Setting("CONSOLE_SESSION_HOURS", 12.0, _float, "How long a console sign-in lasts before the operator token is asked again."),
    Setting("OPERATOR_AUTH_MAX_FAILURES", 5, _int, "Wrong operator tokens (API bearer or console sign-in) one client address may try per window; its next attempts get 429 until the window ends, even with the right token."),
    Setting("OPERATOR_AUTH_WINDOW_SECONDS", 300, _int, "Length of the fixed windows wrong operator tokens are counted in, per client address (counted in DynamoDB, across instances)."),
    # Development
    Setting("DEV_PHONE_ENABLED", False, _bool, "Serve the dev phone at /dev-phone/ (text the bot from a browser as any number). On in make run; keep off in production."),
    # Abuse and cost control
    Setting("RATE_LIMIT_PER_MINUTE", 6, _int, "Texts per number per minute that get an answer of any kind (reply, reset confirmation, busy line); 0: no limit."),
    Setting("RATE_LIMIT_PER_DAY", 200, _int, "Texts per number per UTC day that get an answer of any kind; 0: no limit."),
    Setting("DAILY_MODEL_CALL_BUDGET", 0, _int, "Model calls per day across all numbers; then the offline persona answers (0: no limit)."),
    Setting("DAILY_TOKEN_BUDGET", 0, _int, "Model tokens per day across all numbers, reserved before each call and settled after; then the offline persona answers (0: no limit)."),
    Setting("ALLOWED_NUMBERS", (), _list, "Comma-separated E.164 numbers; when set, only these are answered."),
    Setting("BLOCKED_NUMBERS", (), _list, "Comma-separated E.164 numbers that are never answered."),
    Setting("TURN_LEASE_SECONDS", 20.0, _float, "How long one number's turn may hold its lease before another worker may take over."),
    # Operations
    Setting("LOG_LEVEL", "INFO", _str, "Level of the bot's own logs; message bodies are never logged at INFO or above."),
    Setting("METRICS_ENABLED", False, _bool, "Serve Prometheus metrics at /metrics (needs METRICS_TOKEN). Off: /metrics answers 404."),
    Setting("METRICS_TOKEN", None, _str, "Bearer token Prometheus presents to read /metrics.", True),
    Setting("LOG_FORMAT", "text", _str, "text: one readable line per event; json: one JSON object per line with the same fields."),
    Setting("GUNICORN_THREADS", 32, _int, "Threads per gunicorn worker (gunicorn.conf.py reads it from the environment); with REPLY_WORKERS it sizes each worker's DynamoDB connection pool. In auto mode at most half of them wait for a reply at once."),
    Setting("DOTENV_FILE", ".env", _str, "File of settings read at start-up, below the environment (empty: none). Only read from the environment."),
)

# Every setting's default by name: the one place code outside this table takes a default from.
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The bot's validated settings, read once: one typed attribute per row of ``SETTINGS``.

    The attribute is the variable's name in lower case (``REPLY_MAX_CHARS`` ->
    ``settings.reply_max_chars``). Built only by ``load_config``, so the defaults stay
    in the table above; a row without an attribute (or the reverse) fails at start-up.
    """

    twilio_auth_token: str | None
    twilio_validate_signature: bool
    public_base_url: str | None
    trust_proxy_hops: int
    max_request_bytes: int
    twilio_account_sid: str | None
    twilio_api_key_sid: str | None
    twilio_api_key_secret: str | None
    twilio_messaging_service_sid: str | None
    twilio_api_base_url: str | None
    dynamodb_table_name: str
    aws_region: str | None
    aws_endpoint_url: str | None
    dynamodb_auto_create: bool
    dynamodb_connect_timeout: float
    dynamodb_read_timeout: float
    dynamodb_max_retries: int
    conversation_ttl_days: float | None
    history_max_messages: int
    history_max_chars: int
    memory_summary: bool
    memory_update_every: int
    memory_summary_max_chars: int
    openai_api_key: str | None
    openai_model: str
    openai_fallback_models: tuple[str, ...]
    openai_base_url: str | None
    openai_temperature: float
    openai_max_tokens: int
    reply_deadline_seconds: float
    reply_mode: str
    sync_reply_seconds: float
    model_timeout_seconds: float
    recovery_seconds: float
    reply_workers: int
    persona_file: str | None
    reply_max_chars: int
    offline_persona_seed: int | None
    admin_api_token: str | None
    console_session_hours: float
    operator_auth_max_failures: int
    operator_auth_window_seconds: int
    dev_phone_enabled: bool
    rate_limit_per_minute: int
    rate_limit_per_day: int
    daily_model_call_budget: int
    daily_token_budget: int
    allowed_numbers: tuple[str, ...]
    blocked_numbers: tuple[str, ...]
    turn_lease_seconds: float
    log_level: str
    metrics_enabled: bool
    metrics_token: str | None
    log_format: str
    gunicorn_threads: int
    dotenv_file: str

    def env(self) -> dict[str, Any]:
        """Return the values keyed by variable name (for messages and the docs, not for code paths)."""
        return {setting.name: getattr(self, setting.name.lower()) for setting in SETTINGS}



_FROM_ENVIRONMENT = object()

# Objects that were once passed as settings; create_app takes them as keyword arguments now.
_COLLABORATORS = {
    "STORAGE", "MANAGER", "RESPONDER", "OFFLINE_RESPONDER", "MEMORY_KEEPER", "LIMITS", "SENDER",
}


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Any = _FROM_ENVIRONMENT,
    given: Collection[str] = (),
) -> Settings:
    """Read settings from the settings file, the environment and ``overrides``, in that order.

    The settings file is ``DOTENV_FILE`` from the environment (``.env`` by
    default; empty for none) unless ``dotenv_path`` names one.
    Values in ``overrides`` may be already typed (tests) or strings; every name must be a setting.
    ``given`` names the collaborators the caller brings itself (``"storage"``, ``"sender"``):
    a given store is not AWS, a given sender stands for the Messages API credentials.
    :raises ConfigError: naming the first unknown, missing or malformed variable.
    """
    source = os.environ if environ is None else environ
    if dotenv_path is _FROM_ENVIRONMENT:
        dotenv_path = source.get("DOTENV_FILE", ".env")
    raw: dict[str, Any] = {}
    if dotenv_path and Path(dotenv_path).is_file():
        raw.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        raw.pop("DOTENV_FILE", None)
    raw.update({name: source[name] for name in _BY_NAME if name in source})
    for name, value in (overrides or {}).items():
        if name in _COLLABORATORS:
            raise ConfigError(f"{name} is not a setting: pass {name.lower()}= to create_app")
        if name not in _BY_NAME:
            raise ConfigError(f"{name} is not a setting (see app/config.py SETTINGS)")
        raw[name] = value
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value = raw.get(setting.name)
        if value is None or (isinstance(value, str) and value.strip() == ""):
            values[setting.name] = setting.default
        elif isinstance(value, str):
            values[setting.name] = setting.parse(setting.name, value)
        else:
            values[setting.name] = value
    _validate(values, given=frozenset(given))
    return Settings(**{name.lower(): value for name, value in values.items()})


def _validate(config: dict[str, Any], *, given: frozenset[str] = frozenset()) -> None:
    if config["TWILIO_VALIDATE_SIGNATURE"] and not config["TWILIO_AUTH_TOKEN"]:
        raise ConfigError(
            "TWILIO_AUTH_TOKEN is required (it checks that requests come from Twilio); "
            "set it, or set TWILIO_VALIDATE_SIGNATURE=false for local experiments only"
        )
    if not 1 <= config["REPLY_MAX_CHARS"] <= 1600:
        raise ConfigError("REPLY_MAX_CHARS must be between 1 and 1600")
    if config["REPLY_DEADLINE_SECONDS"] <= 0 or config["REPLY_DEADLINE_SECONDS"] > 14:
        raise ConfigError("REPLY_DEADLINE_SECONDS must be above 0 and at most 14 (Twilio waits 15 s)")
    for name in ("HISTORY_MAX_MESSAGES", "HISTORY_MAX_CHARS", "RATE_LIMIT_PER_MINUTE",
                 "RATE_LIMIT_PER_DAY", "DAILY_MODEL_CALL_BUDGET", "DAILY_TOKEN_BUDGET",
                 "TRUST_PROXY_HOPS"):
        if config[name] < 0:
            raise ConfigError(f"{name} must not be negative")
    if config["MAX_REQUEST_BYTES"] < 4096:
        raise ConfigError("MAX_REQUEST_BYTES must be at least 4096 (a Twilio post with media is a few KB)")
    if config["MEMORY_UPDATE_EVERY"] < 1:
        raise ConfigError("MEMORY_UPDATE_EVERY must be at least 1")
    if not 100 <= config["MEMORY_SUMMARY_MAX_CHARS"] <= 4000:
        raise ConfigError("MEMORY_SUMMARY_MAX_CHARS must be between 100 and 4000")
    if config["PERSONA_FILE"] and not Path(config["PERSONA_FILE"]).is_file():
        raise ConfigError(f"PERSONA_FILE {config['PERSONA_FILE']!r} does not exist")
    for name in ("DYNAMODB_CONNECT_TIMEOUT", "DYNAMODB_READ_TIMEOUT"):
        if not 0 < config[name] <= 30:
            raise ConfigError(f"{name} must be above 0 and at most 30 seconds")
    if not 0 <= config["DYNAMODB_MAX_RETRIES"] <= 10:
        raise ConfigError("DYNAMODB_MAX_RETRIES must be between 0 and 10")
    if config["METRICS_ENABLED"] and not config["METRICS_TOKEN"]:
        raise ConfigError("METRICS_TOKEN is required when METRICS_ENABLED is on (metrics are never public)")
    if config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, not {config['LOG_FORMAT']!r}")
    # Production-like: the bot would store in AWS DynamoDB itself (no local endpoint, no store given).
    production_like = "storage" not in given and not config["AWS_ENDPOINT_URL"]
    if config["DEV_PHONE_ENABLED"] and not config["TWILIO_VALIDATE_SIGNATURE"] and production_like:
        raise ConfigError(
            "DEV_PHONE_ENABLED is refused with TWILIO_VALIDATE_SIGNATURE off against AWS DynamoDB "
            "(a production-like setup): turn signature checks on, or turn the dev phone off"
        )
    if not 0 < config["CONSOLE_SESSION_HOURS"] <= 24 * 30:
        raise ConfigError("CONSOLE_SESSION_HOURS must be above 0 and at most 720 (30 days)")
    if not 1 <= config["OPERATOR_AUTH_MAX_FAILURES"] <= 1000:
        raise ConfigError("OPERATOR_AUTH_MAX_FAILURES must be between 1 and 1000")
    if not 10 <= config["OPERATOR_AUTH_WINDOW_SECONDS"] <= 86400:
        raise ConfigError("OPERATOR_AUTH_WINDOW_SECONDS must be between 10 and 86400 (a day)")
    if config["CONVERSATION_TTL_DAYS"] is not None and config["CONVERSATION_TTL_DAYS"] <= 0:
        raise ConfigError("CONVERSATION_TTL_DAYS must be positive (or empty to keep conversations)")
    _validate_rest(config)
    _validate_modes(config, sender_given="sender" in given)


_SID = {"TWILIO_ACCOUNT_SID": "AC", "TWILIO_API_KEY_SID": "SK", "TWILIO_MESSAGING_SERVICE_SID": "MG"}


def _validate_rest(config: dict[str, Any]) -> None:
    """Check the Messages API settings: SID shapes, a complete credential, an http(s) base URL."""
    for name, prefix in _SID.items():
        value = config[name]
        if value and not re.fullmatch(prefix + "[0-9a-fA-F]{32}", value):
            raise ConfigError(f"{name} must be {prefix} followed by 32 hexadecimal digits")
    if bool(config["TWILIO_API_KEY_SID"]) != bool(config["TWILIO_API_KEY_SECRET"]):
        raise ConfigError("TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET are set together or not at all")
    if not config["TWILIO_ACCOUNT_SID"]:
        for name in ("TWILIO_API_KEY_SID", "TWILIO_MESSAGING_SERVICE_SID"):
            if config[name]:
                raise ConfigError(f"{name} needs TWILIO_ACCOUNT_SID (the account that sends)")
    elif not rest_configured(config):
        raise ConfigError(
            "TWILIO_ACCOUNT_SID needs a secret to send messages: TWILIO_AUTH_TOKEN, "
            "or TWILIO_API_KEY_SID with TWILIO_API_KEY_SECRET"
        )
    base = config["TWILIO_API_BASE_URL"]
    if base and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", base):
        raise ConfigError(f"TWILIO_API_BASE_URL must be an http(s) URL, not {base!r}")


REPLY_MODES = ("auto", "sync", "async")


def _validate_modes(config: dict[str, Any], *, sender_given: bool = False) -> None:
    """Resolve REPLY_MODE's default and check the asynchronous settings."""
    mode = (config["REPLY_MODE"] or "").lower() or (
        "auto" if rest_configured(config) or sender_given else "sync")
    if mode not in REPLY_MODES:
        raise ConfigError(f"REPLY_MODE must be auto, sync or async, not {config['REPLY_MODE']!r}")
    if mode != "sync" and not rest_configured(config) and not sender_given:
        raise ConfigError(
            f"REPLY_MODE={mode} sends replies through Twilio's Messages API: set TWILIO_ACCOUNT_SID "
            "with TWILIO_AUTH_TOKEN (or TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET), or use sync"
        )
    config["REPLY_MODE"] = mode
    if not 0 < config["SYNC_REPLY_SECONDS"] <= 12:
        raise ConfigError("SYNC_REPLY_SECONDS must be above 0 and at most 12 (Twilio waits 15 s)")
    if not 1 <= config["MODEL_TIMEOUT_SECONDS"] <= 900:
        raise ConfigError("MODEL_TIMEOUT_SECONDS must be between 1 and 900")
    if not 4 <= config["RECOVERY_SECONDS"] <= 3600:
        raise ConfigError("RECOVERY_SECONDS must be between 4 and 3600")
    if not 1 <= config["REPLY_WORKERS"] <= 1024:
        raise ConfigError("REPLY_WORKERS must be between 1 and 1024")
    if not 1 <= config["GUNICORN_THREADS"] <= 1024:
        raise ConfigError("GUNICORN_THREADS must be between 1 and 1024")


def rest_configured(config: Settings | Mapping[str, Any]) -> bool:
    """Return True when the settings let the bot send messages through Twilio's Messages API."""
    if isinstance(config, Settings):
        config = config.env()
    return bool(config.get("TWILIO_ACCOUNT_SID") and (
        config.get("TWILIO_AUTH_TOKEN")
        or (config.get("TWILIO_API_KEY_SID") and config.get("TWILIO_API_KEY_SECRET"))))

