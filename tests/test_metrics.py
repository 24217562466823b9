"""Prometheus metrics at /metrics: closed by default, token-protected, counts that add up.

In-process here (Flask's test client, moto); tests/test_gunicorn.py scrapes it under
gunicorn with two workers, where the workers' figures must add up.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.config import ConfigError
from app.persona import OfflineResponder
from app.services import services
from tests.faults import THROTTLED, FaultInjector
from tests.test_webhook import ScriptedResponder
from tests.twilio_helpers import AUTH_TOKEN, Texter, sid_for

TOKEN = "metrics-token-for-tests"
NUMBER = "+15551230000"


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    """Parse the text exposition into {(sample name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/metrics", headers=headers)


@pytest.fixture
def make_app(moto_storage):
    def build(*, responder=None, **overrides):
        return create_app({
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "",
            "RATE_LIMIT_PER_MINUTE": 0, "RATE_LIMIT_PER_DAY": 0,
            "METRICS_ENABLED": True, "METRICS_TOKEN": TOKEN, **overrides,
        }, storage=moto_storage, responder=responder or ScriptedResponder("model"),
            offline_responder=OfflineResponder(seed=3))
    return build


def test_metrics_are_off_by_default(moto_storage):
    app = create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": ""}, storage=moto_storage)
    assert scrape(app.test_client()).status_code == 404
    assert services(app).metrics is None


def test_metrics_need_a_token_to_be_enabled():
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        create_app({"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "METRICS_ENABLED": True})


def test_scrape_without_the_right_token_is_refused(make_app):
    client = make_app().test_client()
    assert scrape(client, None).status_code == 401
    assert scrape(client, "wrong").status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert response.status_code == 401 and "dadacat" not in response.get_data(as_text=True)
    assert scrape(client).status_code == 200


def test_texts_outcomes_latency_tokens_segments_and_budget_add_up(make_app):
    app = make_app(DAILY_MODEL_CALL_BUDGET=2)
    client = app.test_client()
    texter = Texter(client, number=NUMBER)
    for index in range(3):
        assert texter.text(f"hello {index}").status_code == 200
    params = texter.params("once more", sid=sid_for("retried"))
    texter.post(params)
    texter.post(params)  # Twilio's retry of the same text
    assert texter.text("reset").status_code == 200

    found = samples(scrape(client).data)
    outcome = lambda name: found.get(("dadacat_texts_total", (("outcome", name),)), 0)  # noqa: E731
    assert outcome("replied") == 4 and outcome("duplicate") == 1 and outcome("reset") == 1
    assert found[("dadacat_reply_seconds_count", ())] == 6
    assert found[("dadacat_model_seconds_count", ())] == 4
    # Two texts within the model budget, then the offline persona answers.
    assert found[("dadacat_model_fallbacks_total", (("kind", "budget"),))] == 2
    assert found[("dadacat_budget_remaining", (("kind", "model_calls"),))] == 0
    # ScriptedResponder's replies report 7 tokens; the offline persona's none.
    assert found[("dadacat_model_tokens_total", ())] == 14
    # Four one-segment replies and the reset confirmation; the retry sent nothing new.
    assert found[("dadacat_sms_segments_total", ())] == 5
    assert found[("dadacat_turns_in_flight", ())] == 0


def test_dynamodb_errors_and_throttles_are_counted_from_botocore_events(make_app, moto_storage):
    app = make_app()
    client = app.test_client()
    # Every attempt of one call throttled: botocore retries once (DYNAMODB_MAX_RETRIES=1
    # for the app's own clients; moto's client keeps botocore's default), then gives up.
    with FaultInjector(moto_storage.client, THROTTLED, times=50, operations=["Query"]) as fault:
        with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
            moto_storage.client.query(TableName=moto_storage.table_name, KeyConditionExpression="pk = :p",
                                      ExpressionAttributeValues={":p": {"S": "x"}})
    found = samples(scrape(client).data)
    assert found[("dadacat_dynamodb_throttles_total", ())] == fault.injected >= 2
    code = ("code", "ProvisionedThroughputExceededException")
    assert found[("dadacat_dynamodb_errors_total", (code,))] == 1


def test_a_model_error_is_counted_by_kind(make_app):
    class Failing(ScriptedResponder):
        def reply(self, history, text, **kwargs):
            answer = super().reply(history, text, **kwargs)
            answer.fallback, answer.error = "error", "timeout"
            return answer

    app = make_app(responder=Failing("stand-in"))
    client = app.test_client()
    Texter(client, number=NUMBER).text("are you there")
    found = samples(scrape(client).data)
    assert found[("dadacat_model_errors_total", (("kind", "timeout"),))] == 1
    assert found[("dadacat_model_fallbacks_total", (("kind", "error"),))] == 1
