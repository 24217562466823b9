"""Prometheus metrics at GET /metrics: off unless METRICS_ENABLED, and behind METRICS_TOKEN.

Under gunicorn every worker writes its figures to files in PROMETHEUS_MULTIPROC_DIR
(gunicorn.conf.py sets it up before the workers start), and a scrape, whichever
worker answers it, adds up all of them: prometheus_client's multiprocess mode.
Without that variable (the Flask dev server, tests) the figures stay in the process.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, request

from app.config import Settings
from app.limits import Limits
from app.services import services

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 12.0, 14.0, 15.0, 20.0, 30.0)
THROTTLE_CODES = {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                  "ThrottlingError"}
# Answers that are part of normal work (idempotent appends, leases), not failures.
EXPECTED_CODES = {"ConditionalCheckFailedException", "ConditionalCheckFailed", "None", None}
SMS_ENDPOINT = "sms.inbound_sms"


class Metrics:
    """The bot's metric objects, built once per app."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        reg: dict[str, Any] = {"registry": self.registry}
        seconds = {"buckets": SECONDS_BUCKETS, **reg}
        self.texts = Counter("dadacat_texts", "Texts posted to /sms, by how the webhook answered them.",
                             ["outcome"], **reg)
        self.reply_seconds = Histogram("dadacat_reply_seconds",
                                       "Time from Twilio's post to the TwiML answer.", **seconds)
        self.model_seconds = Histogram("dadacat_model_seconds",
                                       "Time spent getting the persona's reply.", **seconds)
        self.fallbacks = Counter("dadacat_model_fallbacks", "Replies not from the first model, by why.",
                                 ["kind"], **reg)
        self.model_errors = Counter("dadacat_model_errors",
                                    "Replies that met a model error (retried or stood in for), by kind.",
                                    ["kind"], **reg)
        self.tokens = Counter("dadacat_model_tokens", "Model tokens used by replies.", **reg)
        self.segments = Counter("dadacat_sms_segments", "SMS segments of the replies sent.", **reg)
        self.dynamodb_errors = Counter("dadacat_dynamodb_errors",
                                       "DynamoDB calls that failed, by error code.", ["code"], **reg)
        self.dynamodb_throttles = Counter("dadacat_dynamodb_throttles",
                                          "DynamoDB attempts refused for throughput (retried or not).", **reg)
        self.in_flight = Gauge("dadacat_turns_in_flight", "Texts being answered right now.",
                               multiprocess_mode="livesum", **reg)

    # --------------------------------------------------------------- observers

    def observe_turn(self, outcome: str, total_ms: float, marks: dict[str, float],
                     details: dict[str, Any], figures: dict[str, int]) -> None:
        """Count one answered POST /sms."""
        self.texts.labels(outcome).inc()
        self.reply_seconds.observe(total_ms / 1000)
        if "model" in marks:
            self.model_seconds.observe(marks["model"] / 1000)
        if details.get("fallback"):
            self.fallbacks.labels(str(details["fallback"])).inc()
        if details.get("model_error"):
            self.model_errors.labels(str(details["model_error"])).inc()
        if figures.get("tokens"):
            self.tokens.inc(figures["tokens"])
        if figures.get("segments"):
            self.segments.inc(figures["segments"])

    def watch_dynamodb(self, client: Any) -> None:
        """Count errors and throttles through botocore's own events on the store's client."""
        events = client.meta.events
        events.register("needs-retry.dynamodb", self._on_attempt)
        events.register("after-call.dynamodb", self._on_answer)
        events.register("after-call-error.dynamodb", self._on_exception)

    def _on_attempt(self, response: Any = None, **_: Any) -> None:
        if response is not None:
            codes = _error_codes(response[1])
            self.dynamodb_throttles.inc(sum(1 for code in codes if code in THROTTLE_CODES))
        return None  # never influence botocore's retry decision

    def _on_answer(self, parsed: dict[str, Any] | None = None, **_: Any) -> None:
        for code in _error_codes(parsed or {}):
            self.dynamodb_errors.labels(code).inc()

    def _on_exception(self, exception: BaseException | None = None, **_: Any) -> None:
        if exception is not None:
            self.dynamodb_errors.labels(type(exception).__name__).inc()

    # ------------------------------------------------------------------ scrape

    def exposition(self, limits: Limits) -> bytes:
        """Return every worker's figures (or this process's) and today's budget, in text format."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry(auto_describe=True)
        if self.multiprocess:
            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(_Forward(self.registry))
        registry.register(_Budget(limits))
        return generate_latest(registry)


def _error_codes(parsed: dict[str, Any]) -> list[str]:
    """Return the unexpected error codes in a parsed DynamoDB answer (one per failed transaction part)."""
    code = parsed.get("Error", {}).get("Code")
    if code == "TransactionCanceledException":
        reasons = [reason.get("Code") for reason in parsed.get("CancellationReasons", [])]
        return [str(reason) for reason in reasons if reason not in EXPECTED_CODES]
    return [] if code in EXPECTED_CODES else [str(code)]


class _Forward:
    """Expose another registry's metrics (the in-process figures)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self._registry.collect()


class _Budget:
    """Today's remaining model budget, read from DynamoDB at scrape time (any worker sees the same)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("dadacat_budget_remaining",
                                   "What is left of today's model budget (only budgets that are set).",
                                   labels=["kind"])
        try:
            status = self._limits.budget_status() if self._limits is not None else {}
        except Exception as exc:  # a scrape must not fail because the store is down
            log.warning("metrics: could not read the budget: %s", exc)
            status = {}
        if "model_call_budget" in status:
            family.add_metric(["model_calls"], max(status["model_call_budget"] - status["model_calls"], 0))
        if "token_budget" in status:
            family.add_metric(["tokens"], max(status["token_budget"] - status["tokens"], 0))
        yield family


# -------------------------------------------------------------------- wiring


def observe_turn(outcome: str, total_ms: float, marks: dict[str, float], details: dict[str, Any],
                 figures: dict[str, int]) -> None:
    """Count one answered text, when metrics are on."""
    metrics = services().metrics
    if metrics is not None:
        metrics.observe_turn(outcome, total_ms, marks, details, figures)


@bp.get("/metrics")
def scrape() -> Response:
    """Serve the figures to a Prometheus that presents METRICS_TOKEN."""
    token = services().settings.metrics_token or ""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    ):
        response = Response("a valid bearer token is required\n", status=401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = 'Bearer realm="dadacat-metrics"'
        return response
    from prometheus_client import CONTENT_TYPE_LATEST

    found = services()
    assert found.metrics is not None  # the route exists only when metrics are on
    body = found.metrics.exposition(found.limits)
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _enter() -> None:
    if request.endpoint == SMS_ENDPOINT:
        _metrics().in_flight.inc()


def _leave(_exc: BaseException | None) -> None:
    if request.endpoint == SMS_ENDPOINT:
        _metrics().in_flight.dec()


def _metrics() -> Metrics:
    metrics = services().metrics
    assert metrics is not None  # the hooks exist only when metrics are on
    return metrics


def build_metrics(settings: Settings, storage: object) -> Metrics | None:
    """The metrics when METRICS_ENABLED (watching the store's DynamoDB client, if any); else None."""
    if not settings.metrics_enabled:
        return None
    metrics = Metrics()
    client = getattr(storage, "client", None)
    if client is not None and hasattr(client, "meta"):
        metrics.watch_dynamodb(client)
    return metrics


def init_app(app: Flask) -> None:
    """Serve /metrics when METRICS_ENABLED; otherwise add nothing (404)."""
    if services(app).metrics is None:
        return
    app.before_request(_enter)
    app.teardown_request(_leave)
    app.register_blueprint(bp)
