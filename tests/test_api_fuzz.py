"""Property-based tests of the operator API: no 500s, no schema violations.

schemathesis generates requests from the OpenAPI document the app serves and
calls the Flask app in-process (WSGI); hypothesis throws hostile path and
query values at every route.
"""

from __future__ import annotations

from urllib.parse import quote

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.specs.openapi.definitions import OPENAPI_30

from app import create_app
from app.openapi import build_document
from app.services import services

TOKEN = "fuzz-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NUMBER = "+15551230000"


@pytest.fixture
def fuzz_app(moto_storage):
    """Return an app with the API open and one number holding a little history."""
    app = create_app({"TWILIO_AUTH_TOKEN": "t", "ADMIN_API_TOKEN": TOKEN}, storage=moto_storage)
    manager = services(app).manager
    for text in ("hello cat", "what is art", "meow"):
        asked = manager.add_user_message(NUMBER, text)
        manager.record_assistant_message(NUMBER, "a spoon " + text, reply_to=asked, counters={"tokens": 7})
    manager.reset_conversation(NUMBER)
    manager.add_user_message(NUMBER, "new start")
    return app


OPERATIONS = [(method.upper(), path) for path, item in build_document()["paths"].items() for method in item]


def _known_path_parameters(app, path):
    manager = services(app).manager
    oldest = manager.list_conversations(NUMBER, limit=10).items[-1]
    known = {"number": NUMBER, "conversation_id": oldest.conversation_id}
    return {name: value for name, value in known.items() if "{" + name + "}" in path}


# schemathesis's lazy pytest loader does not work with pytest 9, so each
# operation's hypothesis strategy is driven directly, one test per operation.
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_matches_its_openapi_document(fuzz_app, method, path):
    """Every generated request gets a documented status and a body matching the schema."""
    api_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app, headers=AUTH)
    operation = api_schema[path][method]
    calls = []

    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    # Random numbers and ids almost never exist; also aim at the seeded ones so
    # that full responses are checked against the schema too.
    known = _known_path_parameters(fuzz_app, path)
    if known:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known))
    strategy = st.one_of(*strategies)

    @given(case=strategy)
    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case):
        # A cursor is an opaque, signed token: one that merely matches its
        # pattern is rightly refused, so that one check is dropped for it alone.
        skip = [positive_data_acceptance] if "cursor" in (case.query or {}) else []
        response = case.call_and_validate(headers=AUTH, excluded_checks=skip)
        calls.append(response.status_code)
        assert response.status_code < 500

    check()
    assert calls, "schemathesis generated no requests"


def test_served_document_is_valid_openapi(fuzz_app):
    """The served document loads as OpenAPI and lists every API route."""
    served = fuzz_app.test_client().get("/api/v1/openapi.json", headers=AUTH).get_json()
    # The OpenAPI 3.0 meta-schema (as bundled with schemathesis), checked by jsonschema.
    jsonschema.Draft4Validator(OPENAPI_30).validate(served)
    loaded = schemathesis.openapi.from_dict(served)
    loaded.validate()
    operations = {(op.ok().method.upper(), op.ok().path) for op in loaded.get_all_operations()}
    routes = {
        (method, rule.rule.replace("<", "{").replace(">", "}"))
        for rule in fuzz_app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert operations == routes


# Values that break naive parsers: separators, encodings, huge and negative numbers.
hostile = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "+",
            "%2B",
            "0",
            "-1",
            "1e9",
            "999999999",
            "null",
            "../x",
            "a#b",
            "+1555123456789012",
            "+05551234567",
            "\x00",
            "\U0001f63a",
            "a" * 300,
        ]
    ),
)
ROUTES = [
    ("get", "/api/v1/conversations"),
    ("get", "/api/v1/numbers/{n}/conversations"),
    ("get", "/api/v1/numbers/{n}/conversations/{c}"),
    ("get", "/api/v1/numbers/{n}/conversations/{c}/messages"),
    ("get", "/api/v1/numbers/{n}/conversations/{c}/stats"),
    ("patch", "/api/v1/numbers/{n}/conversations/{c}"),
    ("delete", "/api/v1/numbers/{n}/conversations/{c}"),
    ("get", "/api/v1/numbers/{n}/export"),
]


@given(
    route=st.sampled_from(ROUTES),
    number=st.one_of(st.just(NUMBER), hostile),
    conversation_id=hostile,
    limit=st.one_of(st.none(), hostile, st.integers(-5, 10**7).map(str)),
    cursor=st.one_of(st.none(), hostile),
    order=st.one_of(st.none(), hostile),
    hard=st.one_of(st.none(), hostile),
    body=st.one_of(
        st.none(),
        st.text(max_size=30),
        st.dictionaries(
            st.sampled_from(["title", "archived", "x"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=250)),
            max_size=3,
        ),
    ),
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_input_never_gets_a_server_error(
    fuzz_app, route, number, conversation_id, limit, cursor, order, hard, body
):
    """Whatever the path, query or body, the answer is a 2xx or a JSON 4xx error."""
    method, template = route
    path = template.format(n=quote(number, safe=""), c=quote(conversation_id, safe=""))
    query = {
        k: v
        for k, v in {"limit": limit, "cursor": cursor, "order": order, "hard": hard}.items()
        if v is not None
    }
    kwargs = {"query_string": query, "headers": AUTH}
    if method == "patch":
        kwargs["json" if isinstance(body, dict) else "data"] = body
    response = getattr(fuzz_app.test_client(), method)(path, **kwargs)
    assert response.status_code in (200, 400, 404, 405, 409), response.get_data(as_text=True)
    payload = response.get_json()
    if response.status_code >= 400:
        assert set(payload["error"]) == {"code", "message", "field"}
    else:
        assert isinstance(payload, dict)
