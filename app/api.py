"""Operator API under /api/v1: read, rename, archive, export and erase conversations.

Closed unless ADMIN_API_TOKEN is set: every route then answers 404. With a
token, every request needs ``Authorization: Bearer <token>``; anything else
gets a 401 that says nothing about what exists, and an address past its limit on
wrong tokens gets a 429 (``app/auth_throttle.py``). Errors always have the shape
``{"error": {"code": ..., "message": ..., "field": ...}}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from typing import Any

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app import operations as ops
from app.openapi import build_document
from app.operations import OperatorError, check_conversation_id, check_number
from app.services import services
from conversation import (
    Conversation,
    ConversationManager,
    ConversationNotFound,
    InvalidCursor,
    Message,
    StorageError,
    StorageUnavailable,
)

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
VIA = "api"
CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,1800}\.[A-Za-z0-9_-]{22}$")
LIMIT = re.compile(r"^[0-9]{1,6}$")
MAX_LIMIT = 100
COUNTER_NAMES = ("tokens", "segments", "model_calls", "delivery_failures")

bp = Blueprint("api", __name__, url_prefix=PREFIX)
# Rules use merge_slashes=False: an empty path segment is a JSON 404, not an
# HTML redirect to a different route.


# An error answered as JSON with a stable code (and the offending field).
ApiError = OperatorError


def error_response(status: int, code: str, message: str, field: str | None = None):
    """Build the JSON error response every API failure uses."""
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    return response


# ------------------------------------------------------------------ plumbing


def _token() -> str | None:
    return services().settings.admin_api_token or None


def _authorized() -> bool:
    token = _token()
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    # Bytes, so that a non-ASCII header cannot make compare_digest raise.
    return hmac.compare_digest(
        given.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    )


def _gate():
    """Answer 404 when the API is closed, 429 to an address past its wrong tokens, 401 without
    the right token; else None."""
    throttle = services().auth_throttle
    if not _token() or throttle is None:
        return error_response(404, "not_found", "not found")
    # A request that presents no credential guesses nothing: it gets its 401 uncounted.
    verdict = throttle.judge(request.remote_addr, right=_authorized(),
                             counted="Authorization" in request.headers, surface="operator API")
    if verdict.throttled:
        response = error_response(
            429, "too_many_attempts",
            f"too many wrong tokens from this address; try again in {verdict.retry_after} s")
        response.headers["Retry-After"] = str(verdict.retry_after)
        return response
    if not verdict.ok:
        response = error_response(401, "unauthorized", "a valid bearer token is required")
        response.headers["WWW-Authenticate"] = 'Bearer realm="dadacat-operator"'
        return response
    return None


# Query parameters each route understands; any other is refused, so that a
# typo such as ?limt=5 is a 400 rather than silently ignored.
QUERY_PARAMETERS = {
    "api.recent_conversations": {"limit", "cursor"},
    "api.list_conversations": {"limit", "cursor"},
    "api.list_messages": {"limit", "cursor", "order"},
    "api.delete_conversation": {"hard"},
}


@bp.before_request
def _require_token():
    gate = _gate()
    if gate is not None:
        return gate
    allowed = QUERY_PARAMETERS.get(request.endpoint or "", set())
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        name = unknown[0][:64]
        return error_response(400, "unknown_parameter", f"unknown query parameter {name!r}", name)
    return None


@bp.after_request
def _no_store(response):
    # Histories are personal data: never let a proxy or browser cache them.
    response.headers["Cache-Control"] = "no-store"
    return response


def _manager() -> ConversationManager:
    return services().manager


def _limit(default: int) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    if not LIMIT.match(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, "invalid_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}", "limit")
    return int(raw)


def _cursor_key() -> bytes:
    # Derived from the operator token: every instance agrees, nobody else can mint one.
    return hashlib.sha256(b"dadacat-cursor\x00" + (_token() or "").encode()).digest()


def _sign(scope: str, cursor: str) -> str:
    digest = hmac.new(_cursor_key(), f"{scope}\x00{cursor}".encode(), hashlib.sha256).digest()
    return cursor + "." + base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def _wrap_cursor(scope: str, cursor: str | None) -> str | None:
    return _sign(scope, cursor) if cursor else None


def _unwrap_cursor(scope: str) -> str | None:
    """Return the store's cursor from a signed one; a forged or foreign cursor is a 400."""
    raw = request.args.get("cursor")
    if raw is None:
        return None
    if CURSOR.match(raw):
        inner = raw.rsplit(".", 1)[0]
        if hmac.compare_digest(_sign(scope, inner), raw):
            return inner
    raise ApiError(400, "invalid_cursor", "cursor is not one this listing issued", "cursor")


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise ApiError(400, f"invalid_{name}", f"{name} must be true or false", name)


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    """Return the API's view of a conversation header."""
    return {
        "conversation_id": conversation.conversation_id,
        "number": conversation.user_id,
        "title": conversation.title,
        "is_active": conversation.is_active,
        "message_count": conversation.message_count,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "last_message_at": conversation.last_message_at,
        "preview": conversation.preview,
        "deleted_at": conversation.deleted_at,
    }


def message_json(message: Message) -> dict[str, Any]:
    """Return the API's view of one message."""
    return ops.message_view(message)


# -------------------------------------------------------------------- routes


@bp.get("/openapi.json", merge_slashes=False)
def openapi():
    """Serve the OpenAPI document describing these routes."""
    return jsonify(build_document())


@bp.get("/conversations", merge_slashes=False)
def recent_conversations():
    """List conversations across all numbers, newest activity first."""
    limit = _limit(20)
    cursor = _unwrap_cursor("recent")
    page = ops.recent_conversations(_manager(), limit=limit, cursor=cursor, via=VIA)
    return jsonify(
        items=[conversation_json(c) for c in page.items],
        next_cursor=_wrap_cursor("recent", page.cursor),
    )


@bp.get("/numbers/<number>/conversations", merge_slashes=False)
def list_conversations(number: str):
    """List one number's conversations, newest first."""
    number = check_number(number)
    limit = _limit(20)
    scope = f"conversations:{number}"
    cursor = _unwrap_cursor(scope)
    page = ops.number_conversations(_manager(), number, limit=limit, cursor=cursor, via=VIA)
    return jsonify(
        items=[conversation_json(c) for c in page.items],
        next_cursor=_wrap_cursor(scope, page.cursor),
    )


@bp.get("/numbers/<number>/conversations/<conversation_id>", merge_slashes=False)
def get_conversation(number: str, conversation_id: str):
    """Return one conversation's header."""
    conversation = ops.get_conversation(_manager(), number, conversation_id, via=VIA)
    return jsonify(conversation_json(conversation))


@bp.get("/numbers/<number>/conversations/<conversation_id>/messages", merge_slashes=False)
def list_messages(number: str, conversation_id: str):
    """List one conversation's messages, oldest first unless order=desc."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "invalid_order", "order must be asc or desc", "order")
    limit = _limit(50)
    scope = f"messages:{number}:{conversation_id}:{order}"
    cursor = _unwrap_cursor(scope)
    page = ops.conversation_messages(
        _manager(), number, conversation_id,
        limit=limit, cursor=cursor, newest_first=order == "desc", via=VIA,
    )
    return jsonify(
        items=[message_json(m) for m in page.items],
        next_cursor=_wrap_cursor(scope, page.cursor),
    )


@bp.get("/numbers/<number>/conversations/<conversation_id>/stats", merge_slashes=False)
def conversation_stats(number: str, conversation_id: str):
    """Return one conversation's counts, times and usage counters."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    stats = _manager().conversation_stats(number, conversation_id)
    counters = {name: int(value) for name, value in stats.get("counters", {}).items()}
    by_role = {role: int(stats["by_role"].get(role, 0)) for role in ("user", "assistant", "system")}
    ops.audit("stats", number, conversation_id, via=VIA)
    return jsonify(
        conversation_id=conversation_id,
        number=number,
        message_count=stats["message_count"],
        by_role=by_role,
        first_message_at=stats["first_message_at"],
        last_message_at=stats["last_message_at"],
        duration_seconds=stats["duration_seconds"],
        **{name: counters.get(name, 0) for name in COUNTER_NAMES},
        counters=counters,
    )


@bp.get("/numbers/<number>/conversations/<conversation_id>/summary", merge_slashes=False)
def get_summary(number: str, conversation_id: str):
    """Return the conversation's running summary (null before the first one)."""
    return jsonify(ops.get_summary(_manager(), number, conversation_id, via=VIA))


@bp.delete("/numbers/<number>/conversations/<conversation_id>/summary", merge_slashes=False)
def clear_summary(number: str, conversation_id: str):
    """Forget the conversation's running summary; the model starts remembering afresh."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    cleared = ops.clear_summary(_manager(), number, conversation_id, via=VIA)
    return jsonify(number=number, conversation_id=conversation_id, cleared=cleared)


@bp.patch("/numbers/<number>/conversations/<conversation_id>", merge_slashes=False)
def update_conversation(number: str, conversation_id: str):
    """Rename and/or archive a conversation."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body:
        raise ApiError(400, "invalid_body", "body must be a JSON object with title and/or archived", "body")
    unknown = sorted(set(body) - {"title", "archived"})
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown field {unknown[0]!r}", unknown[0])
    if "title" in body and body["title"] is None:
        ops.check_title(None)
    if "archived" in body and body["archived"] is not True:
        raise ApiError(400, "invalid_archived", "archived can only be set to true", "archived")
    conversation = ops.update_conversation(
        _manager(), number, conversation_id,
        title=body.get("title"), archive=body.get("archived") is True, via=VIA,
    )
    return jsonify(conversation_json(conversation))


@bp.delete("/numbers/<number>/conversations/<conversation_id>", merge_slashes=False)
def delete_conversation(number: str, conversation_id: str):
    """Soft-delete a conversation (hidden, kept), or hard-delete it with hard=true."""
    number, conversation_id = check_number(number), check_conversation_id(conversation_id)
    hard = _flag("hard")
    deleted = ops.delete_conversation(_manager(), number, conversation_id, hard=hard, via=VIA)
    return jsonify(conversation_id=conversation_id, hard=hard, deleted_items=deleted)


@bp.post("/numbers/<number>/reset", merge_slashes=False)
def reset_number(number: str):
    """Archive the number's active conversation, exactly like texting "reset"."""
    number = check_number(number)
    archived = ops.reset_number(_manager(), number, via=VIA)
    return jsonify(number=number, archived_conversation_id=archived)


@bp.get("/numbers/<number>/export", merge_slashes=False)
def export_number(number: str):
    """Return everything stored for a number as one JSON document."""
    return jsonify(ops.export_number(_manager(), number, via=VIA))


@bp.delete("/numbers/<number>", merge_slashes=False)
@bp.post("/numbers/<number>/erase", merge_slashes=False)
def erase_number(number: str):
    """Delete everything stored for a number; safe to repeat."""
    number = check_number(number)
    erased = ops.erase_number(_manager(), number, via=VIA)
    return jsonify(number=number, erased_items=erased)


# -------------------------------------------------------------------- errors


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message, exc.field)


@bp.errorhandler(InvalidCursor)
def _invalid_cursor(exc: InvalidCursor):
    return error_response(400, "invalid_cursor", "cursor is not one this listing issued", "cursor")


@bp.errorhandler(ConversationNotFound)
def _not_found(exc: ConversationNotFound):
    return error_response(
        404, "conversation_not_found", "no such conversation for this number", "conversation_id"
    )


@bp.errorhandler(StorageUnavailable)
def _unavailable(exc: StorageUnavailable):
    log.error("operator API: storage unavailable: %s", exc)
    response = error_response(503, "storage_unavailable", "the conversation store cannot be reached")
    response.headers["Retry-After"] = "5"
    return response


@bp.errorhandler(StorageError)
def _storage_error(exc: StorageError):
    # TableMissing and other refusals: the store is there but will not serve us.
    log.error("operator API: storage error: %s", exc)
    return error_response(503, "storage_error", "the conversation store refused the request")


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return _http_json(exc)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("operator API: unexpected error")
    return error_response(500, "internal_error", "unexpected error")


def _http_json(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    message = {404: "not found", 405: "method not allowed"}.get(exc.code or 0, exc.name or "error")
    response = error_response(exc.code or 500, code, message)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response


def _in_api(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _routing_handler(status: int, previous):
    """Answer unmatched /api/v1 URLs with JSON (after the token check); defer elsewhere."""

    def handle(exc: HTTPException):
        if not _in_api(request.path):
            return previous(exc) if previous else exc
        gate = _gate()
        if gate is not None:
            return gate
        return _http_json(exc)

    return handle


def init_app(app: Flask) -> None:
    """Register the operator API and JSON 404/405 answers for its URL prefix."""
    app.register_blueprint(bp)
    # Routing errors never reach a blueprint's handlers; keep any app-wide
    # handler registered before us for URLs outside the API.
    existing = app.error_handler_spec.get(None, {})
    for status in (404, 405):
        previous = next(iter(existing.get(status, {}).values()), None)
        app.register_error_handler(status, _routing_handler(status, previous))
