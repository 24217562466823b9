"""The fake Messages API in a process of its own, for the benchmark's closed loops.

In the load generator's process, the fake's work (answering the app's sends, signing and
posting two status callbacks per message) would take the interpreter lock from the texters'
threads and add to the webhook times they measure. Run apart, like the fake model, it only
shares the machine's cores, as Twilio would not even do. The texters read what it recorded
through its inspection route (``GET /_fake/messages?after=N``, localpeers/fake_twilio.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from localpeers.dynamodb_local import free_port, port_open


class RemoteFakeTwilio:
    """``python -m localpeers.fake_twilio`` on a free port; ``messages`` as FakeTwilio has it."""

    def __init__(self, account_sid: str, auth_token: str, *, callbacks: bool = True) -> None:
        self.account_sid, self.auth_token, self.callbacks = account_sid, auth_token, callbacks
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """What TWILIO_API_BASE_URL should be."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RemoteFakeTwilio:
        command = [sys.executable, "-m", "localpeers.fake_twilio", "--port", str(self.port),
                   "--account-sid", self.account_sid, "--auth-token", self.auth_token]
        if not self.callbacks:
            command.append("--no-callbacks")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the fake Messages API did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message created so far, oldest first (new ones fetched since the last look)."""
        with self._lock:
            url = f"{self.base_url}/_fake/messages?after={len(self._seen)}"
            with urllib.request.urlopen(url, timeout=10) as response:
                self._seen.extend(json.loads(response.read())["messages"])
            return list(self._seen)
