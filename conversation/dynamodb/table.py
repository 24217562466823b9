"""Table plumbing: the client, error translation, retries, transactions and table setup.

Every request goes through :meth:`Table.call`, which turns botocore's errors
into this package's typed ones: a failed condition is :class:`ConditionFailed`,
a cancelled transaction :class:`TransactionCancelled` (naming the items whose
condition failed), an unreachable endpoint :class:`StorageUnavailable`, a
missing table :class:`TableMissing` (or the table is created, once, when
``auto_create`` is on); anything else is a :class:`StorageError`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import boto3
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

from conversation import defaults
from conversation.dynamodb import codec, keys
from conversation.errors import (
    MessageTooLarge,
    StorageError,
    StorageUnavailable,
    TableMissing,
    WrongTableLayout,
)
from conversation.models import utc_now

log = logging.getLogger("conversation.storage")

DEFAULT_TABLE_NAME = defaults.TABLE_NAME
# DynamoDB's hard limit is 409,600 bytes; stay well below it so a header
# update or an index projection can never push an item over.
DEFAULT_MAX_ITEM_BYTES = 350_000
# Connections the client keeps to DynamoDB when the caller does not size its pool.
DEFAULT_MAX_POOL_CONNECTIONS = 50
# Attempts of a single-item write that keeps meeting a transaction on its item.
_CONFLICT_ATTEMPTS = 5

_UNREACHABLE = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    NoCredentialsError,
)


class ConditionFailed(StorageError):
    """A conditional write found the item not as expected; nothing was written."""


class TransactionCancelled(StorageError):
    """A transaction wrote nothing; ``codes`` maps each named action to DynamoDB's reason."""

    def __init__(self, codes: dict[str, str]) -> None:
        super().__init__(f"transaction cancelled: {codes}")
        self.codes = codes

    def failed(self, name: str) -> bool:
        """Return whether the action called ``name`` failed its condition."""
        return self.codes.get(name) == "ConditionalCheckFailed"

    @property
    def conflict(self) -> bool:
        """Return whether another transaction on the same items was in flight (worth a retry)."""
        return "TransactionConflict" in self.codes.values()


def pause(attempt: int, *, base: float = 0.01, cap: float = 0.5) -> None:
    """Sleep before retry number ``attempt`` (from 0): growing, capped, fully jittered."""
    time.sleep(min(cap, base * 2**attempt) * random.random())


def _codes_from_message(message: str, count: int) -> list[str]:
    """Parse "[None, ConditionalCheckFailed]" out of an error message (older servers)."""
    start, end = message.find("["), message.rfind("]")
    if start == -1 or end == -1:
        return ["Unknown"] * count
    codes = [code.strip() for code in message[start + 1 : end].split(",")]
    return codes if len(codes) == count else ["Unknown"] * count


def _region(explicit: str | None, session: Any, endpoint_url: str | None) -> str:
    """Pick the region as AWS SDKs do: explicit, AWS_REGION, then boto3's chain.

    boto3 itself reads AWS_DEFAULT_REGION and the profile but not AWS_REGION,
    which most AWS tooling (and Lambda, ECS) sets. us-east-1 is only a default
    for a local endpoint (DynamoDB Local ignores the region).
    """
    region = explicit or os.environ.get("AWS_REGION") or session.region_name
    if region:
        return region
    if endpoint_url:
        return "us-east-1"
    raise StorageError(
        "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the AWS profile)"
    )


class Table:
    """One DynamoDB table and the client that reaches it (built on first use)."""

    def __init__(
        self,
        name: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        max_retries: int = defaults.DYNAMODB_MAX_RETRIES,
        connect_timeout: float = defaults.DYNAMODB_CONNECT_TIMEOUT,
        read_timeout: float = defaults.DYNAMODB_READ_TIMEOUT,
        auto_create: bool = True,
        ttl_days: float | None = None,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
    ) -> None:
        self.name = name
        self.auto_create = auto_create
        self.ttl_days = ttl_days
        self.max_item_bytes = max_item_bytes
        self._client = client
        self._owns_client = client is None
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "max_retries": max_retries,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_pool_connections": max_pool_connections,
        }
        self._ready = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ client

    @property
    def client(self) -> Any:
        """Return the boto3 client, building it on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> Any:
        args = self._client_args
        session = boto3.session.Session()
        if args["endpoint_url"] and session.get_credentials() is None:
            # DynamoDB Local accepts any credentials; AWS itself never gets
            # these because an endpoint URL is set.
            session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local")
        region = _region(args["region_name"], session, args["endpoint_url"])
        return session.client(
            "dynamodb",
            endpoint_url=args["endpoint_url"],
            region_name=region,
            config=Config(
                # Throttling and transient errors are retried by botocore itself,
                # with backoff and jitter; few retries, as a texter is waiting.
                retries={"mode": "standard", "max_attempts": args["max_retries"]},
                connect_timeout=args["connect_timeout"],
                read_timeout=args["read_timeout"],
                # One connection per thread that may call at once; past it urllib3
                # discards connections ("Connection pool is full") and reconnects.
                max_pool_connections=args["max_pool_connections"],
            ),
        )

    def close(self) -> None:
        """Close the client's connections (only a client this table built itself)."""
        if self._owns_client and self._client is not None:
            self._client.close()

    # ------------------------------------------------------------------ requests

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """Call a client operation with this package's errors, creating the table once if missing.

        A single-item write that meets a transaction on the same item in flight
        (TransactionConflictException: nothing was written) is tried again after a
        short jittered pause; leases and rate counters are written both ways.
        """
        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                return self._request(operation, kwargs)
            except ClientError as exc:
                if _code(exc) == "TransactionConflictException" and attempt + 1 < _CONFLICT_ATTEMPTS:
                    pause(attempt, base=0.005, cap=0.1)
                    continue
                self._explain_validation(exc)
                raise _translate(exc, operation) from exc
            except BotoCoreError as exc:
                raise _translate(exc, operation) from exc
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _request(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self._ensure_table()
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            if not self.auto_create:
                raise TableMissing(
                    f"table {self.name!r} does not exist; run `flask init-db` "
                    "or scripts/create_table.py"
                ) from exc
            self._ready = False
            self._ensure_table()
            return getattr(self.client, operation)(**kwargs)

    def transact(self, actions: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Write named actions (``("message", {"Put": ...})``) all or nothing.

        :raises TransactionCancelled: naming, per action, why nothing was written.
        """
        names = [name for name, _ in actions]
        try:
            self._request("transact_write_items", {"TransactItems": [action for _, action in actions]})
        except ClientError as exc:
            if _code(exc) == "TransactionConflictException":
                raise TransactionCancelled(dict.fromkeys(names, "TransactionConflict")) from exc
            if _code(exc) != "TransactionCanceledException":
                raise _translate(exc, "TransactWriteItems") from exc
            reasons = exc.response.get("CancellationReasons") or []
            codes = [reason.get("Code", "None") for reason in reasons]
            if len(codes) != len(names):
                codes = _codes_from_message(exc.response["Error"].get("Message", ""), len(names))
            raise TransactionCancelled(dict(zip(names, codes, strict=True))) from exc
        except BotoCoreError as exc:
            raise _translate(exc, "TransactWriteItems") from exc

    def get(self, user_id: str, sk: str) -> dict[str, Any] | None:
        """Return one item of a user by sort key (strongly consistent), None if absent or expired."""
        response = self.call("get_item", TableName=self.name, Key=keys.key(user_id, sk), ConsistentRead=True)
        item = response.get("Item")
        if item is None or codec.expired(item):
            return None
        return item

    def query_all(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield every item a Query matches, page after page."""
        while True:
            response = self.call("query", TableName=self.name, **kwargs)
            yield from response.get("Items", [])
            if not response.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def live_query(self, user_id: str, prefix: str, *, forward: bool) -> dict[str, Any]:
        """Return the arguments of a Query for a user's unexpired items under sort key ``prefix``."""
        filter_expression, filter_values = codec.alive_filter()
        return {
            "TableName": self.name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": filter_expression,
            "ExpressionAttributeValues": {
                ":pk": keys.partition(user_id),
                ":prefix": codec.s(prefix),
                **filter_values,
            },
            "ScanIndexForward": forward,
            "ConsistentRead": True,
        }

    def query_up_to(self, query: dict[str, Any], limit: int) -> tuple[list[dict[str, Any]], Any]:
        """Run ``query`` until ``limit`` items pass its filter or none are left.

        A filter can thin a page out, so this may read several pages. Return the
        items and the last key read (None when the query is done).
        """
        query = dict(query)
        items: list[dict[str, Any]] = []
        last_key = None
        while len(items) < limit:
            query["Limit"] = limit - len(items)
            response = self.call("query", **query)
            items.extend(response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                break
            query["ExclusiveStartKey"] = last_key
        return items, last_key

    def batch_get(self, item_keys: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Return items by key (100 per request), retrying unprocessed keys."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(item_keys), 100):
            request = {self.name: {"Keys": item_keys[start : start + 100], "ConsistentRead": True}}
            for attempt in range(8):
                response = self.call("batch_get_item", RequestItems=request)
                for item in response.get("Responses", {}).get(self.name, []):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                pause(attempt, base=0.05, cap=1.0)
            else:
                raise StorageError("BatchGetItem kept returning unprocessed keys")
        return found

    def delete(self, user_id: str, sort_keys: list[str]) -> int:
        """Delete items of a user (25 per request, in order); return how many keys were sent."""
        deleted = 0
        for start in range(0, len(sort_keys), 25):
            chunk = sort_keys[start : start + 25]
            request = {self.name: [{"DeleteRequest": {"Key": keys.key(user_id, sk)}} for sk in chunk]}
            for attempt in range(10):
                response = self.call("batch_write_item", RequestItems=request)
                request = response.get("UnprocessedItems") or {}
                if not request:
                    break
                pause(attempt, base=0.05, cap=1.0)
            else:
                raise StorageError("BatchWriteItem kept returning unprocessed items; re-run to finish")
            deleted += len(chunk)
        return deleted

    # ------------------------------------------------------------------ items

    def expires_at(self) -> int | None:
        """Return the TTL a write now carries (None without ``ttl_days``)."""
        if not self.ttl_days:
            return None
        return int((utc_now() + timedelta(days=self.ttl_days)).timestamp())

    def check_size(self, item: dict[str, Any], what: str) -> int:
        """Return an item's size; raise MessageTooLarge when it is over the limit."""
        size = codec.item_size(item)
        if size > self.max_item_bytes:
            raise MessageTooLarge(
                f"{what} would take {size} bytes in DynamoDB; the limit is {self.max_item_bytes}"
            )
        return size

    # ------------------------------------------------------------------ table admin

    def _ensure_table(self) -> None:
        if self._ready or not self.auto_create:
            return
        with self._lock:
            if self._ready:
                return
            # Look before creating: with a data-plane-only IAM identity the
            # table exists and CreateTable would be denied.
            try:
                description = self.client.describe_table(TableName=self.name)
            except ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise _translate(exc, "DescribeTable") from exc
                self.create()
            except BotoCoreError as exc:
                raise _translate(exc, "DescribeTable") from exc
            else:
                self._check_layout(description)
            self._ready = True

    def _check_layout(self, description: dict[str, Any]) -> None:
        """Raise WrongTableLayout unless the table is keyed ``pk``/``sk`` as this store writes."""
        schema = description.get("Table", {}).get("KeySchema", [])
        found = {key["KeyType"]: key["AttributeName"] for key in schema}
        if found == {"HASH": "pk", "RANGE": "sk"}:
            return
        if found == {"HASH": "user_id"}:
            raise WrongTableLayout(
                f"table {self.name!r} is in the original DadaCat layout (one item per user_id); "
                f"copy it into a new table with scripts/migrate_legacy.py --source-table {self.name} "
                "--target-table NEW and point DYNAMODB_TABLE_NAME at NEW"
            )
        raise WrongTableLayout(
            f"table {self.name!r} is keyed {found or 'unknown'}, not pk/sk: it is not a DadaCat "
            "conversation table (a table in the original layout is copied with "
            "scripts/migrate_legacy.py)"
        )

    def _explain_validation(self, exc: ClientError) -> None:
        """Raise WrongTableLayout when a ValidationException comes from a foreign table."""
        if _code(exc) != "ValidationException":
            return
        try:
            description = self.client.describe_table(TableName=self.name)
        except (ClientError, BotoCoreError):
            return  # no permission or no answer: the original error stands
        self._check_layout(description)

    def create(self) -> bool:
        """Create the table, its activity index and its TTL setting if missing; True if created."""
        client = self.client
        created = False
        try:
            client.create_table(
                TableName=self.name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": name, "AttributeType": "S"}
                    for name in ("pk", "sk", *keys.ACTIVITY_ATTRIBUTES)
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": keys.ACTIVITY_INDEX,
                        "KeySchema": [
                            {"AttributeName": keys.ACTIVITY_ATTRIBUTES[0], "KeyType": "HASH"},
                            {"AttributeName": keys.ACTIVITY_ATTRIBUTES[1], "KeyType": "RANGE"},
                        ],
                        # Keys only: updating a header's counters or preview
                        # then costs no index write.
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
            )
            created = True
            log.info("created DynamoDB table %s", self.name)
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":
                raise _translate(exc, "CreateTable") from exc
        except BotoCoreError as exc:
            raise _translate(exc, "CreateTable") from exc
        try:
            client.get_waiter("table_exists").wait(
                TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            # Always: counters and leases carry expires_at even when
            # conversations are kept forever (items without it never expire).
            self._enable_ttl()
            if created:
                self._enable_point_in_time_recovery()
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "table setup") from exc
        return created

    def _enable_point_in_time_recovery(self) -> None:
        """Turn on continuous backups (restore to any second of the last 35 days)."""
        try:
            self.client.update_continuous_backups(
                TableName=self.name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        except ClientError as exc:
            # DynamoDB Local has no backups at all; AWS always has them.
            if _code(exc) != "UnknownOperationException":
                raise
            log.info("point-in-time recovery is not available at this endpoint (DynamoDB Local)")

    def _enable_ttl(self) -> None:
        status = self.client.describe_time_to_live(TableName=self.name)
        state = status.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
        if state in ("ENABLED", "ENABLING"):
            return
        self.client.update_time_to_live(
            TableName=self.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )

    def ping(self) -> None:
        """Check that the table is reachable; raise a StorageError if not."""
        try:
            description = self.client.describe_table(TableName=self.name)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "DescribeTable") from exc
        self._check_layout(description)


def _code(exc: ClientError) -> str | None:
    return exc.response.get("Error", {}).get("Code")


def _translate(exc: Exception, what: str) -> StorageError:
    if isinstance(exc, ClientError):
        if _code(exc) == "ConditionalCheckFailedException":
            return ConditionFailed(f"{what}: condition failed")
        error = exc.response.get("Error", {})
        return StorageError(f"{what} failed: {error.get('Code')}: {error.get('Message')}")
    if isinstance(exc, _UNREACHABLE):
        return StorageUnavailable(f"DynamoDB is unreachable: {exc}")
    return StorageError(f"{what} failed: {exc}")
