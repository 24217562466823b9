"""Console sign-in: the operator token is exchanged once for a session cookie.

The cookie holds a random session id and a MAC keyed from the operator token
(HttpOnly, SameSite=Strict, Path=/console, Secure over https); the session item
in DynamoDB says whether it is live, so signing out ends it on the server, and
a new operator token voids every cookie. Every form carries a CSRF token bound
to the session; the sign-in form carries one bound to a short-lived pre-session
cookie. Wrong tokens count against the client's address with the API's
(``app/auth_throttle.py``): past the limit, sign-in answers 429 until the window ends.
"""

from __future__ import annotations

import logging
import math
import secrets

from flask import abort, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.console.security import csrf_ok, session_cookie, session_from_cookie, token_ok
from app.services import services

log = logging.getLogger(__name__)

COOKIE = "dadacat_console"
SIGN_IN_COOKIE = "dadacat_console_sign_in"
PATH = "/console"
# Endpoints reachable without a session.
OPEN_ENDPOINTS = ("console.sign_in", "console.static")


def _sessions():
    return services().console_sessions


def _set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=PATH, httponly=True, samesite="Strict", secure=request.is_secure
    )


def require_session() -> Response | None:
    """Let a request through with a live session (and a valid CSRF token on POST); else redirect."""
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    # A cookie minted under another operator token is refused before any read.
    session_id = session_from_cookie(request.cookies.get(COOKIE))
    if not session_id or not _sessions().is_live(session_id):
        if request.method == "POST":
            abort(403, "Your session has ended; sign in again.")
        return redirect(url_for("console.sign_in"), 303)
    if request.method == "POST" and not csrf_ok(session_id, request.form.get("csrf")):
        abort(400, "This form has expired or did not come from the console; reload the page and try again.")
    g.console_session = session_id
    return None


def sign_in() -> Response | tuple[str, int]:
    """Show the sign-in form, or exchange a correct operator token for a session."""
    if request.method == "GET":
        nonce = secrets.token_urlsafe(24)
        response: Response = current_app.make_response(render_template("console/sign_in.html", nonce=nonce))
        _set_cookie(response, SIGN_IN_COOKIE, nonce, 900)
        return response
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    given = request.form.get("nonce", "")
    if not nonce or not secrets.compare_digest(nonce.encode(), given.encode("utf-8", "replace")):
        abort(400, "This sign-in form has expired; reload the page and try again.")
    throttle = services().auth_throttle
    if throttle is None:  # the console exists only with an operator token
        abort(404)
    verdict = throttle.judge(request.remote_addr, right=token_ok(request.form.get("token")),
                             surface="console sign-in")
    if verdict.throttled:
        minutes = math.ceil(verdict.retry_after / 60)
        response = current_app.make_response((render_template(
            "console/sign_in.html", nonce=nonce,
            error=f"Too many wrong tokens from your address. Try again in {minutes} "
                  f"minute{'s' if minutes != 1 else ''}."), 429))
        response.headers["Retry-After"] = str(verdict.retry_after)
        return response
    if not verdict.ok:
        return render_template(
            "console/sign_in.html", nonce=nonce, error="That is not the operator token."
        ), 401
    hours = services().settings.console_session_hours
    session_id = _sessions().start(hours * 3600)
    log.info("console sign-in from %s", request.remote_addr)
    response = redirect(url_for("console.conversations"), 303)
    _set_cookie(response, COOKIE, session_cookie(session_id), int(hours * 3600))
    response.delete_cookie(SIGN_IN_COOKIE, path=PATH)
    return response


def sign_out() -> Response:
    """End the session on the server and drop the cookie."""
    _sessions().end(g.console_session)
    log.info("console sign-out")
    response = redirect(url_for("console.sign_in", signed_out=1), 303)
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="Strict", secure=request.is_secure)
    return response
