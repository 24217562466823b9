"""Wrong operator tokens are counted per client address: the API and the console answer 429
past OPERATOR_AUTH_MAX_FAILURES in a window, even to the right token, until the window ends."""

from __future__ import annotations

import logging

import pytest

from app import create_app
from app.auth_throttle import AuthThrottle, address_key
from conversation.inmemory import MemoryStore
from tests.fake_clock import FakeClock
from tests.test_console import Console

TOKEN = "throttle-operator-token"
WRONG = "throttle-wrong-guess"
LIMIT = 3
WINDOW = 300
# FakeClock starts 30 s into a 300 s window (2026-01-01T00:00:30Z).
LEFT = 270
HERE = "203.0.113.7"
THERE = "203.0.113.8"


def make_app(storage, clock, **settings):
    return create_app({
        "TWILIO_AUTH_TOKEN": "t",
        "ADMIN_API_TOKEN": TOKEN,
        "OPERATOR_AUTH_MAX_FAILURES": LIMIT,
        "OPERATOR_AUTH_WINDOW_SECONDS": WINDOW,
        **settings,
    }, storage=storage, clock=clock)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def app(moto_storage, clock):
    return make_app(moto_storage, clock)


def api(app, token: str | None, address: str = HERE, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return app.test_client().get("/api/v1/conversations", headers=headers,
                                 environ_base={"REMOTE_ADDR": address})


def assert_throttled(response, left: int = LEFT):
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == str(left)
    assert response.get_json()["error"]["code"] == "too_many_attempts"


# ------------------------------------------------------------------ the API


def test_the_nth_wrong_token_is_answered_and_then_even_the_right_one_is_refused(app):
    assert api(app, TOKEN).status_code == 200  # a success before counts for nothing
    for _ in range(LIMIT):
        assert api(app, WRONG).status_code == 401
    assert_throttled(api(app, TOKEN))
    assert_throttled(api(app, WRONG))
    assert_throttled(app.test_client().get("/api/v1/no/such/route", environ_base={"REMOTE_ADDR": HERE}))


def test_the_window_lapsing_lets_the_address_in_again(app, clock):
    for _ in range(LIMIT):
        api(app, WRONG)
    assert_throttled(api(app, TOKEN))
    clock.advance(LEFT - 1)
    assert_throttled(api(app, TOKEN), left=1)
    clock.advance(1)
    assert api(app, TOKEN).status_code == 200
    # The new window counts from zero.
    for _ in range(LIMIT):
        assert api(app, WRONG).status_code == 401
    assert_throttled(api(app, TOKEN), left=WINDOW)


def test_other_addresses_are_counted_apart_and_a_success_resets_nothing(app):
    for _ in range(LIMIT):
        api(app, WRONG, HERE)
    assert api(app, WRONG, THERE).status_code == 401
    assert api(app, TOKEN, THERE).status_code == 200
    assert_throttled(api(app, TOKEN, HERE))
    for _ in range(LIMIT - 1):
        assert api(app, WRONG, THERE).status_code == 401
    assert_throttled(api(app, TOKEN, THERE))


def test_a_request_without_a_token_guesses_nothing_and_is_not_counted(app):
    for _ in range(LIMIT * 3):
        assert api(app, None).status_code == 401
    assert api(app, TOKEN).status_code == 200


def test_forwarded_addresses_are_ignored_unless_a_proxy_is_trusted(moto_storage, clock):
    direct = make_app(moto_storage, clock)
    for index in range(LIMIT):
        assert api(direct, WRONG, HERE, **{"X-Forwarded-For": f"192.0.2.{index}"}).status_code == 401
    assert_throttled(api(direct, TOKEN, HERE, **{"X-Forwarded-For": "192.0.2.99"}))

    proxied = make_app(moto_storage, clock, TRUST_PROXY_HOPS=1)
    proxy = "10.0.0.1"
    for _ in range(LIMIT):
        assert api(proxied, WRONG, proxy, **{"X-Forwarded-For": "192.0.2.50"}).status_code == 401
    assert_throttled(api(proxied, TOKEN, proxy, **{"X-Forwarded-For": "192.0.2.50"}))
    assert api(proxied, TOKEN, proxy, **{"X-Forwarded-For": "192.0.2.51"}).status_code == 200


def test_the_count_is_shared_by_every_instance_through_the_store(storage, clock):
    first, second = make_app(storage, clock), make_app(storage, clock)
    assert api(first, WRONG).status_code == 401
    assert api(second, WRONG).status_code == 401
    assert api(first, WRONG).status_code == 401
    assert_throttled(api(second, TOKEN))


def test_refusals_are_logged_as_warnings_without_any_token(app, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(LIMIT):
        api(app, WRONG)
    api(app, TOKEN)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "app.auth_throttle"]
    assert len(warnings) == LIMIT + 1
    assert HERE in warnings[-1].getMessage() and "too many wrong operator tokens" in warnings[-1].getMessage()
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and WRONG not in record.getMessage()


def test_the_openapi_document_names_the_429(app):
    paths = app.test_client().get(
        "/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()["paths"]
    for operations in paths.values():
        for operation in operations.values():
            assert "429" in operation["responses"], operation.get("operationId")


# ------------------------------------------------------------------ the console


def sign_in(app, token: str, address: str = HERE):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return Console(client).sign_in(token)


def test_the_console_refuses_the_right_token_past_the_limit_until_the_window_ends(app, clock):
    for _ in range(LIMIT):
        refused = sign_in(app, WRONG)
        assert refused.status_code == 401
        assert "That is not the operator token." in refused.get_data(as_text=True)
    throttled = sign_in(app, TOKEN)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == str(LEFT)
    page = throttled.get_data(as_text=True)
    assert "Too many wrong tokens from your address. Try again in 5 minutes." in page
    assert "dadacat_console=" not in throttled.headers.get("Set-Cookie", "")
    assert sign_in(app, TOKEN, THERE).status_code == 303
    clock.advance(LEFT)
    assert sign_in(app, TOKEN).status_code == 303


def test_wrong_tokens_count_the_same_at_the_api_and_the_console(app):
    for _ in range(LIMIT):
        api(app, WRONG)
    assert sign_in(app, TOKEN).status_code == 429


# ------------------------------------------------------------------ the counter


def test_an_ipv6_host_is_counted_by_its_64_and_a_mapped_ipv4_as_itself():
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("not an address") == "not an address"


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def get_counter(self, scope, name):
        self.calls += 1
        return super().get_counter(scope, name)

    def increment_counter(self, scope, name, amount=1, *, expires_in):
        self.calls += 1
        return super().increment_counter(scope, name, amount, expires_in=expires_in)


def test_an_address_over_its_limit_costs_the_store_nothing_more_until_the_window_ends():
    store, clock = CountingStore(), FakeClock()
    throttle = AuthThrottle(store, max_failures=1, window_seconds=WINDOW, clock=clock)
    assert not throttle.judge(HERE, right=False, surface="test").throttled
    assert throttle.judge(HERE, right=False, surface="test").throttled
    calls = store.calls
    for right in (True, False) * 5:
        assert throttle.judge(HERE, right=right, surface="test").retry_after == LEFT
    assert store.calls == calls
    clock.advance(LEFT)
    assert throttle.judge(HERE, right=True, surface="test").ok
    assert store.calls == calls + 1


def test_tokens_are_compared_in_constant_time_at_both_entrances(app, monkeypatch):
    import hmac

    compared: list[bytes] = []
    real = hmac.compare_digest

    def recording(a, b):
        compared.extend((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    assert api(app, WRONG).status_code == 401
    assert sign_in(app, WRONG + "-console").status_code == 401
    assert WRONG.encode() in compared and (WRONG + "-console").encode() in compared
