"""The real gunicorn from the Procfile, over HTTP on 127.0.0.1, against DynamoDB Local."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conversation import ConversationManager
from localpeers.dynamodb_local import free_port
from localpeers.fake_openai import FakeOpenAI, reply
from tests.gunicorn_helpers import gunicorn_env, running_gunicorn
from tests.twilio_helpers import Texter, parse_twiml, sid_for, twiml_bodies

NUMBER = "+15557654321"


@pytest.fixture
def gunicorn_server(local_storage, ddb_local, tmp_path):
    """Run the Procfile's gunicorn on a random 127.0.0.1 port; yield its base URL and log path."""
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with FakeOpenAI() as fake:
        fake.default = reply("prrt. the fake model says hello")
        env = gunicorn_env(port, local_storage, ddb_local.endpoint_url, fake.base_url,
                           REPLY_DEADLINE_SECONDS="5", LOG_LEVEL="INFO")
        with running_gunicorn(port, env, log_path) as process:
            yield f"http://127.0.0.1:{port}", log_path, fake, process


def post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def test_gunicorn_answers_signed_texts_over_http(gunicorn_server, local_storage):
    base, log_path, fake, _ = gunicorn_server
    texter = Texter(number=NUMBER)
    url = f"{base}/sms"

    params = texter.params("hello from a real socket 🐾", sid=sid_for("gunicorn1"))
    code, content_type, body = post(url, *texter.signed_post(url, params))
    assert code == 200 and content_type.startswith("application/xml")
    [message] = parse_twiml(body)
    assert message.text == "prrt. the fake model says hello"
    assert message.get("action") == f"{base}/sms/status?sid={sid_for('gunicorn1')}"

    # A retry of the same text and three more texts at once, spread over two workers.
    results: dict[str, list[str]] = {}

    def send(key: str, form: dict[str, str]) -> None:
        status, _, answer = post(url, *texter.signed_post(url, form))
        assert status == 200
        results[key] = twiml_bodies(answer)

    forms = {"retry": params, **{f"t{i}": texter.params(f"burst {i}") for i in range(3)}}
    threads = [threading.Thread(target=send, args=item) for item in forms.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The retry repeats its reply; the burst is read together: each of its texts reaches the
    # model, and each reply is one model call (a text covered by another's reply answers <Response/>).
    assert results["retry"] == ["prrt. the fake model says hello"], results
    burst_replies = sum(len(results[f"t{i}"]) for i in range(3))
    assert all(len(results[f"t{i}"]) <= 1 for i in range(3)) and burst_replies >= 1, results
    assert len(fake.requests) == 1 + burst_replies  # the retry did not reach the model
    for i in range(3):
        assert any(f"burst {i}" in json.dumps(request["messages"]) for request in fake.requests), i

    data, headers = texter.signed_post(url, dict(params, MessageSid=sid_for("forged")))
    headers["X-Twilio-Signature"] = texter.sign(url, params)
    assert post(url, data, headers)[0] == 403

    with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read())["status"] == "ok"

    history = ConversationManager(local_storage).get_history(NUMBER)
    roles = [m.role for m in history]
    assert roles.count("user") == 4 and roles.count("assistant") == 1 + burst_replies
    assert roles[:2] == ["user", "assistant"] and roles[-1] == "assistant"
    assert sorted(m.content for m in history if m.role == "user") == sorted(
        ["hello from a real socket 🐾", "burst 0", "burst 1", "burst 2"]
    )
    log_text = log_path.read_text()
    assert f"sid={sid_for('gunicorn1')} outcome=replied" in log_text
    assert "outcome=duplicate" in log_text
    assert NUMBER not in log_text and "real socket" not in log_text


def worker_pids(master: subprocess.Popen) -> list[int]:
    """Return the pids of gunicorn's workers (the master's children)."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def raw_post(port: int, head: bytes, chunks, timeout: float = 15.0) -> tuple[bytes, int]:
    """Send a head, then body chunks until the server answers or closes; return (answer, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head)
        conn.setblocking(False)
        answer = b""
        for chunk in chunks:
            try:
                answer += conn.recv(65536)
            except BlockingIOError:
                pass
            except ConnectionError:
                break
            if answer:
                break
            try:
                conn.sendall(chunk)
                sent += len(chunk)
            except (BlockingIOError, ConnectionError):
                break
        conn.settimeout(timeout)
        try:
            while b"\r\n\r\n" not in answer:
                more = conn.recv(65536)
                if not more:
                    break
                answer += more
        except ConnectionError:
            pass
    return answer, sent


def test_oversized_bodies_get_413_unread_and_worker_memory_stays_put(gunicorn_server):
    base, _, fake, master = gunicorn_server
    port = int(base.rsplit(":", 1)[1])
    with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
        assert response.status == 200  # both workers have started and imported everything
    before = {pid: rss_kib(pid) for pid in worker_pids(master)}
    hundred_mb = 100 * 1024 * 1024
    head = (
        f"POST /sms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: forged\r\n"
    )
    # Declared 100 MB: the answer comes before the body is sent at all.
    answer, _ = raw_post(port, (head + f"Content-Length: {hundred_mb}\r\n\r\n").encode(), [])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Chunked, no length: read only up to the cap, then 413 (the sender is cut off).
    chunk = b"Body=" + b"x" * 65531
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    answer, sent = raw_post(
        port, (head + "Transfer-Encoding: chunked\r\n\r\n").encode(), (framed for _ in range(1600))
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < hundred_mb
    after = {pid: rss_kib(pid) for pid in worker_pids(master)}
    assert after.keys() == before.keys()  # no worker died
    grown = {pid: after[pid] - before[pid] for pid in before}
    assert max(grown.values()) < 16 * 1024, f"worker RSS grew by {grown} KiB"
    assert fake.requests == []
