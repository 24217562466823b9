"""Create the conversations table (and its index and TTL setting) if it is missing.

Reads the table name, region, endpoint and TTL through ``app.config.load_config``
(environment and ``.env``). Safe to run any number of times.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from app.config import ConfigError, Settings, load_config
from conversation import DynamoDBStorage
from conversation.dynamodb.table import _region
from conversation.errors import StorageError

ROOT = Path(__file__).resolve().parent.parent

# boto3's own variables, not app settings: passed through so a launcher can
# hand over placeholder credentials for DynamoDB Local.
_CREDENTIAL_NAMES = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
}


def create_table(config: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Create the configured table if missing; return True when it was created.

    ``environ`` may carry AWS credentials to use instead of boto3's usual chain.
    """
    client = None
    if environ is not None and environ.get("AWS_ACCESS_KEY_ID"):
        import boto3

        credentials = {arg: environ[name] for name, arg in _CREDENTIAL_NAMES.items() if environ.get(name)}
        session = boto3.session.Session(**credentials)
        # The storage's own region chain: with no region anywhere, a local endpoint gets us-east-1.
        region = _region(config.aws_region, session, config.aws_endpoint_url)
        client = session.client("dynamodb", endpoint_url=config.aws_endpoint_url, region_name=region)
    storage = DynamoDBStorage(
        config.dynamodb_table_name,
        client=client,
        endpoint_url=config.aws_endpoint_url,
        region_name=config.aws_region,
        ttl_days=config.conversation_ttl_days,
    )
    return storage.create_table()


def main() -> int:
    """Create the table named by the configuration and say what happened."""
    try:
        # This script serves no webhook, so the Twilio token is not needed here.
        config = load_config({"TWILIO_VALIDATE_SIGNATURE": False})
        created = create_table(config)
    except (ConfigError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    where = config.aws_endpoint_url or f"AWS {config.aws_region}"
    state = "created" if created else "already exists"
    print(f"table {config.dynamodb_table_name} {state} ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
