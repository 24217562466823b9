"""Load check: many numbers texting at once, bursts from one number, Twilio retries.

Starts DynamoDB Local and the bot under gunicorn with the Procfile's command
(several workers), sends signed texts concurrently, then reads the table back and
counts: every text stored exactly once, exactly one reply each, texts of one
number in the order they were sent, and header counters equal to what is stored.

    python scripts/load_check.py                      # the default, a few seconds
    python scripts/load_check.py --numbers 200 --texts 5 --burst 30 --workers 4

Exits non-zero if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import requests
from twilio.request_validator import RequestValidator

from conversation import ConversationManager, DynamoDBStorage
from localpeers.dynamodb_local import DynamoDBLocal, free_port, port_open

ROOT = Path(__file__).resolve().parent.parent

TOKEN = "load-check-token"


@dataclass
class LoadReport:
    """Counts from one load run."""

    numbers: int = 0
    texts_sent: int = 0
    deliveries_sent: int = 0
    http_ok: int = 0
    http_errors: dict[str, int] = field(default_factory=dict)
    texts_stored: int = 0
    replies_stored: int = 0
    answered_in_twiml: int = 0
    duplicates_stored: int = 0
    texts_lost: int = 0
    texts_without_reply: int = 0
    answered_together: int = 0  # texts of a burst answered by the one reply to a later text
    out_of_order: int = 0
    counter_mismatches: int = 0
    retry_answers_differing: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        """Return True when nothing was lost, duplicated, unanswered or out of order."""
        return not (
            self.http_errors
            or self.duplicates_stored
            or self.texts_lost
            or self.texts_without_reply
            or self.out_of_order
            or self.counter_mismatches
            or self.retry_answers_differing
        )


def procfile_command(port: int) -> list[str]:
    """Return the Procfile's web command with $PORT filled in."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            command = line[len("web:"):].strip().replace("$PORT", str(port))
            command = command.replace("${PORT}", str(port))
            return shlex.split(command)
    raise RuntimeError("Procfile has no web: line")


class Bot:
    """The bot under gunicorn, as the Procfile runs it, on 127.0.0.1."""

    def __init__(self, endpoint_url: str, table: str, workers: int, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            # Loopback only, whatever the Procfile binds to.
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
            "TWILIO_AUTH_TOKEN": TOKEN,
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "DYNAMODB_TABLE_NAME": table,
            "OPENAI_API_KEY": "",
            "RATE_LIMIT_PER_MINUTE": "0",
            "RATE_LIMIT_PER_DAY": "0",
            "LOG_LEVEL": "WARNING",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        """Return the webhook URL (as Twilio would be configured to call it)."""
        return f"http://127.0.0.1:{self.port}/sms"

    def start(self, timeout: float = 60.0) -> Bot:
        """Start gunicorn and wait until /health answers."""
        command = procfile_command(self.port)
        command = [arg.replace("0.0.0.0", "127.0.0.1") for arg in command]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.output()[-2000:]}")
            if port_open(self.port):
                try:
                    if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=5).ok:
                        return self
                except requests.RequestException:
                    pass
            time.sleep(0.2)
        output = self.output()[-3000:]
        self.stop()
        raise RuntimeError(f"gunicorn did not become healthy in time: {output}")

    def output(self) -> str:
        """Return what gunicorn printed so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        """Stop gunicorn and its workers."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
        self.log.close()


def send(session: requests.Session, url: str, number: str, body: str, sid: str) -> tuple[int, str]:
    """Post one signed text; return the status code and the reply text ('' if none)."""
    import xml.etree.ElementTree as ET

    params = {
        "MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": number, "To": "+15550000000",
        "Body": body, "NumMedia": "0", "NumSegments": "1",
    }
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    response = session.post(
        url, data=urlencode(params), timeout=30,
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded",
                 "I-Twilio-Idempotency-Token": sid},
    )
    if response.status_code != 200:
        return response.status_code, ""
    root = ET.fromstring(response.content)
    return 200, "".join(message.text or "" for message in root.iter("Message"))


def run_load(
    *,
    numbers: int = 12,
    texts: int = 3,
    burst: int = 8,
    retry_every: int = 4,
    workers: int = 3,
    concurrency: int = 16,
    endpoint_url: str | None = None,
) -> LoadReport:
    """Run one load check and return its counts.

    ``numbers`` texters each send ``texts`` texts one after another (all texters
    at once); one more number sends ``burst`` texts at the same moment; every
    ``retry_every``-th text is delivered twice at once, as a Twilio retry would be.
    """
    report = LoadReport()
    table = f"load-{uuid.uuid4().hex[:8]}"
    server = None
    if endpoint_url is None:
        server = DynamoDBLocal().start()
        endpoint_url = server.endpoint_url
    storage = DynamoDBStorage(table, endpoint_url=endpoint_url, region_name="us-east-1")
    storage.create_table()
    bot = Bot(endpoint_url, table, workers)
    try:
        bot.start()
        started = time.monotonic()
        sent: dict[str, list[tuple[str, str]]] = {}
        answers: dict[str, set[str]] = {}

        def deliver(number: str, body: str, sid: str, copies: int) -> None:
            with requests.Session() as session:
                with ThreadPoolExecutor(copies) as pool:
                    results = list(
                        pool.map(lambda _: send(session, bot.url, number, body, sid), range(copies))
                    )
            for status, answer in results:
                if status == 200:
                    report.http_ok += 1
                    if answer:
                        answers.setdefault(sid, set()).add(answer)
                else:
                    report.http_errors[str(status)] = report.http_errors.get(str(status), 0) + 1

        def texter(index: int) -> None:
            number = f"+1555{index:07d}"
            for n in range(texts):
                sid = "SM" + uuid.uuid4().hex
                sent.setdefault(number, []).append((sid, f"text {n} from texter {index}"))
                copies = 2 if (index * texts + n) % retry_every == 0 else 1
                report.deliveries_sent += copies
                deliver(number, f"text {n} from texter {index}", sid, copies)

        burst_number = "+15559999999"
        burst_sids = ["SM" + uuid.uuid4().hex for _ in range(burst)]
        sent[burst_number] = [(sid, f"burst {i}") for i, sid in enumerate(burst_sids)]
        with ThreadPoolExecutor(concurrency) as pool:
            futures = [pool.submit(texter, i) for i in range(numbers)]
            futures += [pool.submit(deliver, burst_number, f"burst {i}", sid, 1)
                        for i, sid in enumerate(burst_sids)]
            report.deliveries_sent += burst
            for future in futures:
                future.result()
        report.seconds = round(time.monotonic() - started, 2)
        report.numbers = len(sent)
        report.texts_sent = sum(len(v) for v in sent.values())
        report.answered_in_twiml = len(answers)
        report.retry_answers_differing = sum(1 for replies in answers.values() if len(replies) > 1)
        verify(ConversationManager(storage), sent, report, burst_number)
    finally:
        bot.stop()
        if server is not None:
            server.stop()
    return report


def verify(manager: ConversationManager, sent: dict[str, list[tuple[str, str]]], report: LoadReport,
           burst_number: str) -> None:
    """Read everything back and count losses, duplicates, missing replies and order errors."""
    for number, texts in sent.items():
        stored = []
        for conversation in manager.list_conversations(number, limit=100).items:
            cursor = None
            messages = []
            while True:
                page = manager.list_messages(number, conversation.conversation_id, limit=500, cursor=cursor)
                messages.extend(page.items)
                cursor = page.cursor
                if not cursor:
                    break
            roles = {"user": 0, "assistant": 0, "system": 0}
            for message in messages:
                roles[message.role] += 1
            if conversation.message_count != len(messages) or any(
                conversation.role_counts.get(role, 0) != count for role, count in roles.items()
            ):
                report.counter_mismatches += 1
            stored.extend(messages)
        user_texts = [m for m in stored if m.role == "user"]
        replies = [m for m in stored if m.role == "assistant"]
        report.texts_stored += len(user_texts)
        report.replies_stored += len(replies)
        ids = [m.message_id for m in user_texts]
        report.duplicates_stored += len(ids) - len(set(ids))
        wanted = [sid for sid, _ in texts]
        report.texts_lost += len(set(wanted) - set(ids))
        replied_to = [m.reply_to for m in replies]
        report.duplicates_stored += len(replied_to) - len(set(replied_to))
        # A reply answers every text before it that had none (a burst is answered together).
        last_reply = max((i for i, m in enumerate(stored) if m.role == "assistant"), default=-1)
        position = {m.message_id: i for i, m in enumerate(stored) if m.role == "user"}
        covered = {sid for sid in wanted if position.get(sid, len(stored)) < last_reply}
        report.texts_without_reply += len(set(wanted) - covered)
        report.answered_together += len(covered - set(replied_to))
        if number != burst_number:
            order = [sid for sid in ids if sid in set(wanted)]
            if order != wanted:
                report.out_of_order += 1
        # Every reply sits right after the text it answers.
        for before, after in zip(stored, stored[1:], strict=False):
            if after.role == "assistant" and after.reply_to and before.message_id != after.reply_to:
                report.out_of_order += 1


def main(argv: list[str] | None = None) -> int:
    """Run the load check from the command line and print its counts as JSON."""
    parser = argparse.ArgumentParser(description="Load-check the bot under gunicorn with DynamoDB Local.")
    parser.add_argument("--numbers", type=int, default=12)
    parser.add_argument("--texts", type=int, default=3)
    parser.add_argument("--burst", type=int, default=8)
    parser.add_argument("--retry-every", type=int, default=4)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.seed is not None:
        random.seed(args.seed)
    report = run_load(
        numbers=args.numbers, texts=args.texts, burst=args.burst, retry_every=args.retry_every,
        workers=args.workers, concurrency=args.concurrency,
    )
    print(json.dumps({**asdict(report), "clean": report.clean}, indent=2))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
