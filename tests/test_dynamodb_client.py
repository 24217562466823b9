"""The DynamoDB client the app builds has a connection for every thread that shares it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app import create_app
from app.config import DEFAULTS
from app.services import services

ROOT = Path(__file__).resolve().parent.parent


def _pool(app) -> int:
    # Building the client makes no request; the endpoint is never called.
    return services(app).storage.client.meta.config.max_pool_connections


@pytest.mark.parametrize("threads, reply_workers", [(None, None), (100, 80), (8, 400)])
def test_the_pool_holds_every_request_thread_and_background_turn(threads, reply_workers):
    config = {"TWILIO_AUTH_TOKEN": "t", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    if threads is not None:
        config.update(GUNICORN_THREADS=threads, REPLY_WORKERS=reply_workers)
    app = create_app(config)
    settings = services(app).settings
    assert _pool(app) >= settings.gunicorn_threads + settings.reply_workers
    # The summary updates and after-answer steps use the client too.
    assert _pool(app) > settings.gunicorn_threads + settings.reply_workers + 2


def test_gunicorn_and_the_app_default_to_the_same_number_of_threads():
    tree = ast.parse((ROOT / "gunicorn.conf.py").read_text())
    defaults = [node.args[1].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant) and node.args[0].value == "GUNICORN_THREADS"]
    assert defaults == [str(DEFAULTS["GUNICORN_THREADS"])]
