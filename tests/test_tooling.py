"""The project's own tooling: a per-test timeout, and make bench refusing parts it does not have."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_runs_under_a_pinned_per_test_timeout(request):
    assert int(request.config.getini("timeout")) == 300
    pins = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert any(line.startswith("pytest-timeout==") for line in pins)


def test_a_hanging_test_fails_instead_of_stalling_the_suite(tmp_path):
    hanging = tmp_path / "test_hangs.py"
    hanging.write_text("import time\n\n\ndef test_hangs():\n    time.sleep(600)\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-o", "timeout=2", str(hanging)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Timeout" in result.stdout and "1 failed" in result.stdout


def test_bench_with_an_unknown_part_is_an_error(tmp_path):
    out = tmp_path / "never-written.md"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--parts", "1,2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "unknown part '1', '2'" in result.stderr and "storage, webhook, concurrency, cost" in result.stderr
    assert not out.exists()


def test_make_bench_passes_the_error_on():
    result = subprocess.run(
        ["make", "-s", "bench", 'BENCH_ARGS=--parts 1,2 --out /nonexistent/never.md'],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "unknown part" in result.stderr


def test_make_test_type_checks_the_bot_with_a_pinned_mypy():
    pins = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert any(line.startswith("mypy==") for line in pins)
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "$(VENV)/bin/mypy" in recipe
    with open(ROOT / "pyproject.toml", "rb") as handle:
        assert tomllib.load(handle)["tool"]["mypy"]["files"] == ["app", "conversation"]
