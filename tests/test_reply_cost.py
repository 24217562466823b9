"""What a steady turn costs in DynamoDB requests in async and auto modes (issue 14, point 6:
the asynchronous path's count), counted on moto with botocore's own events. The quick (sync)
path's count is in test_storage_dynamodb.py and the benchmarks.
"""

from __future__ import annotations

import pytest

from app.services import services
from tests.async_helpers import GatedResponder, RecordingSender, build_app, pool_of, settle
from tests.faults import CallRecorder
from tests.twilio_helpers import Texter

NUMBER = "+15551234567"
# The webhook: 7 (GetItem user, TransactWriteItems text, 2 rate counters, the work noted and
# claimed, the day's figures after the answer). The turn: GetItem user + Query (the window),
# the claim renewed, the reply's TransactWriteItems, the opt-out read, queued -> sending and
# sending -> sent (each a GetItem + TransactWriteItems), the day's figures, the work finished
# (11); auto's quick TwiML path stores the reply and finishes (5).
MOST = {"async": 18, "auto": 12}


@pytest.mark.parametrize("mode", ["async", "auto"])
def test_a_steady_turn_costs_a_fixed_number_of_requests(moto_storage, mode, capsys):
    responder = GatedResponder()
    responder.gate.set()
    app = build_app(moto_storage, RecordingSender(), responder=responder, REPLY_MODE=mode,
                    RATE_LIMIT_PER_MINUTE=6, RATE_LIMIT_PER_DAY=200)
    texter = Texter(app.test_client(), number=NUMBER)
    for index in range(3):  # warm: the table is looked up, the conversation exists
        texter.text(f"warm {index}")
        settle(app)
    counts = []
    for index in range(2):
        with CallRecorder(moto_storage.client) as recorder:
            texter.text(f"steady {index}")
            settle(app)
            assert services(app).bounded.drain(10)
        counts.append(len(recorder.operations))
        with capsys.disabled():
            print(f"\n{mode} turn: {len(recorder.operations)} requests: " + " ".join(recorder.operations))
    assert counts[0] == counts[1] <= MOST[mode]
    assert "Scan" not in recorder.operations
    pool_of(app).close()
