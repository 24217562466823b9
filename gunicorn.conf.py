"""Gunicorn settings for DadaCat SMS (``gunicorn -c gunicorn.conf.py wsgi:app``).

This is gunicorn's own configuration, not the app's: it reads the process
settings a host platform provides (PORT, WEB_CONCURRENCY, GUNICORN_THREADS)
straight from the environment. Every APP setting is still read only by
app/config.py, which also reads GUNICORN_THREADS (with the same default) to give
each worker's DynamoDB client a connection per thread.
"""

import os
import shutil
import tempfile

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# Threaded workers: a reply waits seconds on the model, and a sync worker
# would sit idle for all of them while other texts queue. A waiting thread
# costs little memory, and workers x threads is how many texts can wait on
# the model at once (docs/benchmarks.md, part 3), so allow many.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "32"))

# Twilio gives up after about 15 s; the app answers within REPLY_DEADLINE_SECONDS
# (at most 14). Kill a worker only well after that.
timeout = 30
graceful_timeout = 20

# Each worker builds its own boto3 and OpenAI clients after the fork (neither
# is fork-safe), so the app is not preloaded in the master.
preload_app = False

# The app trusts X-Forwarded-* itself (TRUST_PROXY_HOPS); gunicorn must not
# rewrite the scheme on its own, or signatures would be checked on a URL the
# app did not choose.
forwarded_allow_ips = ""

# Logs go to stdout/stderr for the platform. The app logs one line per text
# itself (masked number, MessageSid, timings, outcome), so no access log.
accesslog = None
errorlog = "-"

# Prometheus multiprocess mode (app/metrics.py): each worker writes its figures to
# files in this folder and a scrape adds them up. The variable must be set before
# any worker imports prometheus_client, so it is set here in the master; a folder
# given by the platform is emptied first, since old files would be counted again.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_own_metrics_dir = not _metrics_dir
if _metrics_dir:
    os.makedirs(_metrics_dir, exist_ok=True)
    for _name in os.listdir(_metrics_dir):
        if _name.endswith(".db"):
            os.remove(os.path.join(_metrics_dir, _name))
else:
    _metrics_dir = tempfile.mkdtemp(prefix="dadacat-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def child_exit(server, worker):
    """Drop a dead worker's live gauges (turns in flight); its counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder this master made."""
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def post_worker_init(worker):
    """Start the reply pool's claim heartbeat and recovery sweep in each worker (auto/async
    reply modes), so a worker that gets no text still recovers texts whose process died.
    Threads are made here, after the fork: the master's would not exist in the workers."""
    from app.services import services

    pipeline = services(worker.wsgi).text_handler.pipeline
    if pipeline is not None:
        pipeline.pool.start()
