"""A short `make soak`: the real script, gunicorn and DynamoDB Local, checked for losses and leftovers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.soak import seconds_from

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_short_soak_loses_nothing_duplicates_nothing_and_leaves_nothing(tmp_path):
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.soak", "--seconds", "15", "--period", "5", "--rate", "3",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    periods = list(figures["periods"].values())
    assert len(periods) >= 3
    assert sum(p["texts"] for p in periods) > 0 and sum(p["replies"] for p in periods) > 0
    assert all(p["losses"] == 0 and p["duplicates"] == 0 and p["errors"] == 0 for p in periods)
    assert all(len(p["rss_mb"]) == 2 for p in periods)  # both workers sampled every period
    actions = {kind for p in periods for kind in p["actions"]}
    assert {"new", "text", "read"} <= actions
    store = figures["store"]
    assert store["texts_found"] == store["texts_expected"] > 0 and store["texts_missing"] == 0
    assert store["replies_found"] == store["replies_expected"]
    assert store["duplicate_replies"] == 0 and store["erased_leftovers"] == 0
    assert store["items_in_table"] >= store["items_for_live_numbers"] > 0
    # The report is a Markdown table with one row per period and a total.
    assert "| all |" in result.stdout and "DynamoDB Local holds" in result.stdout


def test_soak_length_is_bounded():
    assert seconds_from(None) == 600
    assert seconds_from("30") == 30
    for bad in ("5", "4000"):
        with pytest.raises(Exception, match="10 to 3600"):
            seconds_from(bad)
