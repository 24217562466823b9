"""DynamoDB storage for conversations: one item per message, constant cost per turn.

The item layout and every access pattern are described in ``docs/data-model.md``.
All items of one user (phone number) share a partition ``pk = U#<user_id>``:

=====================  ==========================================  =====================
item                   sort key ``sk``                             written
=====================  ==========================================  =====================
user                   ``USER``                                    on conversation start,
                                                                   reset, opt-out
conversation header    ``C#<conversation_id>``                     with every message
message                ``M#<conversation_id>#<time>#<random>``     once
reply to a message     ``<parent sort key>#R``                     once
message-id marker      ``I#<message_id>``                          with its message
lease / counter        ``LEASE`` / ``N#<name>``                    per turn (optional)
=====================  ==========================================  =====================
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from conversation.errors import (
    ConversationNotFound,
    InvalidCursor,
    MessageTooLarge,
    StorageError,
    StorageUnavailable,
    TableMissing,
)
from conversation.models import (
    Conversation,
    Message,
    Page,
    Recorded,
    Summary,
    isoformat,
    parse_iso,
    utc_now,
)

log = logging.getLogger(__name__)

DEFAULT_TABLE_NAME = "DadaCatConversations"
ACTIVITY_INDEX = "activity"
# DynamoDB's hard limit is 409,600 bytes; stay well below it so a header
# update or an index projection can never push an item over.
DEFAULT_MAX_ITEM_BYTES = 350_000
PREVIEW_CHARS = 120
MAX_PAGE_SIZE = 1000
# How far back the cross-user activity listing looks for day buckets.
DEFAULT_ACTIVITY_LOOKBACK_DAYS = 90
_TX_ATTEMPTS = 12
# One transaction holds at most 100 actions and 4 MB: 99 messages plus their header.
_BATCH_MESSAGES = 99
_BATCH_BYTES = 3_500_000
_POP_ATTEMPTS = 200

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

_UNREACHABLE = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    NoCredentialsError,
)


def _user_pk(user_id: str) -> str:
    return f"U#{user_id}"


def _conv_sk(conversation_id: str) -> str:
    return f"C#{conversation_id}"


def _msg_prefix(conversation_id: str) -> str:
    return f"M#{conversation_id}#"


def _marker_sk(message_id: str) -> str:
    return f"I#{message_id}"


def _time_key(moment_iso: str) -> str:
    """Turn an ISO timestamp into a compact, lexically sortable key."""
    moment = parse_iso(moment_iso)
    return moment.strftime("%Y%m%dT%H%M%S.%f")


def new_conversation_id() -> str:
    """Return a conversation id that sorts by creation time."""
    return f"{utc_now().strftime('%Y%m%dT%H%M%S.%f')}-{secrets.token_hex(4)}"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def _encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this service issued") from exc
    if not isinstance(payload, dict):
        raise InvalidCursor("cursor is not one this service issued")
    return payload


def _item_size(item: dict[str, Any]) -> int:
    """Approximate DynamoDB's item size: attribute names plus UTF-8 values."""
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        total += _value_size(value)
    return total


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner) // 2 + 2
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    return 1


class DynamoDBStorage:
    """Store conversations in one DynamoDB table, one item per message.

    :param table_name: the table; ``DadaCatConversations`` by default.
    :param client: a boto3 DynamoDB client; built lazily from the other
        arguments (and boto3's usual credential chain) when omitted.
    :param ttl_days: when set, every item expires this many days after its last write.
    :param auto_create: create the table on first use when it is missing.
    :param max_retries: retries botocore makes of a throttled or failed request.
    """

    def __init__(
        self,
        table_name: str | None = None,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        ttl_days: float | None = None,
        auto_create: bool = True,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        max_retries: int = 3,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        activity_lookback_days: int = DEFAULT_ACTIVITY_LOOKBACK_DAYS,
    ) -> None:
        self.table_name = table_name or DEFAULT_TABLE_NAME
        self.ttl_days = ttl_days
        self.auto_create = auto_create
        self.max_item_bytes = max_item_bytes
        self.activity_lookback_days = activity_lookback_days
        self._client = client
        self._owns_client = client is None
        self._client_args = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "max_retries": max_retries,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        self._ready = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ plumbing

    @property
    def client(self) -> Any:
        """Return the boto3 client, building it on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    args = self._client_args
                    session = boto3.session.Session()
                    if args["endpoint_url"] and session.get_credentials() is None:
                        # DynamoDB Local accepts any credentials; AWS itself never
                        # gets these because an endpoint URL is set.
                        session = boto3.session.Session(
                            aws_access_key_id="local", aws_secret_access_key="local"
                        )
                    region = args["region_name"] or session.region_name or "us-east-1"
                    self._client = session.client(
                        "dynamodb",
                        endpoint_url=args["endpoint_url"],
                        region_name=region,
                        config=Config(
                            # Throttling and transient errors are retried by
                            # botocore itself, with backoff and jitter; few
                            # retries, as a texter is waiting on each turn.
                            retries={"mode": "standard", "max_attempts": args["max_retries"]},
                            connect_timeout=args["connect_timeout"],
                            read_timeout=args["read_timeout"],
                            max_pool_connections=50,
                        ),
                    )
        return self._client

    def close(self) -> None:
        """Close the client's connections (only a client this store built itself)."""
        if self._owns_client and self._client is not None:
            self._client.close()

    def _call(self, operation: str, *, passthrough: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Any]:
        """Call a client operation, creating the table once if it is missing.

        Client errors whose code is in ``passthrough`` reach the caller as they
        are (the caller handles them); every other one becomes a StorageError.
        """
        self._ensure_table()
        try:
            try:
                return getattr(self.client, operation)(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                if not self.auto_create:
                    raise TableMissing(
                        f"table {self.table_name!r} does not exist; run `flask init-db` "
                        "or scripts/create_table.py"
                    ) from exc
                self._ready = False
                self._ensure_table()
                return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in passthrough:
                raise
            raise self._wrap(exc, operation) from exc
        except _UNREACHABLE as exc:
            raise StorageUnavailable(f"DynamoDB is unreachable: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{operation} failed: {exc}") from exc

    def _wrap(self, exc: Exception, what: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            return StorageError(f"{what} failed: {error.get('Code')}: {error.get('Message')}")
        if isinstance(exc, _UNREACHABLE):
            return StorageUnavailable(f"DynamoDB is unreachable: {exc}")
        return StorageError(f"{what} failed: {exc}")

    def _ensure_table(self) -> None:
        if self._ready or not self.auto_create:
            return
        with self._lock:
            if self._ready:
                return
            # Look before creating: with a data-plane-only IAM identity the
            # table exists and CreateTable would be denied.
            try:
                self.client.describe_table(TableName=self.table_name)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise self._wrap(exc, "DescribeTable") from exc
                self.create_table()
            except _UNREACHABLE as exc:
                raise StorageUnavailable(f"DynamoDB is unreachable: {exc}") from exc
            self._ready = True

    def _ttl_value(self) -> int | None:
        if not self.ttl_days:
            return None
        return int((utc_now() + timedelta(days=self.ttl_days)).timestamp())

    def _alive_filter(self) -> tuple[str, dict[str, Any]]:
        return (
            "attribute_not_exists(expires_at) OR expires_at > :now",
            {":now": _n(int(time.time()))},
        )

    @staticmethod
    def _expired(item: dict[str, Any]) -> bool:
        expires = item.get("expires_at")
        return expires is not None and int(expires["N"]) <= int(time.time())

    def _check_size(self, item: dict[str, Any], what: str) -> None:
        size = _item_size(item)
        if size > self.max_item_bytes:
            raise MessageTooLarge(
                f"{what} would take {size} bytes in DynamoDB; the limit is {self.max_item_bytes}"
            )

    # ------------------------------------------------------------- table admin

    def create_table(self) -> bool:
        """Create the table, its activity index and its TTL setting if missing.

        Safe to call any number of times; returns True when it created the table.
        """
        client = self.client
        created = False
        try:
            client.create_table(
                TableName=self.table_name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                    {"AttributeName": "gsi1pk", "AttributeType": "S"},
                    {"AttributeName": "gsi1sk", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": ACTIVITY_INDEX,
                        "KeySchema": [
                            {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                            {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                        ],
                        # Keys only: updating a header's counters or preview
                        # then costs no index write.
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
            )
            created = True
            log.info("created DynamoDB table %s", self.table_name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise self._wrap(exc, "CreateTable") from exc
        except _UNREACHABLE as exc:
            raise StorageUnavailable(f"DynamoDB is unreachable: {exc}") from exc
        try:
            client.get_waiter("table_exists").wait(
                TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            if self.ttl_days:
                self._enable_ttl()
            if created:
                self._enable_point_in_time_recovery()
        except (ClientError, BotoCoreError) as exc:
            raise self._wrap(exc, "table setup") from exc
        return created

    def _enable_point_in_time_recovery(self) -> None:
        """Turn on continuous backups (restore to any second of the last 35 days)."""
        try:
            self.client.update_continuous_backups(
                TableName=self.table_name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        except ClientError as exc:
            # DynamoDB Local has no backups at all; AWS always has them.
            if exc.response.get("Error", {}).get("Code") != "UnknownOperationException":
                raise
            log.info("point-in-time recovery is not available at this endpoint (DynamoDB Local)")

    def _enable_ttl(self) -> None:
        status = self.client.describe_time_to_live(TableName=self.table_name)
        state = status.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
        if state in ("ENABLED", "ENABLING"):
            return
        self.client.update_time_to_live(
            TableName=self.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )

    def ping(self) -> None:
        """Check that the table is reachable; raise a StorageError if not."""
        try:
            self.client.describe_table(TableName=self.table_name)
        except ClientError as exc:
            raise self._wrap(exc, "DescribeTable") from exc
        except _UNREACHABLE as exc:
            raise StorageUnavailable(f"DynamoDB is unreachable: {exc}") from exc

    # ---------------------------------------------------------- item mapping

    def _message_item(self, user_id: str, message: Message, sk: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": _s(_user_pk(user_id)),
            "sk": _s(sk),
            "entity": _s("message"),
            "role": _s(message.role),
            "content": _s(message.content),
            "ts": _s(message.timestamp),
            "message_id": _s(message.message_id),
        }
        if message.media_urls:
            item["media_urls"] = {"L": [_s(url) for url in message.media_urls]}
        if message.metadata:
            # JSON keeps floats, nesting and key order exact, with no Decimal
            # conversion in either direction.
            item["metadata"] = _s(json.dumps(message.metadata, ensure_ascii=False))
        if message.reply_to:
            item["reply_to"] = _s(message.reply_to)
        expires = self._ttl_value()
        if expires is not None:
            item["expires_at"] = _n(expires)
        return item

    @staticmethod
    def _message_from_item(item: dict[str, Any]) -> Message:
        sk = item["sk"]["S"]
        # sk = M#<conversation_id>#<position>
        _, conversation_id, position = sk.split("#", 2)
        return Message(
            content=item["content"]["S"],
            role=item["role"]["S"],
            timestamp=item["ts"]["S"],
            message_id=item["message_id"]["S"],
            media_urls=[v["S"] for v in item.get("media_urls", {}).get("L", [])],
            metadata=json.loads(item["metadata"]["S"]) if "metadata" in item else {},
            reply_to=item.get("reply_to", {}).get("S"),
            conversation_id=conversation_id,
            position=position,
        )

    @staticmethod
    def _conversation_from_item(item: dict[str, Any]) -> Conversation:
        plain = {k: _deserializer.deserialize(v) for k, v in item.items()}
        role_counts = {
            role: int(plain.get(f"{role}_count", 0)) for role in ("user", "assistant", "system")
        }
        counters = {
            key[len("ctr_"):]: int(value) for key, value in plain.items() if key.startswith("ctr_")
        }
        return Conversation(
            user_id=plain["user_id"],
            conversation_id=plain["conversation_id"],
            created_at=plain["created_at"],
            updated_at=plain["updated_at"],
            last_message_at=plain.get("last_message_at"),
            is_active=bool(plain.get("is_active", False)),
            title=plain.get("title"),
            message_count=int(plain.get("message_count", 0)),
            role_counts=role_counts,
            counters=counters,
            preview=plain.get("preview", ""),
            metadata=json.loads(plain["metadata"]) if plain.get("metadata") else {},
            deleted_at=plain.get("deleted_at"),
            summary=_summary_from(plain),
        )

    # ------------------------------------------------------------- users

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        """Return the user record (active conversation id, opt-out state) or None."""
        response = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"pk": _s(_user_pk(user_id)), "sk": _s("USER")},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None or self._expired(item):
            return None
        return {k: _deserializer.deserialize(v) for k, v in item.items()}

    def set_opt_out(self, user_id: str, opted_out: bool) -> None:
        """Record whether the number has opted out of messages (STOP/START)."""
        now = isoformat(utc_now())
        names = {"#u": "user_id"}
        values: dict[str, Any] = {
            ":o": {"BOOL": opted_out},
            ":now": _s(now),
            ":uid": _s(user_id),
            ":user": _s("user"),
        }
        expression = (
            "SET opted_out = :o, opt_out_changed_at = :now, updated_at = :now, "
            "#u = :uid, entity = :user, created_at = if_not_exists(created_at, :now)"
        )
        expires = self._ttl_value()
        if expires is not None:
            expression += ", expires_at = :exp"
            values[":exp"] = _n(expires)
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={"pk": _s(_user_pk(user_id)), "sk": _s("USER")},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            raise self._wrap(exc, "UpdateItem") from exc

    # ------------------------------------------------------- conversations

    def get_conversation(self, user_id: str, conversation_id: str) -> Conversation | None:
        """Return one conversation header (without messages), or None."""
        response = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"pk": _s(_user_pk(user_id)), "sk": _s(_conv_sk(conversation_id))},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None or self._expired(item):
            return None
        return self._conversation_from_item(item)

    def get_active_conversation(self, user_id: str) -> Conversation | None:
        """Return the active conversation's header, or None if there is none."""
        user = self.get_user(user_id)
        if not user or not user.get("active_cid"):
            return None
        conversation = self.get_conversation(user_id, user["active_cid"])
        if conversation is None or not conversation.is_active:
            return None
        return conversation

    def start_conversation(self, user_id: str, *, expected_active: str | None = None) -> str:
        """Make a new active conversation unless another one became active first.

        Returns the id of the conversation that is active afterwards.
        """
        now = isoformat(utc_now())
        conversation_id = new_conversation_id()
        header = {
            "pk": _s(_user_pk(user_id)),
            "sk": _s(_conv_sk(conversation_id)),
            "entity": _s("conversation"),
            "user_id": _s(user_id),
            "conversation_id": _s(conversation_id),
            "created_at": _s(now),
            "updated_at": _s(now),
            "is_active": {"BOOL": True},
            "message_count": _n(0),
            "gsi1pk": _s(f"A#{now[:10]}"),
            "gsi1sk": _s(f"{now[:16]}#{user_id}#{conversation_id}"),
        }
        values: dict[str, Any] = {
            ":cid": _s(conversation_id),
            ":now": _s(now),
            ":uid": _s(user_id),
            ":one": _n(1),
            ":user": _s("user"),
        }
        expression = (
            "SET active_cid = :cid, updated_at = :now, user_id = :uid, entity = :user, "
            "created_at = if_not_exists(created_at, :now) ADD conversation_count :one"
        )
        expires = self._ttl_value()
        if expires is not None:
            header["expires_at"] = _n(expires)
            expression = expression.replace("ADD", ", expires_at = :exp ADD")
            values[":exp"] = _n(expires)
        condition = "attribute_not_exists(active_cid)"
        if expected_active:
            condition = "attribute_not_exists(active_cid) OR active_cid = :old"
            values[":old"] = _s(expected_active)
        try:
            self._transact(
                [
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": header,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {"pk": _s(_user_pk(user_id)), "sk": _s("USER")},
                            "UpdateExpression": expression,
                            "ConditionExpression": condition,
                            "ExpressionAttributeValues": values,
                        }
                    },
                ]
            )
        except _Cancelled:
            user = self.get_user(user_id) or {}
            if user.get("active_cid"):
                return user["active_cid"]
            raise StorageError(
                "could not start a conversation: the user record kept changing"
            ) from None
        return conversation_id

    def _active_id(self, user_id: str) -> str:
        user = self.get_user(user_id)
        if user and user.get("active_cid"):
            return user["active_cid"]
        return self.start_conversation(user_id)

    def create_conversation(
        self,
        user_id: str,
        conversation_id: str,
        *,
        created_at: str,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Create an archived conversation with a given id (imports); False if it exists.

        The conversation is not made active; append to it with ``conversation_id``.
        """
        header = {
            "pk": _s(_user_pk(user_id)),
            "sk": _s(_conv_sk(conversation_id)),
            "entity": _s("conversation"),
            "user_id": _s(user_id),
            "conversation_id": _s(conversation_id),
            "created_at": _s(created_at),
            "updated_at": _s(created_at),
            "is_active": {"BOOL": False},
            "message_count": _n(0),
            "gsi1pk": _s(f"A#{created_at[:10]}"),
            "gsi1sk": _s(f"{created_at[:16]}#{user_id}#{conversation_id}"),
        }
        if metadata:
            header["metadata"] = _s(json.dumps(metadata, ensure_ascii=False))
        expires = self._ttl_value()
        if expires is not None:
            header["expires_at"] = _n(expires)
        try:
            self._call(
                "put_item",
                passthrough=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Item=header,
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError:
            return False
        return True

    def activate_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Make a conversation the active one if the user has none; False otherwise."""
        now = isoformat(utc_now())
        try:
            self._transact(
                [
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {"pk": _s(_user_pk(user_id)), "sk": _s(_conv_sk(conversation_id))},
                            "UpdateExpression": "SET is_active = :t",
                            "ConditionExpression": (
                                "attribute_exists(pk) AND attribute_not_exists(deleted_at)"
                            ),
                            "ExpressionAttributeValues": {":t": {"BOOL": True}},
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {"pk": _s(_user_pk(user_id)), "sk": _s("USER")},
                            "UpdateExpression": "SET active_cid = :cid, user_id = :uid, entity = :user, "
                            "updated_at = :now, created_at = if_not_exists(created_at, :now) "
                            "ADD conversation_count :one",
                            "ConditionExpression": "attribute_not_exists(active_cid)",
                            "ExpressionAttributeValues": {
                                ":cid": _s(conversation_id),
                                ":uid": _s(user_id),
                                ":user": _s("user"),
                                ":now": _s(now),
                                ":one": _n(1),
                            },
                        }
                    },
                ]
            )
        except _Cancelled:
            return False
        return True

    def archive_conversation(self, user_id: str, conversation_id: str) -> bool:
        """Mark a conversation inactive; the next message starts a new one.

        Returns False when it was already archived.
        """
        now = isoformat(utc_now())
        items = [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"pk": _s(_user_pk(user_id)), "sk": _s(_conv_sk(conversation_id))},
                    "UpdateExpression": "SET is_active = :f, updated_at = :now, archived_at = :now",
                    "ConditionExpression": "attribute_exists(pk) AND is_active = :t",
                    "ExpressionAttributeValues": {
                        ":f": {"BOOL": False},
                        ":t": {"BOOL": True},
                        ":now": _s(now),
                    },
                }
            },
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"pk": _s(_user_pk(user_id)), "sk": _s("USER")},
                    "UpdateExpression": "REMOVE active_cid SET updated_at = :now",
                    # Only clear the pointer if it still names this conversation.
                    "ConditionExpression": "attribute_not_exists(active_cid) OR active_cid = :cid",
                    "ExpressionAttributeValues": {":cid": _s(conversation_id), ":now": _s(now)},
                }
            },
        ]
        try:
            self._transact(items)
        except _Cancelled as cancelled:
            if cancelled.codes[0] == "ConditionalCheckFailed":
                if self.get_conversation(user_id, conversation_id) is None:
                    raise ConversationNotFound(conversation_id) from None
                return False
            raise StorageError(f"archive failed: {cancelled.codes}") from None
        return True

    def reset(self, user_id: str) -> str | None:
        """Archive the user's active conversation; return its id (None if none)."""
        user = self.get_user(user_id)
        conversation_id = (user or {}).get("active_cid")
        if not conversation_id:
            return None
        try:
            self.archive_conversation(user_id, conversation_id)
        except ConversationNotFound:
            # A dangling pointer (header hard-deleted): clear it.
            try:
                self._call(
                    "update_item",
                    passthrough=("ConditionalCheckFailedException",),
                    TableName=self.table_name,
                    Key={"pk": _s(_user_pk(user_id)), "sk": _s("USER")},
                    UpdateExpression="REMOVE active_cid",
                    ConditionExpression="active_cid = :cid",
                    ExpressionAttributeValues={":cid": _s(conversation_id)},
                )
            except ClientError:
                pass  # someone else already moved the pointer on
        return conversation_id

    def update_conversation(
        self,
        user_id: str,
        conversation_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Conversation:
        """Set a conversation's title and/or metadata; return the new header."""
        sets = ["updated_at = :now"]
        values: dict[str, Any] = {":now": _s(isoformat(utc_now()))}
        if title is not None:
            sets.append("title = :title")
            values[":title"] = _s(title)
        if metadata is not None:
            sets.append("metadata = :meta")
            values[":meta"] = _s(json.dumps(metadata, ensure_ascii=False))
        try:
            response = self._call(
                "update_item",
                passthrough=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Key={"pk": _s(_user_pk(user_id)), "sk": _s(_conv_sk(conversation_id))},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConversationNotFound(conversation_id) from exc
            raise self._wrap(exc, "UpdateItem") from exc
        return self._conversation_from_item(response["Attributes"])

    # -------------------------------------------------------------- messages

    def append(
        self,
        user_id: str,
        message: Message,
        *,
        conversation_id: str | None = None,
        idempotent: bool = False,
        reply_to: Message | None = None,
        counters: dict[str, int] | None = None,
        active_hint: str | None = None,
    ) -> Recorded:
        """Append a message with one transactional write; return it and whether it is new.

        With ``idempotent`` the message id is reserved by a marker item, so a
        second append with the same id stores nothing and returns the first.
        With ``reply_to`` the message is stored as *the* reply to that message
        (one per message), right after it, in the same conversation.
        ``counters`` are added to the conversation header's counters atomically.
        ``active_hint`` is the active conversation id if the caller just read it;
        it saves a read, and a stale hint only costs a retry.
        """
        if reply_to is not None:
            if not reply_to.position or not reply_to.conversation_id:
                raise ValueError("reply_to must be a stored message")
            conversation_id = reply_to.conversation_id
            message.reply_to = reply_to.message_id
        self._check_size(self._message_item(user_id, message, "M#" + "x" * 64), "message")
        pinned = conversation_id is not None
        for attempt in range(_TX_ATTEMPTS):
            if pinned:
                cid = conversation_id
            elif attempt == 0 and active_hint:
                cid = active_hint
            else:
                cid = self._active_id(user_id)
            if reply_to is not None:
                sk = f"M#{cid}#{reply_to.position}#R"
            else:
                sk = f"{_msg_prefix(cid)}{_time_key(message.timestamp)}#{secrets.token_hex(4)}"
            items = self._append_items(user_id, cid, sk, message, idempotent, pinned, counters)
            try:
                self._transact(items)
            except _Cancelled as cancelled:
                codes = cancelled.codes
                if idempotent and codes[1] == "ConditionalCheckFailed":
                    existing = self.get_message(user_id, message.message_id)
                    if existing is not None:
                        return Recorded(existing, created=False)
                    # The marker outlived its message (TTL race); treat as new.
                    self._delete_keys(user_id, [_marker_sk(message.message_id)])
                    continue
                if codes[0] == "ConditionalCheckFailed":
                    if reply_to is not None:
                        existing = self._get_message_by_sk(user_id, sk)
                        if existing is not None:
                            return Recorded(existing, created=False)
                    continue
                if codes[-1] == "ConditionalCheckFailed":
                    if pinned:
                        if self.get_conversation(user_id, cid) is None:
                            raise ConversationNotFound(cid) from None
                        raise ConversationNotFound(f"{cid} is deleted") from None
                    # The conversation was archived under us: use the new one.
                    continue
                if "TransactionConflict" in codes:
                    time.sleep(min(0.5, 0.01 * 2**attempt) * random.random())
                    continue
                raise StorageError(f"append failed: {codes}") from None
            message.conversation_id = cid
            message.position = sk.split("#", 2)[2]
            return Recorded(message, created=True)
        raise StorageError("append failed: too much contention on this conversation")

    def _append_items(
        self,
        user_id: str,
        cid: str,
        sk: str,
        message: Message,
        idempotent: bool,
        pinned: bool,
        counters: dict[str, int] | None,
    ) -> list[dict[str, Any]]:
        pk = _s(_user_pk(user_id))
        item = self._message_item(user_id, message, sk)
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            }
        ]
        if idempotent:
            # The message says it has a marker, so a hard delete removes exactly those.
            item["marked"] = {"BOOL": True}
            marker = {"pk": pk, "sk": _s(_marker_sk(message.message_id)), "msg_sk": _s(sk)}
            if "expires_at" in item:
                marker["expires_at"] = item["expires_at"]
            items.append(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": marker,
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                }
            )
        items.append(self._batch_header_update(user_id, cid, [message], counters, pinned, create=False))
        return items

    # ------------------------------------------------- batches (agent sessions)

    def append_many(
        self,
        user_id: str,
        messages: list[Message],
        *,
        conversation_id: str | None = None,
        create: bool = False,
        counters: dict[str, int] | None = None,
    ) -> list[Message]:
        """Append messages in the given order with as few transactions as possible.

        Every item is size-checked before anything is written, so one oversized
        message refuses the whole batch (MessageTooLarge). A batch that fits one
        transaction (99 messages and about 3.5 MB; DynamoDB allows 100 actions and
        4 MB) is all-or-nothing. A larger batch is written as consecutive
        transactions in order, each all-or-nothing: a failure midway leaves a
        prefix of the batch stored, never a gap. Sort keys share one time key and
        end in the item's index, so order holds even with equal timestamps.
        With ``create`` the header of ``conversation_id`` is made if missing;
        without ``conversation_id`` the user's active conversation is used.
        ``counters`` are added to the header with the first transaction.
        """
        if not messages:
            return []
        if create and conversation_id is None:
            raise ValueError("create needs a conversation_id")
        probe_sk = "M#" + "x" * (64 + len(conversation_id or "x" * 40))
        sizes = []
        for message in messages:
            probe = self._message_item(user_id, message, probe_sk)
            self._check_size(probe, "message")
            sizes.append(_item_size(probe))
        chunks: list[list[int]] = [[]]
        budget = 0
        for index, size in enumerate(sizes):
            if chunks[-1] and (len(chunks[-1]) >= _BATCH_MESSAGES or budget + size > _BATCH_BYTES):
                chunks.append([])
                budget = 0
            chunks[-1].append(index)
            budget += size
        time_key = _time_key(messages[0].timestamp)
        token = secrets.token_hex(4)
        width = max(4, len(str(len(messages) - 1)))
        cid = conversation_id
        for number, chunk in enumerate(chunks):
            pinned = cid is not None
            for attempt in range(_TX_ATTEMPTS):
                target = cid if pinned else self._active_id(user_id)
                sort_keys = [f"{_msg_prefix(target)}{time_key}#{token}.{i:0{width}d}" for i in chunk]
                batch = [messages[i] for i in chunk]
                items: list[dict[str, Any]] = [
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": self._message_item(user_id, message, sk),
                            "ConditionExpression": "attribute_not_exists(sk)",
                        }
                    }
                    for message, sk in zip(batch, sort_keys, strict=True)
                ]
                items.append(
                    self._batch_header_update(
                        user_id, target, batch, counters if number == 0 else None, pinned, create
                    )
                )
                try:
                    self._transact(items)
                except _Cancelled as cancelled:
                    codes = cancelled.codes
                    if codes[-1] == "ConditionalCheckFailed":
                        if pinned:
                            raise ConversationNotFound(f"{target} is missing or deleted") from None
                        continue  # archived under us: use the new active conversation
                    if "TransactionConflict" in codes:
                        time.sleep(min(0.5, 0.01 * 2**attempt) * random.random())
                        continue
                    raise StorageError(f"batch append failed: {codes}") from None
                for message, sk in zip(batch, sort_keys, strict=True):
                    message.conversation_id = target
                    message.position = sk.split("#", 2)[2]
                cid = target
                break
            else:
                raise StorageError("batch append failed: too much contention on this conversation")
        return messages

    def _batch_header_update(
        self,
        user_id: str,
        cid: str,
        batch: list[Message],
        counters: dict[str, int] | None,
        pinned: bool,
        create: bool,
    ) -> dict[str, Any]:
        now = isoformat(utc_now())
        last = batch[-1]
        names: dict[str, str] = {}
        values: dict[str, Any] = {
            ":n": _n(len(batch)),
            ":now": _s(now),
            ":ts": _s(last.timestamp),
            ":preview": _s(last.content[:PREVIEW_CHARS] or ("[media]" if last.media_urls else "")),
            ":role": _s(last.role),
            ":gpk": _s(f"A#{now[:10]}"),
            ":gsk": _s(f"{now[:16]}#{user_id}#{cid}"),
        }
        adds = ["message_count :n"]
        per_role: dict[str, int] = {}
        for message in batch:
            per_role[message.role] = per_role.get(message.role, 0) + 1
        for index, (role, count) in enumerate(sorted(per_role.items())):
            names[f"#r{index}"] = f"{role}_count"
            values[f":r{index}"] = _n(count)
            adds.append(f"#r{index} :r{index}")
        for index, (name, amount) in enumerate(sorted((counters or {}).items())):
            if not name.isidentifier():
                raise ValueError(f"counter name {name!r} is not an identifier")
            names[f"#c{index}"] = f"ctr_{name}"
            values[f":c{index}"] = _n(int(amount))
            adds.append(f"#c{index} :c{index}")
        sets = [
            "updated_at = :now",
            "last_message_at = :ts",
            "preview = :preview",
            "last_role = :role",
            # Minute-grained activity key: the keys-only index is rewritten at
            # most once a minute per conversation, not on every message.
            "gsi1pk = :gpk",
            "gsi1sk = :gsk",
        ]
        expires = self._ttl_value()
        if expires is not None:
            sets.append("expires_at = :exp")
            values[":exp"] = _n(expires)
        if create:
            sets += [
                "entity = :entity",
                "user_id = :uid",
                "conversation_id = :cid",
                "created_at = if_not_exists(created_at, :now)",
                "is_active = if_not_exists(is_active, :t)",
            ]
            values.update({":entity": _s("conversation"), ":uid": _s(user_id), ":cid": _s(cid)})
            values[":t"] = {"BOOL": True}
            condition = "attribute_not_exists(deleted_at)"
        else:
            condition = "attribute_exists(pk) AND attribute_not_exists(deleted_at)"
            if not pinned:
                condition += " AND is_active = :t"
                values[":t"] = {"BOOL": True}
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": _s(_user_pk(user_id)), "sk": _s(_conv_sk(cid))},
            "UpdateExpression": "SET " + ", ".join(sets) + " ADD " + ", ".join(adds),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        return {"Update": update}

    def pop_newest(self, user_id: str, conversation_id: str) -> Message | None:
        """Delete and return a conversation's newest message; None when it has none.

        Safe under concurrent callers: the delete is conditional on the item still
        existing, so a message goes to one caller only; the others move on to the
        next newest. The header's counts drop in the same transaction. (A marker
        from an idempotent append is left; ``get_message`` then finds nothing.)
        """
        pk = _s(_user_pk(user_id))
        for attempt in range(_POP_ATTEMPTS):
            newest = self.recent_messages(user_id, conversation_id, 1)
            if not newest:
                return None
            message = newest[0]
            key = {"pk": pk, "sk": _s(f"{_msg_prefix(conversation_id)}{message.position}")}
            try:
                self._transact(
                    [
                        {
                            "Delete": {
                                "TableName": self.table_name,
                                "Key": key,
                                "ConditionExpression": "attribute_exists(sk)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": self.table_name,
                                "Key": {"pk": pk, "sk": _s(_conv_sk(conversation_id))},
                                "UpdateExpression": "ADD message_count :m, #rc :m",
                                "ConditionExpression": "attribute_exists(pk)",
                                "ExpressionAttributeNames": {"#rc": f"{message.role}_count"},
                                "ExpressionAttributeValues": {":m": _n(-1)},
                            }
                        },
                    ]
                )
            except _Cancelled as cancelled:
                codes = cancelled.codes
                if codes[0] == "ConditionalCheckFailed":
                    continue  # another caller took it: try the next newest
                if codes[-1] == "ConditionalCheckFailed":
                    # No header (being cleared): take the message alone.
                    try:
                        self._call(
                            "delete_item",
                            passthrough=("ConditionalCheckFailedException",),
                            TableName=self.table_name,
                            Key=key,
                            ConditionExpression="attribute_exists(sk)",
                        )
                    except ClientError:
                        continue
                    return message
                if "TransactionConflict" in codes:
                    time.sleep(min(0.2, 0.005 * 2**attempt) * random.random())
                    continue
                raise StorageError(f"pop failed: {codes}") from None
            return message
        raise StorageError("pop failed: too much contention on this conversation")

    def clear_messages(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation's messages, then its header; return items deleted.

        Paginated batch deletes, safe to re-run. Meant for conversations written
        without idempotency markers (agent sessions); ``hard_delete_conversation``
        also removes markers.
        """
        messages = self._iter_partition(user_id, _msg_prefix(conversation_id), ("sk",))
        keys = [item["sk"]["S"] for item in messages]
        # Header last, so a crash midway leaves something to retry from.
        return self._delete_keys(user_id, keys) + self._delete_keys(user_id, [_conv_sk(conversation_id)])

    def _transact(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            return self._call(
                "transact_write_items",
                passthrough=("TransactionCanceledException", "TransactionConflictException"),
                TransactItems=items,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                codes = [reason.get("Code", "None") for reason in reasons]
                if not codes:
                    codes = _codes_from_message(exc.response["Error"].get("Message", ""), len(items))
                raise _Cancelled(codes) from exc
            if exc.response["Error"]["Code"] == "TransactionConflictException":
                raise _Cancelled(["TransactionConflict"] * len(items)) from exc
            raise self._wrap(exc, "TransactWriteItems") from exc

    def _get_message_by_sk(self, user_id: str, sk: str) -> Message | None:
        response = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"pk": _s(_user_pk(user_id)), "sk": _s(sk)},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None or self._expired(item):
            return None
        return self._message_from_item(item)

    def get_message(self, user_id: str, message_id: str) -> Message | None:
        """Return a message by the id it was appended with idempotently, or None."""
        response = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"pk": _s(_user_pk(user_id)), "sk": _s(_marker_sk(message_id))},
            ConsistentRead=True,
        )
        marker = response.get("Item")
        if marker is None or self._expired(marker):
            return None
        return self._get_message_by_sk(user_id, marker["msg_sk"]["S"])

    def get_reply(self, user_id: str, message: Message) -> Message | None:
        """Return the reply stored for a message, or None if it has none yet."""
        if not message.position or not message.conversation_id:
            return None
        return self._get_message_by_sk(
            user_id, f"M#{message.conversation_id}#{message.position}#R"
        )

    def update_message_metadata(
        self,
        user_id: str,
        message: Message,
        updates: dict[str, Any],
        *,
        counters: dict[str, int] | None = None,
    ) -> Message:
        """Merge keys into a stored message's metadata (e.g. a delivery status).

        ``counters`` are added to the conversation header in the same transaction.
        """
        if not message.position or not message.conversation_id:
            raise ValueError("message must be a stored message")
        sk = f"M#{message.conversation_id}#{message.position}"
        for attempt in range(_TX_ATTEMPTS):
            current = self._get_message_by_sk(user_id, sk)
            if current is None:
                raise ConversationNotFound(f"message {message.message_id} not found")
            merged = {**current.metadata, **updates}
            old = json.dumps(current.metadata, ensure_ascii=False) if current.metadata else None
            values: dict[str, Any] = {":m": _s(json.dumps(merged, ensure_ascii=False))}
            if old is None:
                condition = "attribute_exists(sk) AND attribute_not_exists(metadata)"
            else:
                condition = "metadata = :old"
                values[":old"] = _s(old)
            items: list[dict[str, Any]] = [
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {"pk": _s(_user_pk(user_id)), "sk": _s(sk)},
                        "UpdateExpression": "SET metadata = :m",
                        "ConditionExpression": condition,
                        "ExpressionAttributeValues": values,
                    }
                }
            ]
            if counters:
                names = {}
                cvalues: dict[str, Any] = {}
                adds = []
                for index, (name, amount) in enumerate(sorted(counters.items())):
                    names[f"#c{index}"] = f"ctr_{name}"
                    cvalues[f":c{index}"] = _n(int(amount))
                    adds.append(f"#c{index} :c{index}")
                items.append(
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {
                                "pk": _s(_user_pk(user_id)),
                                "sk": _s(_conv_sk(message.conversation_id)),
                            },
                            "UpdateExpression": "ADD " + ", ".join(adds),
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": cvalues,
                        }
                    }
                )
            try:
                self._transact(items)
            except _Cancelled as cancelled:
                if cancelled.codes[0] in ("ConditionalCheckFailed", "TransactionConflict"):
                    time.sleep(min(0.2, 0.005 * 2**attempt) * random.random())
                    continue
                raise StorageError(f"metadata update failed: {cancelled.codes}") from None
            current.metadata = merged
            return current
        raise StorageError("metadata update failed: too much contention on this message")

    def recent_messages(self, user_id: str, conversation_id: str, limit: int) -> list[Message]:
        """Return the newest ``limit`` messages, oldest first, with one Query."""
        if limit <= 0:
            return []
        messages = self._query_messages(user_id, conversation_id, forward=False, limit=limit)
        messages.reverse()
        return messages

    def list_messages(
        self,
        user_id: str,
        conversation_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        """Return one page of a conversation's messages in either direction."""
        return self._query_page(
            user_id,
            _msg_prefix(conversation_id),
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
            kind="m",
            convert=self._message_from_item,
        )

    def list_conversations(
        self, user_id: str, *, limit: int = 20, cursor: str | None = None, include_deleted: bool = False
    ) -> Page:
        """Return one page of a user's conversations, newest first."""
        page = self._query_page(
            user_id,
            "C#",
            limit=limit,
            cursor=cursor,
            newest_first=True,
            kind="c",
            convert=self._conversation_from_item,
        )
        if not include_deleted:
            page.items = [c for c in page.items if c.deleted_at is None]
        return page

    def _query_page(
        self,
        user_id: str,
        prefix: str,
        *,
        limit: int,
        cursor: str | None,
        newest_first: bool,
        kind: str,
        convert: Any,
    ) -> Page:
        limit = max(1, min(int(limit), MAX_PAGE_SIZE))
        filter_expression, filter_values = self._alive_filter()
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": filter_expression,
            "ExpressionAttributeValues": {
                ":pk": _s(_user_pk(user_id)),
                ":prefix": _s(prefix),
                **filter_values,
            },
            "ScanIndexForward": not newest_first,
            "ConsistentRead": True,
        }
        if cursor:
            payload = _decode_cursor(cursor)
            after = payload.get("after")
            if (
                payload.get("k") != kind
                or payload.get("u") != user_id
                or payload.get("d") != ("desc" if newest_first else "asc")
                or not isinstance(after, str)
                or not after.startswith(prefix)
            ):
                raise InvalidCursor("cursor belongs to another listing")
            kwargs["ExclusiveStartKey"] = {"pk": _s(_user_pk(user_id)), "sk": _s(after)}
        items: list[dict[str, Any]] = []
        last_key = None
        # A filter can thin a page out; keep reading until it is full or done.
        while len(items) < limit:
            kwargs["Limit"] = limit - len(items)
            response = self._call("query", **kwargs)
            items.extend(response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                break
            kwargs["ExclusiveStartKey"] = last_key
        next_cursor = None
        if last_key and items:
            next_cursor = _encode_cursor(
                {
                    "k": kind,
                    "u": user_id,
                    "d": "desc" if newest_first else "asc",
                    "after": items[-1]["sk"]["S"],
                }
            )
        return Page(items=[convert(item) for item in items], cursor=next_cursor)

    def list_recent_conversations(self, *, limit: int = 20, cursor: str | None = None) -> Page:
        """Return conversations across all users, newest activity first.

        Reads the keys-only activity index one day bucket at a time (a Query
        per day, never a Scan), then fetches the headers in one batch.
        """
        limit = max(1, min(int(limit), 100))
        today = utc_now().date()
        day_offset = 0
        start_key = None
        if cursor:
            payload = _decode_cursor(cursor)
            if payload.get("k") != "r" or not isinstance(payload.get("day"), int):
                raise InvalidCursor("cursor belongs to another listing")
            day_offset = payload["day"]
            if not 0 <= day_offset <= self.activity_lookback_days:
                raise InvalidCursor("cursor is out of range")
            if payload.get("after"):
                after = payload["after"]
                if not isinstance(after, dict) or not all(
                    isinstance(after.get(k), str) for k in ("pk", "sk", "gsi1pk", "gsi1sk")
                ):
                    raise InvalidCursor("cursor is not one this service issued")
                start_key = {k: _s(v) for k, v in after.items()}
        keys: list[dict[str, Any]] = []
        next_cursor = None
        while day_offset <= self.activity_lookback_days:
            day = (today - timedelta(days=day_offset)).isoformat()
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": ACTIVITY_INDEX,
                "KeyConditionExpression": "gsi1pk = :d",
                "ExpressionAttributeValues": {":d": _s(f"A#{day}")},
                "ScanIndexForward": False,
                "Limit": limit - len(keys),
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._call("query", **kwargs)
            keys.extend(response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if len(keys) >= limit:
                if start_key:
                    after = {k: v["S"] for k, v in start_key.items()}
                    next_cursor = _encode_cursor({"k": "r", "day": day_offset, "after": after})
                elif day_offset < self.activity_lookback_days:
                    next_cursor = _encode_cursor({"k": "r", "day": day_offset + 1})
                break
            if not start_key:
                day_offset += 1
        headers = self._batch_get([{"pk": k["pk"], "sk": k["sk"]} for k in keys])
        conversations = []
        seen = set()
        for key in keys:
            item = headers.get((key["pk"]["S"], key["sk"]["S"]))
            if item is None or self._expired(item) or "deleted_at" in item:
                continue
            # A header that moved to a newer bucket while we paged is shown once.
            if (key["pk"]["S"], key["sk"]["S"]) in seen:
                continue
            seen.add((key["pk"]["S"], key["sk"]["S"]))
            conversations.append(self._conversation_from_item(item))
        # Index order: by activity minute, newest first (see docs/data-model.md).
        return Page(items=conversations, cursor=next_cursor)

    def _batch_get(self, keys: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            request = {self.table_name: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            for attempt in range(8):
                response = self._call("batch_get_item", RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise StorageError("BatchGetItem kept returning unprocessed keys")
        return found

    def first_and_last(self, user_id: str, conversation_id: str) -> tuple[Message | None, Message | None]:
        """Return a conversation's first and last message (two one-item Queries)."""
        first = self._query_messages(user_id, conversation_id, forward=True, limit=1)
        last = self._query_messages(user_id, conversation_id, forward=False, limit=1)
        return (first[0] if first else None), (last[0] if last else None)

    def _query_messages(
        self, user_id: str, conversation_id: str, *, forward: bool, limit: int
    ) -> list[Message]:
        """Return up to ``limit`` live messages from one end of a conversation (one Query)."""
        filter_expression, filter_values = self._alive_filter()
        response = self._call(
            "query",
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            FilterExpression=filter_expression,
            ExpressionAttributeValues={
                ":pk": _s(_user_pk(user_id)),
                ":prefix": _s(_msg_prefix(conversation_id)),
                **filter_values,
            },
            ScanIndexForward=forward,
            Limit=limit,
            ConsistentRead=True,
        )
        return [self._message_from_item(item) for item in response.get("Items", [])]

    # ------------------------------------------------------------ summary

    def messages_after(
        self, user_id: str, conversation_id: str, position: str | None, limit: int
    ) -> list[Message]:
        """Return up to ``limit`` messages after ``position`` (from the start when None), oldest first."""
        if limit <= 0:
            return []
        prefix = _msg_prefix(conversation_id)
        filter_expression, filter_values = self._alive_filter()
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": filter_expression,
            "ExpressionAttributeValues": {
                ":pk": _s(_user_pk(user_id)), ":prefix": _s(prefix), **filter_values,
            },
            "ScanIndexForward": True,
            "ConsistentRead": True,
        }
        if position:
            kwargs["ExclusiveStartKey"] = {"pk": _s(_user_pk(user_id)), "sk": _s(prefix + position)}
        messages: list[Message] = []
        while len(messages) < limit:
            kwargs["Limit"] = limit - len(messages)
            response = self._call("query", **kwargs)
            messages.extend(self._message_from_item(item) for item in response.get("Items", []))
            if not response.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return messages

    def claim_summary(
        self, user_id: str, conversation_id: str, owner: str, seconds: float, *, upto: str | None
    ) -> bool:
        """Take the right to update a summary that still covers up to ``upto``; False if taken.

        A claim lapses after ``seconds``, so a worker that died does not block the next.
        """
        now = time.time()
        values: dict[str, Any] = {
            ":owner": _s(owner), ":until": _n(round(now + seconds, 3)), ":now": _n(round(now, 3)),
        }
        condition = (
            "attribute_exists(pk) AND attribute_not_exists(deleted_at) AND "
            "(attribute_not_exists(summary_claim_until) OR summary_claim_until < :now) AND "
        )
        if upto is None:
            condition += "attribute_not_exists(summary_upto)"
        else:
            condition += "summary_upto = :upto"
            values[":upto"] = _s(upto)
        return self._conditional_header_update(
            user_id, conversation_id, "SET summary_claim = :owner, summary_claim_until = :until",
            condition, values,
        )

    def save_summary(
        self,
        user_id: str,
        conversation_id: str,
        owner: str,
        text: str,
        *,
        upto: str,
        count: int,
        tokens: int = 0,
    ) -> bool:
        """Store a new summary under ``owner``'s claim and release it; False if the claim was lost."""
        values: dict[str, Any] = {
            ":owner": _s(owner), ":text": _s(text), ":upto": _s(upto), ":count": _n(count),
            ":now": _s(isoformat(utc_now())), ":tokens": _n(int(tokens)),
        }
        expression = (
            "SET summary = :text, summary_upto = :upto, summary_count = :count, summary_at = :now "
            "REMOVE summary_claim, summary_claim_until ADD ctr_summary_tokens :tokens"
        )
        return self._conditional_header_update(
            user_id, conversation_id, expression,
            "summary_claim = :owner AND attribute_not_exists(deleted_at)", values,
        )

    def release_summary_claim(self, user_id: str, conversation_id: str, owner: str) -> None:
        """Give up ``owner``'s claim without changing the summary."""
        self._conditional_header_update(
            user_id, conversation_id, "REMOVE summary_claim, summary_claim_until",
            "summary_claim = :owner", {":owner": _s(owner)},
        )

    def clear_summary(self, user_id: str, conversation_id: str) -> bool:
        """Forget a conversation's summary text (and any claim); False when it had none.

        The messages it covered stay marked as covered, so they are not summarised again.
        """
        return self._conditional_header_update(
            user_id, conversation_id,
            "SET summary_at = :now REMOVE summary, summary_claim, summary_claim_until",
            "attribute_exists(summary) OR attribute_exists(summary_claim)",
            {":now": _s(isoformat(utc_now()))},
        )

    def _conditional_header_update(
        self, user_id: str, conversation_id: str, expression: str, condition: str,
        values: dict[str, Any],
    ) -> bool:
        try:
            self._call(
                "update_item",
                passthrough=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Key={"pk": _s(_user_pk(user_id)), "sk": _s(_conv_sk(conversation_id))},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise self._wrap(exc, "UpdateItem") from exc
        return True

    # ------------------------------------------------------------ deletion

    def soft_delete_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        """Hide a conversation from listings and archive it; its items stay."""
        if self.get_conversation(user_id, conversation_id) is None:
            raise ConversationNotFound(conversation_id)
        self.reset_if_active(user_id, conversation_id)
        now = isoformat(utc_now())
        try:
            response = self._call(
                "update_item",
                passthrough=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Key={"pk": _s(_user_pk(user_id)), "sk": _s(_conv_sk(conversation_id))},
                UpdateExpression="SET deleted_at = if_not_exists(deleted_at, :now), "
                "is_active = :f, updated_at = :now REMOVE gsi1pk, gsi1sk",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":now": _s(now), ":f": {"BOOL": False}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConversationNotFound(conversation_id) from exc
            raise self._wrap(exc, "UpdateItem") from exc
        return self._conversation_from_item(response["Attributes"])

    def reset_if_active(self, user_id: str, conversation_id: str) -> None:
        """Archive the conversation if it is the user's active one."""
        try:
            self.archive_conversation(user_id, conversation_id)
        except ConversationNotFound:
            pass

    def hard_delete_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation's header, messages and markers; return items deleted.

        Safe to re-run: a half-finished deletion is completed by the next call.
        """
        existed = self.get_conversation(user_id, conversation_id) is not None
        self.reset_if_active(user_id, conversation_id)
        message_keys = []
        marker_keys = []
        attributes = ("sk", "message_id", "marked")
        for item in self._iter_partition(user_id, _msg_prefix(conversation_id), attributes):
            message_keys.append(item["sk"]["S"])
            if item.get("marked", {}).get("BOOL"):
                marker_keys.append(_marker_sk(item["message_id"]["S"]))
        # Markers first, header last: a retry after a crash still finds the header.
        deleted = self._delete_keys(user_id, marker_keys)
        deleted += self._delete_keys(user_id, message_keys)
        if existed:
            deleted += self._delete_keys(user_id, [_conv_sk(conversation_id)])
        elif not message_keys:
            raise ConversationNotFound(conversation_id)
        return deleted

    def erase_user(self, user_id: str) -> int:
        """Delete every item stored for a user; return how many were deleted.

        Paginated batch deletes; safe to re-run (a second run deletes nothing).
        """
        keys = [item["sk"]["S"] for item in self._iter_partition(user_id, None, ("sk",))]
        # The user item goes last so a crash midway leaves a record to retry from.
        keys.sort(key=lambda sk: sk == "USER")
        return self._delete_keys(user_id, keys)

    def iter_user_items(self, user_id: str) -> Iterator[dict[str, Any]]:
        """Yield everything stored for a user as plain dicts (for export)."""
        for item in self._iter_partition(user_id, None, None):
            plain = {k: _deserializer.deserialize(v) for k, v in item.items()}
            sk = plain["sk"]
            if sk.startswith("M#"):
                yield {"type": "message", **self._message_from_item(item).to_dict()}
            elif sk.startswith("C#"):
                yield {"type": "conversation", **self._conversation_from_item(item).to_dict()}
            elif sk == "USER":
                yield {
                    "type": "user",
                    "user_id": plain.get("user_id", user_id),
                    "created_at": plain.get("created_at"),
                    "active_conversation_id": plain.get("active_cid"),
                    "opted_out": bool(plain.get("opted_out", False)),
                    "conversation_count": int(plain.get("conversation_count", 0)),
                }

    def _iter_partition(
        self, user_id: str, prefix: str | None, attributes: tuple[str, ...] | None
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "ExpressionAttributeValues": {":pk": _s(_user_pk(user_id))},
            "ConsistentRead": True,
        }
        if prefix:
            kwargs["KeyConditionExpression"] = "pk = :pk AND begins_with(sk, :prefix)"
            kwargs["ExpressionAttributeValues"][":prefix"] = _s(prefix)
        else:
            kwargs["KeyConditionExpression"] = "pk = :pk"
        if attributes:
            kwargs["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(attributes)))
            kwargs["ExpressionAttributeNames"] = {f"#a{i}": a for i, a in enumerate(attributes)}
        while True:
            response = self._call("query", **kwargs)
            yield from response.get("Items", [])
            if not response.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _delete_keys(self, user_id: str, sort_keys: list[str]) -> int:
        pk = _s(_user_pk(user_id))
        deleted = 0
        for start in range(0, len(sort_keys), 25):
            chunk = sort_keys[start : start + 25]
            request = {
                self.table_name: [{"DeleteRequest": {"Key": {"pk": pk, "sk": _s(sk)}}} for sk in chunk]
            }
            for attempt in range(10):
                response = self._call("batch_write_item", RequestItems=request)
                request = response.get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise StorageError("BatchWriteItem kept returning unprocessed items; re-run to finish")
            deleted += len(chunk)
        return deleted

    # -------------------------------------------------- leases and counters

    def acquire_lease(self, user_id: str, owner: str, seconds: float) -> bool:
        """Take the user's lease for ``seconds`` unless someone else holds a live one."""
        now = time.time()
        try:
            self._call(
                "put_item",
                passthrough=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Item={
                    "pk": _s(_user_pk(user_id)),
                    "sk": _s("LEASE"),
                    "owner": _s(owner),
                    "lease_until": _n(round(now + seconds, 3)),
                    # Let TTL sweep leases that are never released.
                    "expires_at": _n(int(now + seconds) + 3600),
                },
                ConditionExpression="attribute_not_exists(sk) OR lease_until < :now OR #o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":now": _n(round(now, 3)), ":me": _s(owner)},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise self._wrap(exc, "PutItem") from exc
        return True

    def release_lease(self, user_id: str, owner: str) -> None:
        """Release the user's lease if ``owner`` still holds it."""
        try:
            self._call(
                "delete_item",
                passthrough=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Key={"pk": _s(_user_pk(user_id)), "sk": _s("LEASE")},
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": _s(owner)},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise self._wrap(exc, "DeleteItem") from exc

    def increment_counter(
        self, scope: str, name: str, amount: int = 1, *, expires_in: float | None = None
    ) -> int:
        """Atomically add ``amount`` to a named counter and return the new value.

        ``scope`` is a user id, or ``"*"`` for a global counter. Counters with
        ``expires_in`` carry a TTL so old windows disappear by themselves.
        """
        pk = "GLOBAL" if scope == "*" else _user_pk(scope)
        values: dict[str, Any] = {":a": _n(int(amount))}
        expression = "ADD #v :a"
        if expires_in:
            expression += " SET expires_at = if_not_exists(expires_at, :exp)"
            values[":exp"] = _n(int(time.time() + expires_in))
        response = self._call(
            "update_item",
            TableName=self.table_name,
            Key={"pk": _s(pk), "sk": _s(f"N#{name}")},
            UpdateExpression=expression,
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues=values,
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["value"]["N"])

    def reserve_counter(
        self, scope: str, name: str, amount: int, *, below: int, expires_in: float | None = None
    ) -> int | None:
        """Add ``amount`` to a counter only while it is below ``below``; return the new value or None.

        One conditional UpdateItem, so concurrent reservations never all see the same
        old value: once the counter reaches ``below``, every later reservation fails
        until amounts are given back with :meth:`increment_counter` (a negative amount).
        """
        pk = "GLOBAL" if scope == "*" else _user_pk(scope)
        values: dict[str, Any] = {":a": _n(int(amount)), ":below": _n(int(below))}
        expression = "ADD #v :a"
        if expires_in:
            expression += " SET expires_at = if_not_exists(expires_at, :exp)"
            values[":exp"] = _n(int(time.time() + expires_in))
        try:
            response = self._call(
                "update_item",
                passthrough=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Key={"pk": _s(pk), "sk": _s(f"N#{name}")},
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(#v) OR #v < :below",
                ExpressionAttributeNames={"#v": "value"},
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise self._wrap(exc, "UpdateItem") from exc
        return int(response["Attributes"]["value"]["N"])

    def get_counter(self, scope: str, name: str) -> int:
        """Return a counter's value (0 when it does not exist or has expired)."""
        pk = "GLOBAL" if scope == "*" else _user_pk(scope)
        response = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"pk": _s(pk), "sk": _s(f"N#{name}")},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None or self._expired(item):
            return 0
        return int(item["value"]["N"])


def _summary_from(plain: dict[str, Any]) -> Summary | None:
    if "summary" not in plain and "summary_upto" not in plain:
        return None
    return Summary(
        text=plain.get("summary"),
        upto=plain.get("summary_upto"),
        count=int(plain.get("summary_count", 0)),
        updated_at=plain.get("summary_at"),
    )


class _Cancelled(Exception):
    """A transaction was cancelled; ``codes`` has one reason per item."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(codes)
        self.codes = codes


def _codes_from_message(message: str, count: int) -> list[str]:
    """Parse "[None, ConditionalCheckFailed]" out of an error message (older servers)."""
    start, end = message.find("["), message.rfind("]")
    if start == -1 or end == -1:
        return ["Unknown"] * count
    codes = [code.strip() for code in message[start + 1 : end].split(",")]
    return codes if len(codes) == count else ["Unknown"] * count
