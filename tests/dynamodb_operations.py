"""A pytest plugin that records every DynamoDB operation the project's code calls.

Every botocore client built during the session gets a ``before-parameter-build``
hook (a botocore event, not a patch of the store), which notes the IAM actions the
call needs and which part of the project made it, by the first project frame on the
stack:

- ``migration``: anything under scripts/migrate_legacy.py;
- ``admin``: table set-up (``DynamoDBStorage.create_table`` and what it calls);
- ``runtime``: every other call from app/ or conversation/ (the bot, the operator
  API and CLI, the agent session);
- calls made only by test code (fixtures deleting tables, direct client calls)
  are no part of any policy and are not recorded.

tests/test_aws.py compares these against the policies in scripts/aws/dynamodb.yaml;
that test is moved to the end of the session so it sees everything the suite did.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# Table.create is what DynamoDBStorage.create_table calls since storage became a package.
# Table set-up, as (file name, function) under conversation/: a bare "create" would also
# match ConversationStore.create (conversations.py), which is runtime work.
ADMIN_FUNCTIONS = {("storage.py", "create_table"), ("table.py", "create"), ("table.py", "_enable_ttl"),
                   ("table.py", "_enable_point_in_time_recovery")}
LAST_TEST = "test_policies_grant_exactly_what_the_suite_called"

# IAM authorises each element of a transaction as the single-item action.
TRANSACT_ELEMENTS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


class Recorder:
    """IAM actions seen per part of the project, with one call site each for messages."""

    def __init__(self) -> None:
        self.actions: dict[str, dict[str, str]] = defaultdict(dict)
        self.full_run = False
        self._lock = threading.Lock()

    def record(self, part: str, actions: list[str], where: str) -> None:
        with self._lock:
            for action in actions:
                self.actions[part].setdefault(action, where)


RECORDER = Recorder()


def iam_actions(operation: str, params: dict[str, Any]) -> list[str]:
    """Return the IAM actions one DynamoDB call needs."""
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return sorted({TRANSACT_ELEMENTS[kind] for element in params.get("TransactItems", [])
                       for kind in element})
    return [operation]


def classify(frame: Any) -> tuple[str | None, str]:
    """Return (part, call site) for the stack above a botocore call, or (None, '') for test code."""
    part = None
    where = ""
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(ROOT) and ".venv" not in path.parts and not path.is_relative_to(TESTS):
            relative = path.relative_to(ROOT)
            if relative.parts[0] == "scripts" and relative.name == "migrate_legacy.py":
                return "migration", f"{relative}:{frame.f_lineno}"
            in_conversation = relative.parts[0] == "conversation"
            if in_conversation and (relative.name, frame.f_code.co_name) in ADMIN_FUNCTIONS:
                part, where = "admin", f"{relative}:{frame.f_lineno}"
            elif part is None and relative.parts[0] in ("app", "conversation"):
                part, where = "runtime", f"{relative}:{frame.f_lineno}"
        frame = frame.f_back
    return part, where


def _before_parameter_build(params: dict[str, Any], model: Any, **_: Any) -> None:
    part, where = classify(sys._getframe(1))
    if part is not None:
        RECORDER.record(part, iam_actions(model.name, params), where)


def _hook_client_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.client import ClientCreator

    original = ClientCreator.create_client

    def create_client(self, service_name, *args, **kwargs):
        client = original(self, service_name, *args, **kwargs)
        if service_name == "dynamodb":
            client.meta.events.register("before-parameter-build.dynamodb", _before_parameter_build)
        return client

    monkeypatch.setattr(ClientCreator, "create_client", create_client)


def pytest_configure(config: pytest.Config) -> None:
    patch = pytest.MonkeyPatch()
    _hook_client_creation(patch)
    config.add_cleanup(patch.undo)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    last = [item for item in items if item.name == LAST_TEST]
    for item in last:
        items.remove(item)
        items.append(item)
    # "Granted but never called" only means something when the whole suite runs.
    whole_suite = all(Path(arg).resolve() == TESTS for arg in config.args)
    narrowed = any(config.getoption(name) for name in ("keyword", "markexpr", "lf", "deselect"))
    RECORDER.full_run = bool(whole_suite and not narrowed)


@pytest.hookimpl(trylast=True)
def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        RECORDER.full_run = False
