"""Part 2 of ``make bench`` at CI size: both modes' quick paths measured and counted (no timing asserts)."""

from __future__ import annotations

import pytest

from scripts.bench import bench_webhook, report


@pytest.mark.slow
def test_part_2_measures_the_sync_webhook_and_auto_modes_quick_path_against_the_floor(ddb_local):
    result = bench_webhook.run(ddb_local.endpoint_url, turns=10, log=lambda line: None)
    for key in ("webhook", "floor", "same", "auto"):
        assert result[key]["n"] == 10 and result[key]["p50"] > 0
    # The auto quick path ran its turn on the reply pool (its work item) and answered in TwiML
    # (the run refuses any other answer); the floor is the three requests a turn must make.
    assert result["auto_calls"].get("TransactWriteItems") == 2 and result["auto_calls"].get("Query") == 1
    assert sum(result["floor_calls"].values()) == 3
    rows = {row[0]: row for row in report.targets({"webhook": result})}
    auto = rows["DynamoDB requests per quick turn, REPLY_MODE=auto"]
    assert auto[2] == str(sum(result["auto_calls"].values()))
    assert "webhook p50 / bare boto3 floor, REPLY_MODE=auto quick path" in rows
