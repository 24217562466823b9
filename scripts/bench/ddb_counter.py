"""A pass-through HTTP proxy in front of DynamoDB Local that counts requests by operation.

The app under gunicorn is another process, so botocore hooks cannot count its calls; pointing
its AWS_ENDPOINT_URL here instead counts every request any worker (or its background threads)
makes, by the operation named in ``X-Amz-Target``. DynamoDB Local does not check signatures,
so the requests, signed for this proxy's address, pass through unchanged.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class CountingProxy:
    """Forward every request to ``target_url`` and count it; a context manager."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            upstream: http.client.HTTPConnection | None = None  # one per client connection

            def do_POST(self) -> None:  # noqa: N802
                proxy._forward(self)

            def finish(self) -> None:
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ddb-counter", daemon=True)

    @property
    def endpoint_url(self) -> str:
        """The URL to give the app as AWS_ENDPOINT_URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def counts(self) -> dict[str, int]:
        """Return the requests counted so far, by operation."""
        with self._lock:
            return dict(self._counts)

    def _forward(self, handler: Any) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        operation = (handler.headers.get("X-Amz-Target") or "?").rsplit(".", 1)[-1]
        if b'"WORK#' in body:
            # The work items of the asynchronous path (claims, renewals, the sweeper's Queries).
            operation += " (work item)"
        with self._lock:
            self._counts[operation] += 1
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
        for attempt in (1, 2):
            if handler.upstream is None:
                handler.upstream = http.client.HTTPConnection(*self._target, timeout=60)
            connection = handler.upstream
            try:
                connection.request("POST", handler.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                connection.close()
                handler.upstream = None
                if attempt == 2:
                    handler.send_error(502)
                    return
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP_HEADERS:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
