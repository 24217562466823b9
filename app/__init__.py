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
from conversation import ConversationManager, DynamoDBStorage

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

    storage = settings.get("STORAGE") or DynamoDBStorage(
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
    app.extensions["dadacat.storage"] = storage
    app.extensions["dadacat.manager"] = settings.get("MANAGER") or ConversationManager(
        storage, history_limit=settings["HISTORY_MAX_MESSAGES"]
    )

    from app import api, body_limit, cli, console, devphone, memory, metrics, persona, webhook

    body_limit.init_app(app)
    persona.init_app(app)
    webhook.init_app(app)
    memory.init_app(app)
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
    for name in ("botocore", "boto3", "urllib3", "openai", "httpx", "httpcore", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(logging.WARNING)
