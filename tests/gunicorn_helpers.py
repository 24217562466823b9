"""Start the Procfile's gunicorn on 127.0.0.1 for a test, and stop it afterwards."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from localpeers.dynamodb_local import port_open
from tests.twilio_helpers import AUTH_TOKEN

ROOT = Path(__file__).resolve().parent.parent


def procfile_command() -> list[str]:
    """Return the Procfile's web command, with gunicorn taken from this virtualenv."""
    line = (ROOT / "Procfile").read_text().strip()
    assert "\n" not in line and line.startswith("web: "), "the Procfile is one web line"
    argv = shlex.split(line.removeprefix("web: "))
    assert argv[0] == "gunicorn"
    argv[0] = str(Path(sys.executable).with_name("gunicorn"))
    return argv


def gunicorn_env(
    port: int, storage: Any, endpoint_url: str, openai_url: str, **settings: str
) -> dict[str, str]:
    """Return the environment of a two-worker gunicorn on ``port`` against DynamoDB Local and a fake model."""
    return {
        **os.environ,
        "PORT": str(port),
        # The Procfile binds 0.0.0.0 for a platform; tests stay on 127.0.0.1.
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": "us-east-1",
        "DYNAMODB_TABLE_NAME": storage.table_name,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": openai_url,
        **settings,
    }


@contextmanager
def running_gunicorn(
    port: int, env: dict[str, str], log_path: Path | None = None
) -> Iterator[subprocess.Popen]:
    """Run the Procfile's gunicorn until it listens on ``port``; stop it with SIGTERM on exit.

    Its output goes to ``log_path`` (shown if it fails to start), or nowhere.
    """
    with ExitStack() as stack:
        output = stack.enter_context(log_path.open("wb")) if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            procfile_command(), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while not port_open(port):
                exited = "gunicorn exited at start-up"
                assert process.poll() is None, log_path.read_text() if log_path else exited
                assert time.monotonic() < deadline, "gunicorn did not start in 30 s"
                time.sleep(0.1)
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def worker_pids(master: subprocess.Popen) -> list[int]:
    """Return the pids of gunicorn's workers (the master's children)."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def _sockets_to(port: int) -> set[str]:
    """Return the inodes of established TCP connections to 127.0.0.1:``port`` (from /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and int(remote.split(":")[1], 16) == port:
            inodes.add(inode)
    return inodes


def workers_connected_to(master: subprocess.Popen, port: int) -> list[int]:
    """Return the workers holding a connection to 127.0.0.1:``port`` (e.g. the model, mid-turn)."""
    inodes = _sockets_to(port)
    holders = []
    for pid in worker_pids(master):
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            holders.append(pid)
    return holders
