"""Operator API: every route and status code, auth, cursors, erasure."""

from __future__ import annotations

import itertools
import logging
from urllib.parse import quote

import pytest

from app import create_app
from app.services import services
from conversation import DynamoDBStorage

TOKEN = "operator-secret-token"
ALICE = "+15551234567"
BOB = "+447700900123"


def enc(number: str) -> str:
    """URL-encode a number for a path, as operators are told to (+ is %2B)."""
    return quote(number, safe="")


class Api:
    """Call the operator API with (or without) the bearer token."""

    def __init__(self, client, token: str | None = TOKEN) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, **kwargs):
        return getattr(self.client, method)("/api/v1" + path, headers=self.headers, **kwargs)

    def get(self, path, **kwargs):
        return self.call("get", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.call("patch", path, **kwargs)

    def post(self, path, **kwargs):
        return self.call("post", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.call("delete", path, **kwargs)

    def pages(self, path: str, limit: int, between=None, **query):
        """Follow next_cursor to the end; call ``between()`` after each page."""
        items, cursor = [], None
        while True:
            params = {"limit": limit, **query, **({"cursor": cursor} if cursor else {})}
            response = self.get(path, query_string=params)
            assert response.status_code == 200, response.get_json()
            items.extend(response.get_json()["items"])
            cursor = response.get_json()["next_cursor"]
            if between:
                between()
            if not cursor:
                return items


@pytest.fixture
def app(moto_storage):
    return create_app({"TWILIO_AUTH_TOKEN": "t", "ADMIN_API_TOKEN": TOKEN}, storage=moto_storage)


@pytest.fixture
def manager(app):
    return services(app).manager


@pytest.fixture
def api(app):
    return Api(app.test_client())


def chat(manager, number: str, turns: int, prefix: str = "text"):
    """Store ``turns`` user texts each with DadaCat's reply; return the conversation id."""
    for index in range(turns):
        asked = manager.add_user_message(number, f"{prefix} {index}")
        manager.record_assistant_message(
            number, f"reply {index}", reply_to=asked, counters={"tokens": 10, "segments": 1, "model_calls": 1}
        )
    return manager.get_or_create_conversation(number).conversation_id


def assert_error(response, status: int, code: str | None = None, field: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "field"}
    if code:
        assert error["code"] == code
    assert error["field"] == field
    return error


EVERY_ROUTE = [
    ("get", "/openapi.json"),
    ("get", "/conversations"),
    ("get", f"/numbers/{enc(ALICE)}/conversations"),
    ("get", f"/numbers/{enc(ALICE)}/conversations/c1"),
    ("patch", f"/numbers/{enc(ALICE)}/conversations/c1"),
    ("delete", f"/numbers/{enc(ALICE)}/conversations/c1"),
    ("get", f"/numbers/{enc(ALICE)}/conversations/c1/messages"),
    ("get", f"/numbers/{enc(ALICE)}/conversations/c1/stats"),
    ("post", f"/numbers/{enc(ALICE)}/reset"),
    ("get", f"/numbers/{enc(ALICE)}/export"),
    ("delete", f"/numbers/{enc(ALICE)}"),
    ("post", f"/numbers/{enc(ALICE)}/erase"),
    ("get", "/no/such/route"),
]


# ---------------------------------------------------------------------- auth


def test_api_is_closed_without_a_configured_token(moto_storage):
    app = create_app({"TWILIO_AUTH_TOKEN": "t"}, storage=moto_storage)
    chat(services(app).manager, ALICE, 1)
    for method, path in EVERY_ROUTE:
        for token in (None, "", "anything"):
            response = Api(app.test_client(), token).call(method, path)
            assert_error(response, 404, "not_found")
    # Nothing was erased or reset behind the closed door.
    assert services(app).manager.get_message_count(ALICE) == 2


def test_missing_or_wrong_token_gets_the_same_401(app, manager):
    chat(manager, ALICE, 1)
    client = app.test_client()
    bodies = set()
    # Each from its own address, so that none of them reaches the limit on wrong tokens.
    for index, ((method, path), headers) in enumerate(itertools.product(
        EVERY_ROUTE,
        (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": "Bearer \u00e9\u00e8"},
        ),
    )):
        address = f"198.51.100.{index}"
        response = getattr(client, method)("/api/v1" + path, headers=headers,
                                           environ_base={"REMOTE_ADDR": address})
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        bodies.add(response.get_data())
    assert len(bodies) == 1  # existing and missing routes look alike
    assert manager.get_message_count(ALICE) == 2


def test_right_token_is_accepted(api):
    response = api.get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.")
    assert response.headers["Cache-Control"] == "no-store"


def test_unknown_api_route_and_wrong_method_are_json(api, app):
    assert_error(api.get("/nope"), 404, "not_found")
    response = api.call("put", "/conversations")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    assert_error(api.get(f"/numbers/{enc(ALICE)}/conversations//messages"), 404, "not_found")
    # Outside the API prefix the app's usual answer is left alone.
    assert app.test_client().get("/not-the-api").mimetype != "application/json"


def test_unknown_query_parameters_are_400(api, manager):
    cid = chat(manager, ALICE, 1)
    for path in (
        "/conversations",
        f"/numbers/{enc(ALICE)}/conversations",
        f"/numbers/{enc(ALICE)}/conversations/{cid}",
        f"/numbers/{enc(ALICE)}/export",
    ):
        assert_error(api.get(path, query_string={"limt": "5"}), 400, "unknown_parameter", "limt")
    assert_error(api.delete(f"/numbers/{enc(ALICE)}", query_string={"hard": "true"}), 400, field="hard")
    assert manager.get_message_count(ALICE) == 2  # the erase did not run


# ------------------------------------------------------------------ listings


def test_list_a_numbers_conversations_newest_first(api, manager):
    first = chat(manager, ALICE, 2, "old")
    manager.reset_conversation(ALICE)
    second = chat(manager, ALICE, 1, "new")
    manager.rename_conversation(ALICE, first, "the spoon talk")
    chat(manager, BOB, 1)

    response = api.get(f"/numbers/{enc(ALICE)}/conversations")
    assert response.status_code == 200
    body = response.get_json()
    assert body["next_cursor"] is None
    items = body["items"]
    assert [c["conversation_id"] for c in items] == [second, first]
    newest, oldest = items
    assert newest["is_active"] is True and oldest["is_active"] is False
    assert oldest["title"] == "the spoon talk" and newest["title"] is None
    assert (newest["message_count"], oldest["message_count"]) == (2, 4)
    assert oldest["preview"] == "reply 1"
    assert newest["number"] == ALICE
    for item in items:
        assert item["created_at"] <= item["last_message_at"] <= item["updated_at"]
    # A number never seen has an empty list, not an error.
    assert api.get(f"/numbers/{enc('+15550000000')}/conversations").get_json() == {
        "items": [],
        "next_cursor": None,
    }


def test_malformed_number_is_400_naming_the_field(api):
    # Any sender the webhook accepts is a valid number here (conversation/ids.py), so
    # "15551234567" or "whatsapp:+1555..." are looked up; these cannot be stored at all.
    for number in (
        "+1555 1234567",
        "%2B1555",
        "a?b",
        "tab\there",
        "x" * 257,
    ):
        base = f"/numbers/{quote(number, safe='')}"
        for path in ("/conversations", "/export", "/conversations/c1", "/conversations/c1/stats"):
            assert_error(api.get(base + path), 400, "invalid_number", "number")
        assert_error(api.post(base + "/reset"), 400, "invalid_number", "number")
        assert_error(api.delete(base), 400, "invalid_number", "number")


def test_plain_plus_in_the_path_also_works(api, manager):
    chat(manager, ALICE, 1)
    assert len(api.get(f"/numbers/{ALICE}/conversations").get_json()["items"]) == 1


def test_limit_is_bounded(api, manager):
    cid = chat(manager, ALICE, 1)
    for limit in ("0", "101", "-1", "x", "1.5", "", "99999999"):
        for path in (
            "/conversations",
            f"/numbers/{enc(ALICE)}/conversations",
            f"/numbers/{enc(ALICE)}/conversations/{cid}/messages",
        ):
            assert_error(api.get(path, query_string={"limit": limit}), 400, "invalid_limit", "limit")
    assert api.get("/conversations", query_string={"limit": "100"}).status_code == 200


def test_bad_cursors_are_400(api, manager):
    alice_cid = chat(manager, ALICE, 3)
    chat(manager, BOB, 3)
    manager.reset_conversation(ALICE)
    chat(manager, ALICE, 1)
    page = api.get(f"/numbers/{enc(ALICE)}/conversations", query_string={"limit": 1}).get_json()
    alice_cursor = page["next_cursor"]
    assert alice_cursor
    messages = api.get(
        f"/numbers/{enc(ALICE)}/conversations/{alice_cid}/messages", query_string={"limit": 2}
    ).get_json()["next_cursor"]
    inner, signature = alice_cursor.rsplit(".", 1)
    forged = [
        "garbage",
        "x" * 5000,
        "",
        alice_cursor[:-1] + ("A" if alice_cursor[-1] != "A" else "B"),
        inner + "." + "A" * 22,
        "%%%",
        inner,
    ]
    for cursor in forged:
        response = api.get(f"/numbers/{enc(ALICE)}/conversations", query_string={"cursor": cursor})
        assert_error(response, 400, "invalid_cursor", "cursor")
    # A real cursor only works for the listing that issued it.
    assert_error(
        api.get(f"/numbers/{enc(BOB)}/conversations", query_string={"cursor": alice_cursor}),
        400,
        "invalid_cursor",
        "cursor",
    )
    assert_error(
        api.get("/conversations", query_string={"cursor": alice_cursor}), 400, "invalid_cursor", "cursor"
    )
    assert_error(
        api.get(f"/numbers/{enc(ALICE)}/conversations", query_string={"cursor": messages}),
        400,
        "invalid_cursor",
        "cursor",
    )
    assert_error(
        api.get(
            f"/numbers/{enc(ALICE)}/conversations/{alice_cid}/messages",
            query_string={"cursor": messages, "order": "desc"},
        ),
        400,
        "invalid_cursor",
        "cursor",
    )
    # ...and does work there.
    assert (
        api.get(f"/numbers/{enc(ALICE)}/conversations", query_string={"cursor": alice_cursor}).status_code
        == 200
    )


def test_recent_conversations_across_numbers(api, manager):
    bob = chat(manager, BOB, 1)
    alice = chat(manager, ALICE, 1)
    carol = chat(manager, "+33612345678", 1)
    body = api.get("/conversations").get_json()
    items = body["items"]
    assert {c["conversation_id"]: c["number"] for c in items} == {
        carol: "+33612345678",
        alice: ALICE,
        bob: BOB,
    }
    # The activity index orders by minute (ties in index order), newest first.
    minutes = [c["last_message_at"][:16] for c in items]
    assert minutes == sorted(minutes, reverse=True)
    paged = api.pages("/conversations", limit=1)
    assert sorted(c["conversation_id"] for c in paged) == sorted([bob, alice, carol])


def test_messages_in_both_orders_with_pagination(api, manager):
    cid = chat(manager, ALICE, 4)
    path = f"/numbers/{enc(ALICE)}/conversations/{cid}/messages"
    everything = api.get(path).get_json()
    contents = [m["content"] for m in everything["items"]]
    assert contents == [x for i in range(4) for x in (f"text {i}", f"reply {i}")]
    assert everything["next_cursor"] is None
    first = everything["items"][1]
    assert first["role"] == "assistant" and first["reply_to"] == everything["items"][0]["message_id"]
    assert [m["content"] for m in api.pages(path, limit=3)] == contents
    assert [m["content"] for m in api.pages(path, limit=3, order="desc")] == contents[::-1]
    assert_error(api.get(path, query_string={"order": "newest"}), 400, "invalid_order", "order")


def test_paging_while_messages_arrive_skips_and_repeats_nothing(api, manager):
    cid = chat(manager, ALICE, 5)
    path = f"/numbers/{enc(ALICE)}/conversations/{cid}/messages"
    before = [m["message_id"] for m in api.get(path).get_json()["items"]]
    counter = iter(range(100))

    def arrive():
        manager.add_user_message(ALICE, f"late {next(counter)}")

    for order in ("asc", "desc"):
        seen = [m["message_id"] for m in api.pages(path, limit=3, between=arrive, order=order)]
        assert len(seen) == len(set(seen))
        kept = [mid for mid in seen if mid in before]
        assert kept == (before if order == "asc" else before[::-1])


def test_paging_while_conversations_start_skips_and_repeats_nothing(api, manager):
    existing = []
    for index in range(5):
        existing.append(chat(manager, ALICE, 1, f"c{index}"))
        manager.reset_conversation(ALICE)

    def new_conversation():
        manager.reset_conversation(ALICE)
        manager.add_user_message(ALICE, "a fresh start")

    seen = [
        c["conversation_id"]
        for c in api.pages(f"/numbers/{enc(ALICE)}/conversations", limit=2, between=new_conversation)
    ]
    assert len(seen) == len(set(seen))
    assert [cid for cid in seen if cid in existing] == existing[::-1]


# ------------------------------------------------------- one conversation


def test_get_one_conversation_and_unknown_ids(api, manager):
    cid = chat(manager, ALICE, 1)
    body = api.get(f"/numbers/{enc(ALICE)}/conversations/{cid}").get_json()
    assert body["conversation_id"] == cid and body["message_count"] == 2
    for suffix in ("", "/messages", "/stats"):
        assert_error(
            api.get(f"/numbers/{enc(ALICE)}/conversations/nope{suffix}"),
            404,
            "conversation_not_found",
            "conversation_id",
        )
        # Another number's conversation is unknown here.
        assert_error(
            api.get(f"/numbers/{enc(BOB)}/conversations/{cid}{suffix}"),
            404,
            "conversation_not_found",
            "conversation_id",
        )
        assert_error(
            api.get(f"/numbers/{enc(ALICE)}/conversations/{'x' * 65}{suffix}"),
            400,
            "invalid_conversation_id",
            "conversation_id",
        )
        assert_error(
            api.get(f"/numbers/{enc(ALICE)}/conversations/a%23b{suffix}"),
            400,
            "invalid_conversation_id",
            "conversation_id",
        )


def test_stats_report_counts_times_and_usage(api, manager):
    cid = chat(manager, ALICE, 3)
    manager.add_system_message(ALICE, "note")
    reply = manager.get_history(ALICE, 2)[0]
    manager.storage.update_message_metadata(
        ALICE, reply, {"delivery": "failed"}, counters={"delivery_failures": 1}
    )
    body = api.get(f"/numbers/{enc(ALICE)}/conversations/{cid}/stats").get_json()
    assert body["message_count"] == 7
    assert body["by_role"] == {"user": 3, "assistant": 3, "system": 1}
    assert (body["tokens"], body["segments"], body["model_calls"], body["delivery_failures"]) == (30, 3, 3, 1)
    assert body["counters"]["tokens"] == 30
    assert body["first_message_at"] < body["last_message_at"]
    assert body["duration_seconds"] > 0


def test_rename_and_archive(api, manager):
    cid = chat(manager, ALICE, 1)
    path = f"/numbers/{enc(ALICE)}/conversations/{cid}"
    body = api.patch(path, json={"title": "  On spoons  "}).get_json()
    assert body["title"] == "On spoons" and body["is_active"] is True
    body = api.patch(path, json={"archived": True, "title": "Archived spoons"}).get_json()
    assert body["is_active"] is False and body["title"] == "Archived spoons"
    # The next text starts a new conversation.
    manager.add_user_message(ALICE, "hello again")
    assert manager.get_or_create_conversation(ALICE).conversation_id != cid
    error = assert_error(api.patch(path, json={"archived": True}), 409, "already_archived", "archived")
    assert "archived" in error["message"]
    # Renaming an archived conversation is fine.
    assert api.patch(path, json={"title": "Later"}).get_json()["title"] == "Later"


BAD_BODIES = [
    ({"title": ""}, "title"),
    ({"title": "   "}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": 5}, "title"),
    ({"title": None}, "title"),
    ({"archived": False}, "archived"),
    ({"archived": "yes"}, "archived"),
    ({"colour": "red"}, "colour"),
    ({}, "body"),
    ([], "body"),
    ("not json", "body"),
]


def test_bad_patch_bodies_are_400(api, manager):
    cid = chat(manager, ALICE, 1)
    path = f"/numbers/{enc(ALICE)}/conversations/{cid}"
    for body, field in BAD_BODIES:
        response = api.patch(path, data=body) if isinstance(body, str) else api.patch(path, json=body)
        assert_error(response, 400, field=field)
    unchanged = api.get(path).get_json()
    assert unchanged["title"] is None and unchanged["is_active"] is True


def test_patch_unknown_conversation_is_404(api):
    assert_error(
        api.patch(f"/numbers/{enc(ALICE)}/conversations/nope", json={"title": "x"}),
        404,
        "conversation_not_found",
        "conversation_id",
    )


def test_title_of_200_characters_is_accepted(api, manager):
    cid = chat(manager, ALICE, 1)
    title = "\U0001f63a" * 200
    assert (
        api.patch(f"/numbers/{enc(ALICE)}/conversations/{cid}", json={"title": title}).get_json()["title"]
        == title
    )


def test_soft_then_hard_delete(api, manager):
    cid = chat(manager, ALICE, 2)
    path = f"/numbers/{enc(ALICE)}/conversations/{cid}"
    body = api.delete(path).get_json()
    assert body == {"conversation_id": cid, "hard": False, "deleted_items": 0}
    # Hidden from listings, still readable by id, kept in exports.
    assert api.get(f"/numbers/{enc(ALICE)}/conversations").get_json()["items"] == []
    assert api.get("/conversations").get_json()["items"] == []
    assert api.get(path).get_json()["deleted_at"] is not None
    assert len(api.get(f"/numbers/{enc(ALICE)}/export").get_json()["conversations"]) == 1
    assert_error(api.delete(path), 409, "already_deleted")
    assert_error(api.patch(path, json={"title": "x"}), 409, "conversation_deleted")
    assert_error(api.delete(path, query_string={"hard": "maybe"}), 400, "invalid_hard", "hard")

    body = api.delete(path, query_string={"hard": "true"}).get_json()
    assert body["hard"] is True and body["deleted_items"] >= 5
    assert_error(api.get(path), 404, "conversation_not_found", "conversation_id")
    assert_error(
        api.delete(path, query_string={"hard": "true"}), 404, "conversation_not_found", "conversation_id"
    )
    assert api.get(f"/numbers/{enc(ALICE)}/export").get_json()["conversations"] == []


def test_hard_delete_of_the_active_conversation(api, manager):
    cid = chat(manager, ALICE, 1)
    assert (
        api.delete(f"/numbers/{enc(ALICE)}/conversations/{cid}", query_string={"hard": "1"}).status_code
        == 200
    )
    manager.add_user_message(ALICE, "still here")
    assert manager.get_or_create_conversation(ALICE).conversation_id != cid


# --------------------------------------------------------------- a number


def test_reset_a_number(api, manager):
    cid = chat(manager, ALICE, 1)
    body = api.post(f"/numbers/{enc(ALICE)}/reset").get_json()
    assert body == {"number": ALICE, "archived_conversation_id": cid}
    assert api.get(f"/numbers/{enc(ALICE)}/conversations/{cid}").get_json()["is_active"] is False
    assert api.post(f"/numbers/{enc(ALICE)}/reset").get_json()["archived_conversation_id"] is None
    assert api.post(f"/numbers/{enc(BOB)}/reset").get_json()["archived_conversation_id"] is None


def test_export_everything_for_a_number(api, manager):
    first = chat(manager, ALICE, 2)
    manager.reset_conversation(ALICE)
    second = chat(manager, ALICE, 1)
    chat(manager, BOB, 1, "bob's secret")
    body = api.get(f"/numbers/{enc(ALICE)}/export").get_json()
    assert body["user_id"] == ALICE and body["user"]["user_id"] == ALICE
    by_id = {c["conversation_id"]: c for c in body["conversations"]}
    assert set(by_id) == {first, second}
    assert len(by_id[first]["messages"]) == 4 and len(by_id[second]["messages"]) == 2
    assert "bob's secret" not in str(body)
    empty = api.get(f"/numbers/{enc('+15550000000')}/export").get_json()
    assert empty["user"] is None and empty["conversations"] == []


@pytest.mark.parametrize("how", ["delete", "post"])
def test_erase_leaves_nothing_and_is_safe_to_repeat(api, manager, how):
    chat(manager, ALICE, 3)
    manager.reset_conversation(ALICE)
    chat(manager, ALICE, 1)
    manager.record_user_message(ALICE, "with an id", message_id="SM123")
    manager.set_opt_out(ALICE, True)
    bob = chat(manager, BOB, 2)
    erase = (
        (lambda: api.delete(f"/numbers/{enc(ALICE)}"))
        if how == "delete"
        else (lambda: api.post(f"/numbers/{enc(ALICE)}/erase"))
    )

    response = erase()
    assert response.status_code == 200
    assert response.get_json()["erased_items"] > 10
    assert list(manager.storage.iter_user_items(ALICE)) == []
    assert api.get(f"/numbers/{enc(ALICE)}/conversations").get_json()["items"] == []
    assert [c["number"] for c in api.get("/conversations").get_json()["items"]] == [BOB]
    assert manager.get_message(ALICE, "SM123") is None
    assert manager.is_opted_out(ALICE) is False

    again = erase()
    assert again.status_code == 200 and again.get_json() == {"number": ALICE, "erased_items": 0}
    # The other number is untouched.
    assert api.get(f"/numbers/{enc(BOB)}/conversations/{bob}").get_json()["message_count"] == 4


def test_operator_actions_are_logged_with_masked_numbers(api, manager, caplog):
    chat(manager, ALICE, 1, "very private words")
    with caplog.at_level(logging.INFO, logger="app.operations"):
        api.get(f"/numbers/{enc(ALICE)}/export")
        api.delete(f"/numbers/{enc(ALICE)}")
    lines = [r.getMessage() for r in caplog.records if r.name == "app.operations"]
    assert any("erase" in line for line in lines) and any("export" in line for line in lines)
    text = "\n".join(lines)
    assert ALICE not in text and "5551234567" not in text and "private" not in text
    assert "+15*******67" in text


# ----------------------------------------------------------- store trouble


def test_unreachable_store_is_503_json(unreachable_storage):
    app = create_app({"TWILIO_AUTH_TOKEN": "t", "ADMIN_API_TOKEN": TOKEN}, storage=unreachable_storage)
    api = Api(app.test_client())
    response = api.get(f"/numbers/{enc(ALICE)}/conversations")
    assert_error(response, 503, "storage_unavailable")
    assert response.headers["Retry-After"]
    assert_error(api.delete(f"/numbers/{enc(ALICE)}"), 503, "storage_unavailable")


def test_missing_table_is_503_json(moto_storage):
    missing = DynamoDBStorage("t-missing", region_name="us-east-1", auto_create=False)
    app = create_app({"TWILIO_AUTH_TOKEN": "t", "ADMIN_API_TOKEN": TOKEN}, storage=missing)
    assert_error(Api(app.test_client()).get(f"/numbers/{enc(ALICE)}/export"), 503, "storage_error")


def test_unexpected_failure_is_a_json_500(app, api, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(services(app).manager, "export_user", boom)
    assert_error(api.get(f"/numbers/{enc(ALICE)}/export"), 500, "internal_error")
