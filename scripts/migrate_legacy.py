"""Copy conversations from the original DadaCat layout into the current one.

The original layout keeps one item per ``user_id`` with every message in a JSON
string attribute ``messages``. Each legacy item becomes one conversation here,
with one item per message and the original timestamps. Re-running copies
nothing twice: the conversation id and every message id are derived from the
legacy item, and appends are idempotent.

Usage: python scripts/migrate_legacy.py --source-table OLD [--target-table NEW] [--endpoint-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from conversation import DynamoDBStorage, Message
from conversation.models import ROLES, isoformat, parse_iso, utc_now

log = logging.getLogger("migrate_legacy")


@dataclass
class MigrationReport:
    """What a migration run did."""

    users: int = 0
    conversations_created: int = 0
    messages_copied: int = 0
    messages_already_there: int = 0
    skipped: list[str] = field(default_factory=list)


def legacy_conversation_id(user_id: str, created_at: str) -> str:
    """Return the deterministic conversation id for one legacy item."""
    try:
        moment = parse_iso(created_at)
    except ValueError:
        moment = parse_iso("1970-01-01T00:00:00Z")
    digest = hashlib.sha256(f"{user_id}|{created_at}".encode()).hexdigest()[:8]
    return f"{moment.strftime('%Y%m%dT%H%M%S.%f')}-{digest}"


def iter_legacy_items(client: Any, table: str):
    """Yield the legacy table's items as plain dicts (a full Scan: a one-off job)."""
    deserializer = TypeDeserializer()
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        response = client.scan(**kwargs)
        for item in response.get("Items", []):
            yield {k: deserializer.deserialize(v) for k, v in item.items()}
        if not response.get("LastEvaluatedKey"):
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _legacy_messages(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else []
    if not isinstance(raw, list):
        raise ValueError("messages is not a JSON array")
    return [m for m in raw if isinstance(m, dict)]


def _moment(text: str, fallback: str) -> datetime:
    for candidate in (text, fallback, "1970-01-01T00:00:00Z"):
        try:
            moment = parse_iso(candidate)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise AssertionError("unreachable")


def migrate_item(storage: DynamoDBStorage, item: dict[str, Any], report: MigrationReport) -> None:
    """Copy one legacy item (one user's conversation) into the store."""
    user_id = str(item["user_id"])
    created_at = str(item.get("created_at") or isoformat(utc_now()))
    messages = _legacy_messages(item.get("messages", "[]"))
    metadata = item.get("metadata")
    if isinstance(metadata, str) and metadata.strip():
        metadata = json.loads(metadata)
    conversation_id = legacy_conversation_id(user_id, created_at)
    if storage.create_conversation(
        user_id,
        conversation_id,
        created_at=created_at,
        metadata={"migrated_from": "legacy", **(metadata if isinstance(metadata, dict) else {})},
    ):
        report.conversations_created += 1
    previous = None
    for index, raw in enumerate(messages):
        role = raw.get("role", "user")
        original = str(raw.get("timestamp") or created_at)
        metadata = dict(raw["metadata"]) if isinstance(raw.get("metadata"), dict) else {}
        moment = _moment(original, created_at)
        # Messages are ordered by time: keep the legacy array's order when
        # timestamps tie or go backwards by nudging by a microsecond.
        if previous is not None and moment <= previous:
            moment = previous + timedelta(microseconds=1)
            metadata["legacy_timestamp"] = original
        previous = moment
        message = Message(
            content=str(raw.get("content", "")),
            role=role if role in ROLES else "user",
            timestamp=isoformat(moment),
            message_id=f"legacy-{conversation_id}-{index:06d}",
            metadata=metadata,
        )
        recorded = storage.append(user_id, message, conversation_id=conversation_id, idempotent=True)
        if recorded.created:
            report.messages_copied += 1
        else:
            report.messages_already_there += 1
    if item.get("is_active", True):
        storage.activate_conversation(user_id, conversation_id)
    report.users += 1


def migrate(source_client: Any, source_table: str, storage: DynamoDBStorage) -> MigrationReport:
    """Copy every legacy item; items that cannot be read are listed, not fatal."""
    report = MigrationReport()
    for item in iter_legacy_items(source_client, source_table):
        try:
            migrate_item(storage, item, report)
        except (KeyError, ValueError, TypeError) as exc:
            report.skipped.append(f"{item.get('user_id', '?')}: {exc}")
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the migration from the command line."""
    from app.config import load_config

    config = load_config(
        {"TWILIO_VALIDATE_SIGNATURE": False}  # not serving requests here
    )
    parser = argparse.ArgumentParser(description="Copy legacy DadaCat conversations into the current layout.")
    parser.add_argument("--source-table", required=True)
    parser.add_argument("--target-table", default=config.dynamodb_table_name)
    parser.add_argument("--endpoint-url", default=config.aws_endpoint_url)
    parser.add_argument("--region", default=config.aws_region)
    args = parser.parse_args(argv)
    storage = DynamoDBStorage(
        args.target_table,
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        ttl_days=config.conversation_ttl_days,
    )
    report = migrate(storage.client, args.source_table, storage)
    print(
        f"users: {report.users}, conversations created: {report.conversations_created}, "
        f"messages copied: {report.messages_copied}, already there: {report.messages_already_there}, "
        f"skipped: {len(report.skipped)}"
    )
    for line in report.skipped:
        print(f"  skipped {line}")
    return 1 if report.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
