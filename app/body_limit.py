"""Refuse request bodies over MAX_REQUEST_BYTES before anything parses them.

Twilio's posts are a few kilobytes. A body declared bigger is answered 413 from
its Content-Length alone, unread, so a forged 100 MB post costs neither memory
nor a parse. A chunked body (no Content-Length) is read at most one byte past
the cap, then refused the same way.
"""

from __future__ import annotations

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge


def refuse_large_bodies() -> None:
    """Answer 413 when the body is over the cap; a declared length is never read."""
    cap = current_app.config["MAX_REQUEST_BYTES"]
    declared = request.content_length
    if declared is not None:
        if declared > cap:
            raise RequestEntityTooLarge(f"the body is over {cap} bytes")
        return
    if request.environ.get("wsgi.input_terminated"):
        # Streamed: werkzeug stops reading at MAX_CONTENT_LENGTH (cap + 1), and the
        # bytes read are kept for the form parser.
        if len(request.get_data(cache=True)) > cap:
            raise RequestEntityTooLarge(f"the body is over {cap} bytes")


def init_app(app: Flask) -> None:
    """Cap every request body: by its declared length, or while a streamed one is read."""
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_REQUEST_BYTES"] + 1
    app.before_request(refuse_large_bodies)
