"""Part 3: many texters at once against gunicorn run with the Procfile's settings.

N simulated texters (distinct numbers) each send a signed text, wait for the
TwiML answer, and send the next one at once (a closed loop with no think time,
so the ideal is N / L turns per second). The model is the fake OpenAI server
(localpeers/fake_openai.py) in its own process, answering every request after a
fixed delay L; the app talks to it with the real openai client through
OPENAI_BASE_URL. DynamoDB Local holds the conversations. Rate limits are off.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from localpeers.dynamodb_local import free_port, port_open
from scripts.bench.common import ROOT, cpu_seconds, machine_busy, median, percentile, rss_mb

TOKEN = "bench-auth-token-" + "1" * 15
DEADLINE = 15.0  # Twilio gives up after about 15 s
CLIENT_TIMEOUT = 30.0

# The fake model in its own process. It reads commands from stdin until it closes:
# "dump PATH" writes the request bodies received so far to PATH as JSON.
_FAKE_SERVER = r"""
import json, sys
from localpeers import fake_openai
from localpeers.fake_openai import FakeOpenAI, reply
# Accept a crowd of connections at once instead of the socketserver default of 5.
fake_openai._Server.request_queue_size = 512
fake = FakeOpenAI(default=reply(sys.argv[2], delay=float(sys.argv[1]))).start()
print(fake.base_url, flush=True)
for line in sys.stdin:
    command, _, path = line.strip().partition(" ")
    if command == "dump":
        with open(path, "w") as out:
            json.dump(fake.requests, out)
        print("ok", flush=True)
fake.close()
"""


def procfile_command(port: int) -> list[str]:
    """Return the Procfile's web command with the venv's gunicorn and $PORT filled in."""
    procfile = ROOT / "Procfile"
    if not procfile.exists():
        raise FileNotFoundError("Procfile is missing")
    for line in procfile.read_text().splitlines():
        if line.startswith("web:"):
            command = line.split(":", 1)[1].strip()
            break
    else:
        raise ValueError("Procfile has no web: line")
    command = command.replace("${PORT}", str(port)).replace("$PORT", str(port))
    argv = shlex.split(command)
    if argv[0] == "gunicorn":
        argv[0] = str(Path(sys.executable).with_name("gunicorn"))
    # Listen on loopback only: the benchmark never opens a port to the network
    # (a --bind on the command line overrides the config file's).
    return with_options(argv, {"--bind": f"127.0.0.1:{port}"})


def procfile_line() -> str:
    """Return the Procfile's web command as written."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    return "?"


def with_options(argv: list[str], options: dict[str, str]) -> list[str]:
    """Return argv with ``--name value`` options replaced or added before the app argument."""
    argv = list(argv)
    for name, value in options.items():
        if name in argv:
            argv[argv.index(name) + 1] = value
        else:
            argv[-1:-1] = [name, value]
    return argv


def gunicorn_settings(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Ask gunicorn which workers, threads and worker class the command runs with."""
    out = subprocess.run([*argv, "--print-config"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    settings: dict[str, Any] = {}
    for line in out.stdout.splitlines():
        name, _, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if name in ("workers", "threads", "worker_class", "timeout", "bind", "preload_app",
                    "max_requests", "worker_connections", "keepalive", "graceful_timeout"):
            settings[name] = value
    return settings


class Server:
    """The fake model and gunicorn, started and stopped together."""

    def __init__(self, endpoint_url: str, latency: float, reply_text: str, extra_env: dict[str, str],
                 ddb_pid: int | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.ddb_pid = ddb_pid
        self.latency = latency
        self.reply_text = reply_text
        self.extra_env = extra_env
        self.port = free_port()
        self.table = f"bench-conc-{uuid.uuid4().hex[:6]}"
        self.fake: subprocess.Popen | None = None
        self.gunicorn: subprocess.Popen | None = None
        self.settings: dict[str, Any] = {}
        self.log_path = Path(tempfile.mkstemp(prefix="bench-gunicorn-", suffix=".log")[1])

    def start(self) -> Server:
        """Start the fake model, then gunicorn, and wait until /sms answers."""
        self.fake = subprocess.Popen(
            [sys.executable, "-c", _FAKE_SERVER, str(self.latency), self.reply_text],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )
        assert self.fake.stdout is not None
        base_url = self.fake.stdout.readline().strip()
        if not base_url.startswith("http://127.0.0.1"):
            raise RuntimeError("the fake model server did not start")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "TWILIO_", "RATE_", "GUNICORN_", "WEB_CONCURRENCY"))}
        env.update(
            {
                "PORT": str(self.port),
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_REGION": "us-east-1",
                "DYNAMODB_TABLE_NAME": self.table,
                "DYNAMODB_AUTO_CREATE": "true",
                "TWILIO_AUTH_TOKEN": TOKEN,
                "TWILIO_VALIDATE_SIGNATURE": "true",
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
                "OPENAI_API_KEY": "bench-key",
                "OPENAI_BASE_URL": base_url,
                "RATE_LIMIT_PER_MINUTE": "0",
                "RATE_LIMIT_PER_DAY": "0",
                "DAILY_MODEL_CALL_BUDGET": "0",
                "DAILY_TOKEN_BUDGET": "0",
                "LOG_LEVEL": "WARNING",
                **self.extra_env,
            }
        )
        options = {k: v for k, v in self.extra_env.items() if k.startswith("--")}
        for name in options:
            env.pop(name, None)
        argv = with_options(procfile_command(self.port), options)
        self.settings = gunicorn_settings(argv, env)
        self.settings["command"] = procfile_line()
        with self.log_path.open("wb") as log_file:
            self.gunicorn = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_file,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.gunicorn.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            if port_open(self.port):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not open its port within 60 s")
        self.warm()
        return self

    def warm(self) -> None:
        """Send a few texts first: the first text per worker builds clients and the table."""
        warmers = [threading.Thread(target=Texter(self, f"+1555000000{i}", self.reply_text).send_one)
                   for i in range(8)]
        for thread in warmers:
            thread.start()
        for thread in warmers:
            thread.join()

    def model_requests(self) -> list[Any]:
        """Return the JSON bodies the fake model has received so far, in arrival order."""
        if self.fake is None or self.fake.stdin is None or self.fake.stdout is None:
            return []
        with tempfile.NamedTemporaryFile(prefix="bench-model-", suffix=".json") as dump:
            self.fake.stdin.write(f"dump {dump.name}\n")
            self.fake.stdin.flush()
            if self.fake.stdout.readline().strip() != "ok":
                raise RuntimeError("the fake model did not dump its requests")
            return json.loads(Path(dump.name).read_text())

    def worker_pids(self) -> list[int]:
        """Return the pids of gunicorn's workers (children of the master)."""
        if self.gunicorn is None:
            return []
        master = self.gunicorn.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == master:
                    pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        """Stop gunicorn (gracefully, then hard) and the fake model."""
        if self.gunicorn is not None and self.gunicorn.poll() is None:
            self.gunicorn.send_signal(signal.SIGTERM)
            try:
                self.gunicorn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.gunicorn.kill()
                self.gunicorn.wait()
        if self.fake is not None and self.fake.poll() is None:
            try:
                assert self.fake.stdin is not None
                self.fake.stdin.close()
                self.fake.wait(timeout=10)
            except (subprocess.TimeoutExpired, OSError):
                self.fake.kill()
                self.fake.wait()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Server:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Texter:
    """One phone number texting DadaCat, signing each request as Twilio does."""

    def __init__(self, server: Server, number: str, expected: str) -> None:
        self.server = server
        self.number = number
        self.expected = expected
        self.validator = RequestValidator(TOKEN)
        self.url = f"http://127.0.0.1:{server.port}/sms"

    def send_one(self) -> tuple[float, bool]:
        """Send one text; return (seconds until the answer, answered with the model's reply)."""
        params = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "1" * 32,
            "From": self.number,
            "To": "+15005550006",
            "Body": "mrow? what colour is tuesday for a cat like you",
            "NumMedia": "0",
            "NumSegments": "1",
        }
        body = urlencode(params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.validator.compute_signature(self.url, params),
        }
        start = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=CLIENT_TIMEOUT)
        try:
            connection.request("POST", "/sms", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            # The app may trim the reply on a word boundary; its start is enough.
            ok = response.status == 200 and self.expected[:60] in "".join(ET.fromstring(data).itertext())
        except (OSError, http.client.HTTPException, ET.ParseError):
            ok = False
        finally:
            connection.close()
        return time.monotonic() - start, ok


def load_run(server: Server, texters: int, duration: float, latency: float) -> dict[str, Any]:
    """Run ``texters`` closed-loop texters for ``duration`` seconds; return the figures."""
    results: list[tuple[float, float, bool]] = []  # (finished at, seconds, ok)
    lock = threading.Lock()
    stop_at = time.monotonic() + duration
    peak_rss: dict[int, float] = {}

    def texter_loop(index: int) -> None:
        texter = Texter(server, f"+1555{index + 1_000_000 * (1 + texters % 7):07d}"[-12:], server.reply_text)
        while time.monotonic() < stop_at:
            seconds, ok = texter.send_one()
            with lock:
                results.append((time.monotonic(), seconds, ok))

    workers = server.worker_pids()
    groups = {"app (gunicorn workers)": workers,
              "DynamoDB Local": [server.ddb_pid] if server.ddb_pid else [],
              "fake model": [server.fake.pid] if server.fake else [],
              "load generator": [os.getpid()]}
    cpu_before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
    busy_before = machine_busy()
    start = time.monotonic()
    threads = [threading.Thread(target=texter_loop, args=(i,), daemon=True) for i in range(texters)]
    for thread in threads:
        thread.start()
    while time.monotonic() < stop_at:
        for pid in server.worker_pids():
            peak_rss[pid] = max(peak_rss.get(pid, 0.0), rss_mb(pid))
        time.sleep(0.5)
    # Let texts already sent finish (Twilio would have given up after 15 s anyway).
    # Anything still unanswered 15 s after the last text went out has missed Twilio's deadline.
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at + DEADLINE + 0.5 - time.monotonic()))
    unfinished = sum(thread.is_alive() for thread in threads)
    elapsed = time.monotonic() - start
    busy_after = machine_busy()
    cpu = {name: sum(cpu_seconds(pid) for pid in pids) - cpu_before[name] for name, pids in groups.items()}
    done = max(1, len(results))
    machine_load = (busy_after[0] - busy_before[0]) / max(1e-9, busy_after[1] - busy_before[1])
    # Throughput is counted after the first turns could have finished (a closed
    # loop answers nothing during its first L seconds).
    window_start = start + min(latency + 1.0, duration / 2)
    within = [r for r in results if window_start <= r[0] <= stop_at]
    seconds = [r[1] for r in results] + [CLIENT_TIMEOUT] * unfinished
    answered = [r for r in results if r[2] and r[1] <= DEADLINE]
    ok_in_window = [r for r in within if r[2]]
    ideal = texters / latency
    throughput = len(ok_in_window) / (stop_at - window_start)
    return {
        "texters": texters,
        "latency": latency,
        "duration": duration,
        "elapsed": elapsed,
        "turns": len(results),
        "unfinished": unfinished,
        "throughput": throughput,
        "ideal": ideal,
        "efficiency": throughput / ideal,
        "p50": median(seconds),
        "p99": percentile(seconds, 99),
        "within_15s": len(answered) / max(1, len(results) + unfinished),
        "errors": sum(1 for r in results if not r[2]),
        "rss_mb": sorted(round(v, 1) for v in peak_rss.values()),
        "cpu_busy": machine_load,
        "cpu_ms_per_turn": {name: round(seconds * 1000 / done, 1) for name, seconds in cpu.items()},
        "workers_seen": len(peak_rss),
    }


def run(endpoint_url: str, *, texters: list[int], latency: float, duration: float,
        alternatives: list[dict[str, str]], log: Callable[[str], None],
        ddb_pid: int | None = None) -> dict[str, Any]:
    """Sweep N with the default settings, then the largest N with each alternative setting."""
    reply_text = "prrt. the moon is a cursor blinking over tuesday, and i am the cat who typed it. " * 3
    reply_text = reply_text[:250]
    if not (ROOT / "Procfile").exists():
        log("  concurrency: no Procfile yet; skipped")
        return {"skipped": "the Procfile was not available when the benchmark ran"}
    out: dict[str, Any] = {"latency": latency, "duration": duration, "runs": [], "alternatives": []}
    for n in texters:
        # A fresh server per N: an overloaded run leaves a queue behind that would
        # slow the next one.
        with Server(endpoint_url, latency, reply_text, {}, ddb_pid) as server:
            out["settings"] = server.settings
            figures = load_run(server, n, duration, latency)
            out["runs"].append(figures)
            log(f"  gunicorn N={n:4d}: {figures['throughput']:.1f} turns/s of ideal {figures['ideal']:.0f} "
                f"({figures['efficiency']:.0%}), p99 {figures['p99']:.1f} s, "
                f"{figures['within_15s']:.0%} within 15 s, RSS {figures['rss_mb']} MB, "
                f"CPU {figures['cpu_busy']:.0%} busy, ms/turn {figures['cpu_ms_per_turn']}")
    for extra in alternatives:
        with Server(endpoint_url, latency, reply_text, extra, ddb_pid) as server:
            figures = load_run(server, max(texters), duration, latency)
            figures["env"] = extra
            figures["settings"] = server.settings
            out["alternatives"].append(figures)
            log(f"  gunicorn N={max(texters)} with {extra}: {figures['throughput']:.1f} turns/s "
                f"({figures['efficiency']:.0%}), p99 {figures['p99']:.1f} s, "
                f"{figures['within_15s']:.0%} within 15 s, RSS {figures['rss_mb']} MB")
    return out


def crossing(runs: list[dict[str, Any]], capacity: float | None, latency: float) -> dict[str, Any]:
    """Estimate the N where the p99 reply time crosses 15 s, from the sweep and queueing."""
    above = [r["texters"] for r in runs if r["p99"] > DEADLINE]
    below = [r["texters"] for r in runs if r["p99"] <= DEADLINE]
    estimate = None
    if capacity:
        # Closed loop: a turn waits for N / capacity service slots of L seconds each.
        estimate = int(DEADLINE / latency * capacity)
    return {"first_above": min(above) if above else None, "last_below": max(below) if below else None,
            "model_estimate": estimate}

