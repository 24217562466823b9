"""A reply and what producing it cost: the one type every responder returns.

Shared by the model-backed responder (app/persona.py) and the offline persona
(app/offline_persona.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

OFFLINE_MODEL = "dadacat-offline"
LAST_RESORT = "mrrp. the wires are tangled in my whiskers. say it again?"


def zero_usage() -> dict[str, int]:
    """Return a usage block with every count at zero."""
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@dataclass
class Reply:
    """A reply's text plus what producing it cost.

    ``fallback`` is None (the first model answered), ``"fallback-model"`` (a later model
    answered), ``"offline"`` (the offline persona answered by design) or ``"error"`` (every
    model failed within the deadline and the offline persona stood in; ``error`` says why).
    """

    text: str
    model: str | None
    usage: dict[str, int] = field(default_factory=zero_usage)
    latency_ms: float = 0.0
    fallback: str | None = None
    attempts: int = 0
    error: str | None = None

    def metadata(self) -> dict[str, Any]:
        """Return a JSON-ready dict to store on the reply message."""
        return {
            "model": self.model,
            "usage": {key: int(self.usage.get(key, 0)) for key in zero_usage()},
            "latency_ms": round(float(self.latency_ms), 1),
            "fallback": self.fallback,
            "attempts": self.attempts,
            "error": self.error,
        }


class Responder(Protocol):
    """Anything that turns a conversation window and a new text into a Reply."""

    def reply(self, history: Sequence[Any], text: str, *, deadline: float | None = None,
              media_urls: Sequence[str] = (), message_id: str | None = None,
              summary: str | None = None) -> Reply: ...


@runtime_checkable
class Summariser(Protocol):
    """A responder that can also write a conversation's running summary (the model can)."""

    def summarise(self, messages: list[dict[str, str]], *, max_tokens: int = 400,
                  timeout: float = 30.0) -> tuple[str | None, int]: ...

