"""DadaCat SMS: the Flask application factory."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings, load_config
from app.limits import Limits
from app.logutil import log_formatter
from app.memory import MemoryKeeper
from app.outbound import ReplySender
from app.replies import Responder
from app.services import Services, attach
from conversation import ConversationManager, DynamoDBStorage
from conversation.clock import Clock, SystemClock
from conversation.store import ConversationStore

log = logging.getLogger(__name__)


def create_app(
    config: Mapping[str, Any] | Settings | None = None,
    *,
    storage: ConversationStore | None = None,
    manager: ConversationManager | None = None,
    responder: Responder | None = None,
    offline_responder: Responder | None = None,
    memory_keeper: MemoryKeeper | None = None,
    limits: Limits | None = None,
    sender: ReplySender | None = None,
    clock: Clock | None = None,
) -> Flask:
    """Build the app: read and validate configuration once, build every collaborator once.

    ``config`` is ready ``Settings`` or overrides of the environment by variable name
    (tests pass settings here). Collaborators already built are passed by keyword
    (``storage=``, ``manager=``, ``responder=``, ``offline_responder=``,
    ``memory_keeper=``, ``limits=``, ``sender=``, ``clock=``); the rest are built from the settings.
    """
    given = [name for name, value in (("storage", storage), ("sender", sender)) if value is not None]
    settings = config if isinstance(config, Settings) else load_config(config, given=given)
    app = Flask(__name__)
    configure_logging(settings.log_level, settings.log_format)

    if settings.trust_proxy_hops:
        hops = settings.trust_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]

    if storage is None:
        storage = DynamoDBStorage(
            settings.dynamodb_table_name,
            endpoint_url=settings.aws_endpoint_url,
            region_name=settings.aws_region,
            ttl_days=settings.conversation_ttl_days,
            auto_create=settings.dynamodb_auto_create,
            # Short timeouts and few retries: a texter waits on every call, and
            # Twilio gives up after 15 s.
            connect_timeout=settings.dynamodb_connect_timeout,
            read_timeout=settings.dynamodb_read_timeout,
            max_retries=settings.dynamodb_max_retries,
            max_pool_connections=dynamodb_connections(settings),
        )
    attach(app, build_services(
        settings, storage, manager=manager, responder=responder, offline_responder=offline_responder,
        memory_keeper=memory_keeper, limits=limits, sender=sender, clock=clock,
    ))

    from app import api, body_limit, cli, console, devphone, metrics, webhook

    body_limit.init_app(app)
    webhook.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    devphone.init_app(app)
    console.init_app(app)
    metrics.init_app(app)

    if not settings.twilio_validate_signature:
        log.warning(
            "TWILIO_VALIDATE_SIGNATURE is off: anyone can post to /sms as any number. "
            "Use this only for local experiments."
        )
    return app


def dynamodb_connections(settings: Settings) -> int:
    """Return how many connections a worker's DynamoDB client keeps: one per thread that may call it.

    Every thread of the worker shares the client: gunicorn's request threads, the background
    turns (REPLY_WORKERS), the after-answer steps, the summary updates and the recovery sweep.
    A step bounded by the reply deadline runs while its request thread waits, so it needs none
    of its own.
    """
    from app.bounded import BACKGROUND_WORKERS
    from app.memory import SUMMARY_WORKERS

    return settings.gunicorn_threads + settings.reply_workers + BACKGROUND_WORKERS + SUMMARY_WORKERS + 1


def build_services(
    settings: Settings,
    storage: ConversationStore,
    *,
    manager: ConversationManager | None = None,
    responder: Responder | None = None,
    offline_responder: Responder | None = None,
    memory_keeper: MemoryKeeper | None = None,
    limits: Limits | None = None,
    sender: ReplySender | None = None,
    clock: Clock | None = None,
) -> Services:
    """Build every collaborator once, from the settings (or take the ones given)."""
    from twilio.request_validator import RequestValidator

    from app.auth_throttle import AuthThrottle
    from app.bounded import Bounded
    from app.memory import build_keeper
    from app.metrics import build_metrics
    from app.persona import build_responders
    from app.text_handler import TextHandler
    from app.twilio_rest import build_sender
    from conversation.daily_stats import DailyStats
    from conversation.operator_sessions import OperatorSessions

    responder, offline = build_responders(settings, responder=responder, offline=offline_responder)
    clock = clock or SystemClock()
    limits = limits or Limits.from_settings(storage, settings, clock)
    manager = manager or ConversationManager(storage, history_limit=settings.history_max_messages)
    memory = memory_keeper or build_keeper(settings, storage, responder, limits)
    daily_stats, bounded = DailyStats(storage), Bounded()
    handler = TextHandler(
        settings, manager=manager, storage=storage, limits=limits,
        responder=responder, offline_responder=offline, memory=memory, daily_stats=daily_stats,
        bounded=bounded, clock=clock,
    )
    # A given ReplySender (tests); else the Messages API client the settings describe.
    sender = sender or build_sender(settings)
    if settings.reply_mode != "sync" and sender is not None:
        from dataclasses import replace

        from app.async_replies import build_async_replies

        handler = replace(handler, pipeline=build_async_replies(settings, handler, sender))
    return Services(
        settings=settings,
        clock=clock,
        storage=storage,
        manager=manager,
        responder=responder,
        offline_responder=offline,
        limits=limits,
        daily_stats=daily_stats,
        bounded=bounded,
        validator=(RequestValidator(settings.twilio_auth_token)
                   if settings.twilio_validate_signature else None),
        memory=memory,
        metrics=build_metrics(settings, storage),
        console_sessions=OperatorSessions(storage) if settings.admin_api_token else None,
        auth_throttle=AuthThrottle(
            storage, max_failures=settings.operator_auth_max_failures,
            window_seconds=settings.operator_auth_window_seconds, clock=clock,
        ) if settings.admin_api_token else None,
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
