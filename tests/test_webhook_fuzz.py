"""Property-based fuzzing of the webhook form: never a 500, never a stored duplicate."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from app import create_app
from app.persona import OfflineResponder
from app.services import services
from tests.twilio_helpers import AUTH_TOKEN, Texter

FIELDS = ["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0",
          "NumSegments", "OptOutType", "AccountSid", "SmsSid", "WaId", "ProfileName", "Unknown"]

any_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
)
huge_text = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "🐈", "\x00", " "]),
                      st.integers(1590, 1700))
odd_values = st.sampled_from(["", "0", "-1", "99999", "1e3", "STOP", "reset"])
field_value = st.one_of(any_text, huge_text, odd_values)


@pytest.fixture(scope="module")
def fuzz_app():
    from moto import mock_aws

    with mock_aws():
        import boto3

        from conversation import DynamoDBStorage
        from tests.conftest import SerializedClient

        client = SerializedClient(boto3.client("dynamodb", region_name="us-east-1"))
        storage = DynamoDBStorage("fuzz", client=client)
        storage.create_table()
        app = create_app({
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "RATE_LIMIT_PER_MINUTE": 0,
            "RATE_LIMIT_PER_DAY": 0,
            "REPLY_DEADLINE_SECONDS": 2.0,
        }, storage=storage, responder=OfflineResponder(seed=1), offline_responder=OfflineResponder(seed=2))
        yield app


def _merge(base, extra, drop):
    form = {**base, **extra}
    for name in drop:
        form.pop(name, None)
    return form


# Mostly well-formed texts from a few numbers and a few SIDs, so duplicates and
# real turns happen, with random fields mixed in and sometimes a key field missing.
forms = st.builds(
    _merge,
    base=st.fixed_dictionaries({
        "From": st.sampled_from(["+15550100001", "+15550100002", "+447700900123", " ", "+1#2", "x" * 70]),
        "MessageSid": st.sampled_from(["SM" + str(i) * 32 for i in range(5)] + ["", "SM" + "x" * 200]),
        "Body": st.one_of(any_text, any_text, field_value),
    }),
    extra=st.dictionaries(st.sampled_from(FIELDS), field_value, max_size=4),
    drop=st.sets(st.sampled_from(["From", "MessageSid", "Body"]), max_size=1),
)
OUTCOMES: dict[int, int] = {}


# derandomize seeds from the test's source; this pins the seed the body had before it
# read the manager through services(), so the run draws the same 150 examples.
@seed(38922940307224000764866683338860776934902090261612373982298838606153816878614792368878760269400284425863628416907701)
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    form=forms,
    repeated=st.lists(st.tuples(st.sampled_from(FIELDS), field_value), max_size=3),
    sign=st.sampled_from([True, True, True, False]),
    send_twice=st.booleans(),
)
def test_fuzzed_forms_never_500_and_never_store_twice(fuzz_app, form, repeated, sign, send_twice):
    client = fuzz_app.test_client()
    texter = Texter(client)
    # Twilio signs every value of a repeated parameter; the validator reads a MultiDict the same way.
    pairs = MultiDict(list(form.items()) + repeated)
    signature = texter.sign("http://localhost/sms", pairs) if sign else "bogus"
    responses = []
    for _ in range(2 if send_twice else 1):
        responses.append(client.post("/sms", data=pairs, headers={"X-Twilio-Signature": signature}))
    for response in responses:
        OUTCOMES[response.status_code] = OUTCOMES.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400, 403), response.data[:200]
        if response.status_code == 200:
            assert response.mimetype == "application/xml"
            assert ET.fromstring(response.data).tag == "Response"
    number, sid = form.get("From", "").strip(), (form.get("MessageSid") or "").strip()
    if responses[0].status_code == 200 and number and sid and "#" not in number:
        manager = services(fuzz_app).manager
        stored = manager.get_message(number, sid)
        if stored is not None:
            texts = []
            for conversation in manager.list_conversations(number, limit=50).items:
                page = manager.list_messages(number, conversation.conversation_id, limit=500)
                texts += [m for m in page.items if m.message_id == sid]
            assert len(texts) == 1
            if send_twice and len(responses) == 2 and responses[1].status_code == 200:
                assert responses[0].data == responses[1].data


def test_fuzzing_reached_the_conversation_logic():
    """Guard against a fuzz run that only ever hit the signature or form checks."""
    assert OUTCOMES.get(200, 0) >= 10, OUTCOMES
    assert OUTCOMES.get(400, 0) >= 5, OUTCOMES
    assert OUTCOMES.get(403, 0) >= 5, OUTCOMES
