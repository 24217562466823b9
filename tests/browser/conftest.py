"""Browser fixtures: the real app on a loopback port, and headless Chromium driving it.

Chromium is Debian's ``chromium`` package (``make test`` and ``.ci/run`` install it when
missing; ``CHROMIUM=/path`` points at another build). Playwright's sync API drives it
through ``executable_path``; Playwright's own browser downloads are never used.

Fixtures:

``live_server(**settings)``
    Start the app (moto storage by default, ``storage="dynamodb_local"`` for the real
    DynamoDB Local; the model is ``localpeers/fake_openai.py`` over HTTP) under a threaded
    WSGI server on 127.0.0.1 and a random port. Returns a :class:`LiveServer`.
``browser``
    One headless Chromium per test module (closed with it, so no Playwright event loop
    outlives the browser tests).
``page``
    A fresh browser context and page per test. The test fails if the page asks for
    anything outside 127.0.0.1 (the request is aborted), logs a console error, hits a
    Content-Security-Policy violation or throws an uncaught exception.
``screenshot(page, name)``
    Capture the page; with ``UPDATE_SCREENSHOTS=1`` the PNG is written to ``docs/<name>.png``.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from app.services import services
from localpeers.fake_openai import FakeOpenAI
from tests.twilio_helpers import AUTH_TOKEN

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LOOPBACK_HOSTS = frozenset({"127.0.0.1"})
# Quiet, self-contained Chromium: no GPU, no background fetches, no sync or
# component updates, no first-run UI. Playwright adds a fresh temporary profile.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
)
# Milliseconds a locator or navigation waits before the test fails; generous for a
# loaded 2-core machine, and never a test of speed.
TIMEOUT_MS = 15_000


def _expect_waits_long() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)


_expect_waits_long()


def chromium_path() -> str:
    """Return the Chromium to drive; fail (never skip) when there is none."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed: run `make test` (it installs Debian's chromium) "
                    "or apt-get install chromium, or set CHROMIUM=/path/to/chromium")
    return path


# ------------------------------------------------------------------ the server


@dataclass
class LiveServer:
    """The app served over HTTP on 127.0.0.1."""

    app: Any
    url: str
    fake_openai: FakeOpenAI
    auth_token: str = AUTH_TOKEN

    @property
    def manager(self) -> Any:
        return services(self.app).manager

    @property
    def storage(self) -> Any:
        return services(self.app).storage

    def __call__(self, path: str = "/") -> str:
        """Return the absolute URL of ``path`` on this server."""
        return self.url + path


@pytest.fixture
def live_server(request) -> Iterator[Callable[..., LiveServer]]:
    """Return a factory that serves the real app with the given settings (stopped after the test)."""
    stops: list[Callable[[], None]] = []

    def start(*, storage: str = "moto", **settings: Any) -> LiveServer:
        from app import create_app

        store = request.getfixturevalue("moto_storage" if storage == "moto" else "local_storage")
        fake = FakeOpenAI()
        fake.__enter__()
        stops.append(lambda: fake.__exit__(None, None, None))
        config = {
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_MODEL": "cat-1",
            "REPLY_DEADLINE_SECONDS": 5,
            "LOG_LEVEL": "WARNING",
            **settings,
        }
        app = create_app(config, storage=store)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"live-server-{uuid.uuid4().hex[:6]}", daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

        stops.append(stop)
        return LiveServer(app=app, url=f"http://127.0.0.1:{server.server_port}", fake_openai=fake)

    yield start
    for stop in reversed(stops):
        stop()


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Launch one headless Chromium (Debian's) for the module and close it at the end."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageGuard:
    """What a page did that a test must never see: outside requests and errors."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def watch(self, context: Any, page: Any) -> None:
        """Abort and record requests to any host but 127.0.0.1; record console errors."""

        def route(route: Any) -> None:
            url = route.request.url
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about") or parts.hostname in LOOPBACK_HOSTS:
                route.continue_()
            else:
                self.outside.append(url)
                route.abort()

        context.route("**/*", route)
        page.on("console", lambda message: message.type == "error" and self.errors.append(
            f"console: {message.text}"))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def problems(self) -> list[str]:
        return [f"outside request: {url}" for url in self.outside] + self.errors


def new_guarded_page(browser: Any, **context_options: Any) -> tuple[Any, Any, PageGuard]:
    """Open a fresh context and page watched by a :class:`PageGuard`."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    guard = PageGuard()
    guard.watch(context, page)
    return context, page, guard


@pytest.fixture
def page_options() -> dict[str, Any]:
    """Options for the page's browser context (override in a module for a phone viewport)."""
    return {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture
def page(browser, page_options) -> Iterator[Any]:
    """Return a fresh page; the test fails on outside requests, console errors or CSP violations."""
    context, page, guard = new_guarded_page(browser, **page_options)
    try:
        yield page
    finally:
        context.close()
    problems = guard.problems()
    if problems:
        pytest.fail("the page misbehaved:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def screenshot(tmp_path) -> Callable[[Any, str], Path]:
    """Return ``shot(page, name)``: capture the page; UPDATE_SCREENSHOTS=1 writes docs/<name>.png."""

    def shot(page: Any, name: str, **options: Any) -> Path:
        folder = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
        target = folder / f"{name}.png"
        page.screenshot(path=str(target), **options)
        assert target.stat().st_size > 0
        return target

    return shot
