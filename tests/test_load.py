"""Load check in CI: gunicorn with several workers on a real DynamoDB Local.

The default size is kept small for CI; `python scripts/load_check.py --help`
runs bigger ones.
"""

from __future__ import annotations

import pytest

from scripts.load_check import run_load


@pytest.mark.slow
def test_nothing_is_lost_or_doubled_under_load(ddb_local):
    report = run_load(numbers=8, texts=3, burst=6, retry_every=3, workers=2, concurrency=12,
                      endpoint_url=ddb_local.endpoint_url)
    texts = 8 * 3 + 6
    assert report.texts_sent == texts
    assert report.deliveries_sent == texts + 8  # every third text of a texter sent twice
    assert report.http_errors == {}
    assert report.http_ok == report.deliveries_sent
    assert report.texts_stored == texts
    # Every text is answered: by its own reply, or (in the burst) by one reply to a later text.
    assert report.replies_stored == texts - report.answered_together
    assert report.answered_in_twiml == report.replies_stored
    assert (report.duplicates_stored, report.texts_lost, report.texts_without_reply) == (0, 0, 0)
    assert (report.out_of_order, report.counter_mismatches, report.retry_answers_differing) == (0, 0, 0)
    assert report.clean
