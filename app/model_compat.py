"""What the model server accepts: the reply-length parameter per model, and models it refuses.

OpenAI's current models (GPT-5, the o-series) cap a reply with ``max_completion_tokens``
and refuse ``max_tokens`` with a 400; older OpenAI-compatible servers know only
``max_tokens``. The responder sends ``max_completion_tokens`` first, switches once when the
server names it as the problem, and remembers what worked per server and model, so the
switch costs one extra request per process, not one per text.

A model that refuses the request outright (both parameters, an unknown model, a bad key) is
not a transient failure: it is logged at ERROR and reported by ``/health`` until the model
answers again, instead of every text going quietly to the offline persona.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

log = logging.getLogger(__name__)

LENGTH_PARAMETERS = ("max_completion_tokens", "max_tokens")


def refuses_parameter(exc: BaseException, name: str) -> bool:
    """Return whether ``exc`` is a 400/422 from the server saying it does not take ``name``."""
    if getattr(exc, "status_code", None) not in (400, 422):
        return False
    param = getattr(exc, "param", None)
    if param:
        return param == name
    message = str(getattr(exc, "message", "") or exc)
    return re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", message) is not None


class ModelCompat:
    """Per-process memory of which length parameter each model takes, and of refused models."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url or "https://api.openai.com/v1"
        self._parameter: dict[str, str] = {}
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()

    def parameters(self, model: str) -> tuple[str, ...]:
        """Return the length parameters to try for ``model``, the one known to work first."""
        with self._lock:
            known = self._parameter.get(model)
        if known is None:
            return LENGTH_PARAMETERS
        return (known, *(name for name in LENGTH_PARAMETERS if name != known))

    def worked(self, model: str, parameter: str) -> None:
        """Remember the parameter ``model`` accepted and forget any problem reported for it."""
        with self._lock:
            previous = self._parameter.get(model)
            self._parameter[model] = parameter
            cleared = self._problems.pop(model, None)
        if previous is None and parameter != LENGTH_PARAMETERS[0]:
            log.warning("model %s at %s does not take %s; sending %s instead",
                        model, self.base_url, LENGTH_PARAMETERS[0], parameter)
        if cleared is not None:
            log.warning("model %s answers again (it had refused requests: %s)", model, cleared)

    def refused(self, model: str, reason: str) -> None:
        """Record and log loudly that ``model`` refuses our requests (not a transient failure)."""
        with self._lock:
            self._problems[model] = reason
        log.error("model %s at %s refuses the request: %s; texts get the offline persona until "
                  "this is fixed (check OPENAI_MODEL, OPENAI_BASE_URL and OPENAI_API_KEY)",
                  model, self.base_url, reason)

    def problems(self) -> dict[str, str]:
        """Return the models that refused requests, with why (empty when all is well)."""
        with self._lock:
            return dict(self._problems)


def refusal_reason(exc: Any) -> str:
    """Return a short, log-safe description of a refused request."""
    message = " ".join(str(getattr(exc, "message", "") or exc).split())
    return f"HTTP {getattr(exc, 'status_code', '?')}: {message[:200]}"
