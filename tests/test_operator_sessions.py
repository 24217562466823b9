"""Console sessions on both backends: live until ended or expired; the table never holds the id."""

from __future__ import annotations

import time

from conversation.operator_sessions import OperatorSessions


def test_a_session_lives_until_it_is_ended(storage):
    sessions = OperatorSessions(storage)
    first, second = sessions.start(3600), sessions.start(3600)
    assert first != second and sessions.is_live(first) and sessions.is_live(second)
    sessions.end(first)
    assert not sessions.is_live(first)
    assert sessions.is_live(second)  # signing out one browser leaves the others
    assert not sessions.is_live("never-issued") and not sessions.is_live("")


def test_an_expired_session_is_refused_before_ttl_removes_it(storage):
    now = [time.time()]
    sessions = OperatorSessions(storage, clock=lambda: now[0])
    session_id = sessions.start(60)
    now[0] += 59
    assert sessions.is_live(session_id)
    now[0] += 2
    assert not sessions.is_live(session_id)


def test_the_table_holds_a_digest_not_the_session_id(moto_storage):
    session_id = OperatorSessions(moto_storage).start(60)
    items = moto_storage.client.scan(TableName=moto_storage.table_name)["Items"]
    assert items and session_id not in repr(items)
