"""AWS as code: scripts/aws/dynamodb.yaml matches create_table and grants exactly what the code calls.

cfn-lint checks the template itself in `make test`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.config import SETTINGS
from tests.dynamodb_operations import RECORDER, iam_actions

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "scripts" / "aws" / "dynamodb.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, !Sub) kept as {tag: value}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - a safe loader subclass


def policy_actions(name: str) -> set[str]:
    document = template()["Resources"][name]["Properties"]["PolicyDocument"]
    return {action.removeprefix("dynamodb:") for statement in document["Statement"]
            for action in statement["Action"]}


def recording_client(storage) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    client = getattr(storage.client, "_client", storage.client)  # unwrap the moto serialiser
    client.meta.events.register(
        "before-parameter-build.dynamodb",
        lambda params, model, **_: calls.append((model.name, dict(params))),
    )
    return calls


def test_create_table_and_the_template_define_the_same_table():
    import boto3
    from moto import mock_aws

    from conversation import DynamoDBStorage

    with mock_aws():
        storage = DynamoDBStorage("DadaCatDrift", client=boto3.client("dynamodb", region_name="us-east-1"),
                                  ttl_days=30)
        calls = recording_client(storage)
        assert storage.create_table() is True
        backups = storage.client.describe_continuous_backups(TableName="DadaCatDrift")
    code = {name: params for name, params in calls}
    table = template()["Resources"]["ConversationsTable"]["Properties"]
    created = code["CreateTable"]

    assert table["BillingMode"] == created["BillingMode"] == "PAY_PER_REQUEST"
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(created["AttributeDefinitions"], key=str)
    assert table["KeySchema"] == created["KeySchema"]
    assert table["GlobalSecondaryIndexes"] == created["GlobalSecondaryIndexes"]
    known = {"TableName", "BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes"}
    assert set(created) <= known, "a new CreateTable setting is missing from the template"
    assert table["TimeToLiveSpecification"] == code["UpdateTimeToLive"]["TimeToLiveSpecification"]
    assert table["PointInTimeRecoverySpecification"] == \
        code["UpdateContinuousBackups"]["PointInTimeRecoverySpecification"]
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    default_name = next(s.default for s in SETTINGS if s.name == "DYNAMODB_TABLE_NAME")
    assert template()["Parameters"]["TableName"]["Default"] == default_name


def test_transactions_are_authorised_per_element():
    items = [{"Put": {}}, {"Update": {}}, {"Update": {}}, {"Delete": {}}]
    expected = ["DeleteItem", "PutItem", "UpdateItem"]
    assert iam_actions("TransactWriteItems", {"TransactItems": items}) == expected
    assert iam_actions("TransactGetItems", {"TransactItems": [{"Get": {}}]}) == ["GetItem"]
    assert iam_actions("Query", {"TableName": "t"}) == ["Query"]


def test_the_recorder_sees_the_stores_calls_and_not_the_tests(moto_storage):
    moto_storage.client.describe_table(TableName=moto_storage.table_name)  # test code: not recorded
    before = dict(RECORDER.actions["runtime"])
    moto_storage.ping()
    assert "DescribeTable" in RECORDER.actions["runtime"]
    assert RECORDER.actions["runtime"]["DescribeTable"].startswith("conversation/")
    assert "CreateTable" in RECORDER.actions["admin"] and "CreateTable" not in RECORDER.actions["runtime"]
    assert set(before) <= set(RECORDER.actions["runtime"])


def test_policies_grant_exactly_what_the_suite_called():
    """Runs last (tests/dynamodb_operations.py moves it): compare each policy with the recorded calls."""
    problems = []
    for part, policy in (("runtime", "RuntimePolicy"), ("admin", "AdminPolicy"),
                         ("migration", "MigrationPolicy")):
        called = RECORDER.actions.get(part, {})
        granted = policy_actions(policy)
        for action in sorted(set(called) - granted):
            problems.append(f"{policy} lacks dynamodb:{action} (called at {called[action]})")
        if RECORDER.full_run:
            for action in sorted(granted - set(called)):
                problems.append(f"{policy} grants dynamodb:{action}, which no test's code path called")
    assert not problems, "\n".join(problems)


def test_creating_a_conversation_is_not_table_set_up(moto_storage):
    saved = dict(RECORDER.actions)
    RECORDER.actions.clear()
    try:
        moto_storage.create_conversation("+15550001234", "c-imported", created_at="2026-01-01T00:00:00Z")
        assert RECORDER.actions["runtime"] and not RECORDER.actions.get("admin")
    finally:
        recorded = dict(RECORDER.actions)
        RECORDER.actions.clear()
        RECORDER.actions.update(saved)
        for part, actions in recorded.items():
            for action, where in actions.items():
                RECORDER.actions[part].setdefault(action, where)
