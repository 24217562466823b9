"""The operator console at /console: conversations, actions and a dashboard, in a browser.

It exists only when ADMIN_API_TOKEN is set (like the operator API): without it
nothing is registered and every /console URL is a 404. The pages are plain
server-rendered HTML and SVG under a strict Content-Security-Policy: no
script runs, nothing is fetched from outside the app, and everything a
texter wrote is escaped by the templates.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, render_template, request
from werkzeug.exceptions import HTTPException

from app.console import auth, dashboard, views
from app.console.security import BadReference, csrf_token, harden
from app.operations import OperatorError
from app.services import services
from conversation import ConversationNotFound, StorageError

log = logging.getLogger(__name__)

bp = Blueprint(
    "console", __name__, url_prefix="/console",
    template_folder="templates", static_folder="static", static_url_path="/static",
)

bp.before_request(auth.require_session)
bp.add_url_rule("/sign-in", "sign_in", auth.sign_in, methods=["GET", "POST"])
bp.add_url_rule("/sign-out", "sign_out", auth.sign_out, methods=["POST"])
bp.add_url_rule("/", "conversations", views.conversations, methods=["GET", "POST"])
bp.add_url_rule("/find", "find_number", views.find_number, methods=["POST"])
bp.add_url_rule("/n/<ref>", "number", views.number, methods=["GET", "POST"])
bp.add_url_rule("/n/<ref>/<name>", "number_action", views.number_action, methods=["GET", "POST"])
bp.add_url_rule("/c/<ref>", "conversation", views.conversation, methods=["GET", "POST"])
bp.add_url_rule("/c/<ref>/<name>", "conversation_action", views.conversation_action, methods=["GET", "POST"])
bp.add_url_rule("/dashboard", "dashboard", dashboard.dashboard)


@bp.context_processor
def _page_context():
    from flask import g

    session_id = g.get("console_session")
    return {"csrf": csrf_token(session_id) if session_id else None, "signed_in": bool(session_id)}


def _error_page(status: int, message: str):
    return render_template("console/error.html", status=status, message=message), status


@bp.errorhandler(OperatorError)
def _refused(exc: OperatorError):
    return _error_page(exc.status, exc.message[:1].upper() + exc.message[1:] + ".")


@bp.errorhandler(ConversationNotFound)
@bp.errorhandler(BadReference)
def _not_found(exc: Exception):
    return _error_page(404, "No such conversation or number here (it may have been deleted or erased).")


@bp.errorhandler(StorageError)
def _storage(exc: StorageError):
    log.error("console: storage error: %s", exc)
    return _error_page(503, "The conversation store cannot be reached right now; try again in a moment.")


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException):
    return _error_page(exc.code or 500, exc.description or exc.name)


def init_app(app: Flask) -> None:
    """Register the console when an operator token is configured; otherwise it does not exist."""
    if not services(app).settings.admin_api_token:
        return
    app.register_blueprint(bp)

    @app.after_request
    def _harden_console(response):
        if request.path == "/console" or request.path.startswith("/console/"):
            harden(response)
        return response
