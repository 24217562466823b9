"""The browser harness itself: Chromium reaches the live app, and the page guard catches
what a page must never do (the guard is what makes every other browser test strict)."""

from __future__ import annotations

import json

from tests.browser.conftest import new_guarded_page

PROBE = """<!doctype html><title>probe</title>
<img src="http://203.0.113.9/pixel.png" alt="">
<script>console.log("inline ran")</script>"""


def test_chromium_reads_the_live_app(live_server, page, tmp_path):
    server = live_server()
    response = page.goto(server("/health"))
    assert response is not None and response.status == 200
    assert json.loads(page.inner_text("body"))["status"] == "ok"
    page.screenshot(path=str(tmp_path / "health.png"))
    assert (tmp_path / "health.png").read_bytes().startswith(b"\x89PNG")


def test_the_guard_catches_outside_requests_and_csp_violations(live_server, browser):
    server = live_server()
    context, page, guard = new_guarded_page(browser)
    probe = server("/probe")
    # A page of the app's origin with a strict policy, an outside image and an inline script.
    page.route(probe, lambda route: route.fulfill(
        status=200, body=PROBE, content_type="text/html",
        headers={"Content-Security-Policy": "default-src 'self'; img-src *"},
    ))
    try:
        page.goto(probe)
        page.wait_for_load_state("load")
    finally:
        context.close()
    assert guard.outside == ["http://203.0.113.9/pixel.png"]
    assert any("Content Security Policy" in error for error in guard.errors), guard.errors
