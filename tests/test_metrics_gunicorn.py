"""/metrics under the Procfile's gunicorn with two workers: every scrape sees both workers' figures."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from localpeers.dynamodb_local import free_port
from localpeers.fake_openai import FakeOpenAI, reply
from tests.gunicorn_helpers import gunicorn_env, running_gunicorn
from tests.test_metrics import samples
from tests.twilio_helpers import Texter, twiml_bodies

TOKEN = "gunicorn-metrics-token"
TEXTERS = 12


@pytest.fixture
def metered_gunicorn(local_storage, ddb_local, tmp_path):
    """Run the Procfile's gunicorn (2 workers) with metrics on; yield its URL and metrics folder."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    with FakeOpenAI() as fake:
        # Slow enough that concurrent texts spread over both workers.
        fake.default = reply("prrt. counted", prompt_tokens=10, completion_tokens=5, delay=0.3)
        env = gunicorn_env(port, local_storage, ddb_local.endpoint_url, fake.base_url,
                           PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), RATE_LIMIT_PER_MINUTE="0",
                           METRICS_ENABLED="true", METRICS_TOKEN=TOKEN)
        with running_gunicorn(port, env):
            yield f"http://127.0.0.1:{port}", metrics_dir


def post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST and return (status, body); generous timeout, as a shared test machine can be slow."""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def scrape(base: str) -> dict:
    request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return samples(response.read())


def test_two_workers_figures_add_up_in_every_scrape(metered_gunicorn):
    base, metrics_dir = metered_gunicorn
    url = f"{base}/sms"
    lock = threading.Lock()
    answered = []

    def text(index: int) -> None:
        texter = Texter(number=f"+1555766{index:04d}")
        status, body = post(url, *texter.signed_post(url, texter.params(f"count me {index}")))
        assert status == 200
        with lock:
            answered.extend(twiml_bodies(body))

    with ThreadPoolExecutor(TEXTERS) as pool:
        list(pool.map(text, range(TEXTERS)))
    assert answered == ["prrt. counted"] * TEXTERS

    # Both workers answered texts and wrote their own figures.
    writers = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(writers) == 2, writers

    # Several scrapes, answered by either worker, all see the same totals.
    for _ in range(4):
        found = scrape(base)
        assert found[("dadacat_texts_total", (("outcome", "replied"),))] == TEXTERS
        assert found[("dadacat_reply_seconds_count", ())] == TEXTERS
        assert found[("dadacat_model_seconds_count", ())] == TEXTERS
        assert found[("dadacat_model_tokens_total", ())] == 15 * TEXTERS
        assert found[("dadacat_sms_segments_total", ())] == TEXTERS
        assert found[("dadacat_turns_in_flight", ())] == 0
        buckets = {labels: value for (name, labels), value in found.items()
                   if name == "dadacat_reply_seconds_bucket"}
        assert buckets[(("le", "+Inf"),)] == TEXTERS

    # A worker that dies is replaced; its counters still count, its live gauge is dropped
    # (gunicorn.conf.py's child_exit), so turns in flight cannot stick above zero.
    victim = int(sorted(writers)[0])
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while (metrics_dir / f"gauge_livesum_{victim}.db").exists():
        assert time.monotonic() < deadline, "the dead worker's live gauge was never dropped"
        time.sleep(0.2)
    text(TEXTERS)  # answered by the surviving or the new worker
    found = scrape(base)
    assert found[("dadacat_texts_total", (("outcome", "replied"),))] == TEXTERS + 1
    assert found[("dadacat_turns_in_flight", ())] == 0

    unauthorised = urllib.request.Request(f"{base}/metrics")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unauthorised, timeout=10)
    refused.value.close()
    assert refused.value.code == 401
