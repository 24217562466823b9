"""The AWS region comes from boto3's own chain, and a table in the old layout is named as such."""

from __future__ import annotations

import pytest

from app import create_app
from app.services import services
from conversation import ConversationManager, DynamoDBStorage, StorageError
from conversation.errors import WrongTableLayout


@pytest.fixture
def no_region(monkeypatch, tmp_path):
    """Clear every source of a region: environment, profile and config file."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    return monkeypatch


def _region(storage: DynamoDBStorage) -> str:
    return storage.client.meta.region_name


def test_storage_used_directly_honours_aws_region(no_region):
    no_region.setenv("AWS_REGION", "eu-west-2")
    assert _region(DynamoDBStorage("t")) == "eu-west-2"


def test_aws_region_wins_over_aws_default_region(no_region):
    no_region.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    no_region.setenv("AWS_REGION", "eu-west-2")
    assert _region(DynamoDBStorage("t")) == "eu-west-2"


def test_the_profile_region_is_used(no_region, tmp_path):
    config = tmp_path / "config"
    config.write_text("[profile bot]\nregion = eu-central-1\n")
    no_region.setenv("AWS_CONFIG_FILE", str(config))
    no_region.setenv("AWS_PROFILE", "bot")
    assert _region(DynamoDBStorage("t")) == "eu-central-1"


def test_the_app_does_not_force_us_east_1(no_region):
    no_region.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    app = create_app({"TWILIO_AUTH_TOKEN": "t"})
    assert _region(services(app).storage) == "ap-southeast-2"


def test_the_app_passes_an_explicit_region(no_region):
    no_region.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    app = create_app({"TWILIO_AUTH_TOKEN": "t", "AWS_REGION": "sa-east-1"})
    assert _region(services(app).storage) == "sa-east-1"


def test_a_local_endpoint_alone_defaults_to_us_east_1(no_region):
    storage = DynamoDBStorage("t", endpoint_url="http://127.0.0.1:9")
    assert _region(storage) == "us-east-1"


def test_no_region_anywhere_is_an_error_that_says_how_to_set_one(no_region):
    with pytest.raises(StorageError, match="AWS_REGION"):
        DynamoDBStorage("t").client  # noqa: B018 - building the client is the point


@pytest.mark.parametrize("auto_create", [True, False])
def test_a_table_in_the_old_layout_names_the_migration_script(storage, legacy_table, auto_create):
    legacy = DynamoDBStorage(legacy_table, client=storage.client, auto_create=auto_create)
    with pytest.raises(WrongTableLayout, match=r"original DadaCat layout.*scripts/migrate_legacy\.py"):
        ConversationManager(legacy).add_user_message("+15550107777", "hello")
    with pytest.raises(WrongTableLayout, match=r"scripts/migrate_legacy\.py"):
        legacy.ping()
