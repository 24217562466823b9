"""The app's collaborators, built once by ``create_app`` and reached through typed accessors.

Views and commands ask ``services()`` (or ``services(app)``) for the object they need
(``services().manager``, ``services().limits``), instead of looking things up by string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from flask import Flask, current_app

if TYPE_CHECKING:
    from app.auth_throttle import AuthThrottle
    from app.bounded import Bounded
    from app.config import Settings
    from app.limits import Limits
    from app.memory import MemoryKeeper
    from app.metrics import Metrics
    from app.outbound import ReplySender
    from app.replies import Responder
    from app.text_handler import TextHandler
    from conversation import ConversationManager
    from conversation.clock import Clock
    from conversation.daily_stats import DailyStats
    from conversation.operator_sessions import OperatorSessions
    from conversation.store import ConversationStore

EXTENSION = "dadacat"


class SignatureValidator(Protocol):
    """Checks X-Twilio-Signature (twilio's RequestValidator, which ships no type hints)."""

    def validate(self, uri: str, params: Mapping[str, str], signature: str) -> bool: ...


@dataclass(frozen=True)
class Services:
    """Everything a request may need, the settings included; one per app."""

    settings: Settings
    # Tells the time and waits (the system's unless create_app was given one).
    clock: Clock
    storage: ConversationStore
    manager: ConversationManager
    responder: Responder
    offline_responder: Responder
    limits: Limits
    daily_stats: DailyStats
    bounded: Bounded
    # Twilio's RequestValidator (None when TWILIO_VALIDATE_SIGNATURE is off).
    validator: SignatureValidator | None
    # None when the running summary is off or no model can write it.
    memory: MemoryKeeper | None
    # None when METRICS_ENABLED is off.
    metrics: Metrics | None
    # None when no operator token is set (the console does not exist).
    console_sessions: OperatorSessions | None
    # Counts wrong operator tokens per client address; None without an operator token.
    auth_throttle: AuthThrottle | None
    # The turn of one text, built from the collaborators above.
    text_handler: TextHandler
    # Sends replies through Twilio's Messages API; None when no REST credentials are set.
    sender: ReplySender | None = None


def attach(app: Flask, built: Services) -> None:
    """Give ``app`` its collaborators (once, from ``create_app``)."""
    if EXTENSION in app.extensions:
        raise RuntimeError("this app already has its services")
    app.extensions[EXTENSION] = built


def services(app: Flask | None = None) -> Services:
    """The collaborators of ``app`` (the current app by default)."""
    found: Services = (app or current_app).extensions[EXTENSION]
    return found
