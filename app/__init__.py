"""DadaCat SMS: the Flask application factory."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import load_config
from app.logutil import log_formatter
from app.services import Services, attach
from conversation import ConversationManager, DynamoDBStorage
from conversation.store import ConversationStore

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: read and validate configuration, wire the per-app objects.

    ``config`` overrides the environment (tests pass settings here). Objects
    already built may be injected by passing them as ``STORAGE``, ``MANAGER``,
    ``RESPONDER``, ``OFFLINE_RESPONDER`` or ``MEMORY_KEEPER``.
    """
    settings = load_config(config)
    app = Flask(__name__)
    app.config.update(settings)
    configure_logging(settings["LOG_LEVEL"], settings["LOG_FORMAT"])

    if settings["TRUST_PROXY_HOPS"]:
        hops = settings["TRUST_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]

    storage: ConversationStore = settings.get("STORAGE") or DynamoDBStorage(
        settings["DYNAMODB_TABLE_NAME"],
        endpoint_url=settings["AWS_ENDPOINT_URL"],
        region_name=settings["AWS_REGION"],
        ttl_days=settings["CONVERSATION_TTL_DAYS"],
        auto_create=settings["DYNAMODB_AUTO_CREATE"],
        # Short timeouts and few retries: a texter waits on every call, and
        # Twilio gives up after 15 s.
        connect_timeout=settings["DYNAMODB_CONNECT_TIMEOUT"],
        read_timeout=settings["DYNAMODB_READ_TIMEOUT"],
        max_retries=settings["DYNAMODB_MAX_RETRIES"],
    )
    attach(app, build_services(settings, storage))

    from app import api, body_limit, cli, console, devphone, metrics, webhook

    body_limit.init_app(app)
    webhook.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    devphone.init_app(app)
    console.init_app(app)
    metrics.init_app(app)

    if not settings["TWILIO_VALIDATE_SIGNATURE"]:
        log.warning(
            "TWILIO_VALIDATE_SIGNATURE is off: anyone can post to /sms as any number. "
            "Use this only for local experiments."
        )
    return app


def build_services(settings: Mapping[str, Any], storage: ConversationStore) -> Services:
    """Build every collaborator once, from the settings (or take the injected ones)."""
    from twilio.request_validator import RequestValidator

    from app.bounded import Bounded
    from app.limits import Limits
    from app.memory import build_keeper
    from app.metrics import build_metrics
    from app.persona import build_responders
    from app.text_handler import TextHandler
    from app.turn import TurnSettings
    from app.twilio_rest import build_sender
    from conversation.daily_stats import DailyStats
    from conversation.operator_sessions import OperatorSessions

    responder, offline = build_responders(settings)
    limits = settings.get("LIMITS") or Limits.from_config(storage, settings)
    manager = settings.get("MANAGER") or ConversationManager(
        storage, history_limit=settings["HISTORY_MAX_MESSAGES"]
    )
    memory = build_keeper(settings, storage, responder, limits)
    daily_stats, bounded = DailyStats(storage), Bounded()
    handler = TextHandler(
        TurnSettings.from_config(settings), manager=manager, storage=storage, limits=limits,
        responder=responder, offline_responder=offline, memory=memory, daily_stats=daily_stats,
        bounded=bounded,
    )
    # SENDER: an injected ReplySender (tests); else the Messages API client the settings describe.
    sender = settings.get("SENDER") or build_sender(settings)
    if settings["REPLY_MODE"] != "sync" and sender is not None:
        from dataclasses import replace

        from app.async_replies import build_async_replies

        handler = replace(handler, pipeline=build_async_replies(settings, handler, sender))
    return Services(
        storage=storage,
        manager=manager,
        responder=responder,
        offline_responder=offline,
        limits=limits,
        daily_stats=daily_stats,
        bounded=bounded,
        validator=(RequestValidator(settings["TWILIO_AUTH_TOKEN"])
                   if settings["TWILIO_VALIDATE_SIGNATURE"] else None),
        memory=memory,
        metrics=build_metrics(settings, storage),
        console_sessions=OperatorSessions(storage) if settings.get("ADMIN_API_TOKEN") else None,
        text_handler=handler,
        sender=sender,
    )


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send logs to stderr once, one line each (text, or a JSON object) for a host platform.

    stderr, so that stdout carries only what a command prints (``flask conversations
    export N > file`` is JSON alone); gunicorn and hosts such as Heroku collect both.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_dadacat", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._dadacat = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(log_formatter(log_format))
    root.setLevel(logging.INFO)
    # LOG_LEVEL applies to the bot's own loggers; libraries stay at WARNING so
    # DEBUG never dumps request payloads (numbers, bodies, credentials).
    for name in ("app", "conversation", "scripts"):
        logging.getLogger(name).setLevel(level.upper())
    # httpx2/httpcore2 are the openai client's transport: at INFO they log every model call.
    # twilio's HTTP client logs every Messages API request (query numbers included) at INFO.
    for name in ("botocore", "boto3", "urllib3", "openai", "httpx", "httpcore", "httpx2", "httpcore2",
                 "twilio"):
        logging.getLogger(name).setLevel(logging.WARNING)
