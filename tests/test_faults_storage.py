"""Storage under injected DynamoDB faults: retried, typed, and nothing lost or doubled."""

from __future__ import annotations

import pytest

from conversation import ConversationManager, DynamoDBStorage, StorageError
from tests.faults import INTERNAL, REQUEST_LIMIT, THROTTLED, UNAVAILABLE, FaultInjector

USER = "+15550003333"


@pytest.fixture
def retrying_storage(local_storage):
    """Return a store on DynamoDB Local whose client retries like production."""
    return DynamoDBStorage(
        local_storage.table_name,
        endpoint_url=local_storage.client.meta.endpoint_url,
        region_name="us-east-1",
        max_retries=3,
    )


@pytest.mark.parametrize("fault", [THROTTLED, REQUEST_LIMIT, INTERNAL, UNAVAILABLE],
                         ids=["throttled", "request-limit", "internal", "unavailable"])
def test_transient_faults_are_retried_by_botocore(retrying_storage, fault):
    manager = ConversationManager(retrying_storage)
    manager.add_user_message(USER, "warm up")  # table and conversation exist
    with FaultInjector(retrying_storage.client, fault, times=2, operations=("TransactWriteItems",)) as faults:
        recorded = manager.record_user_message(USER, "through the storm", message_id="SMstorm")
    assert faults.injected == 2
    assert recorded.created
    history = manager.get_history(USER)
    assert [m.content for m in history] == ["warm up", "through the storm"]
    assert manager.get_message_count(USER) == 2


def test_persistent_faults_become_a_typed_error_and_write_nothing(retrying_storage):
    manager = ConversationManager(retrying_storage)
    manager.add_user_message(USER, "before")
    storm = FaultInjector(retrying_storage.client, THROTTLED, times=100, operations=("TransactWriteItems",))
    with storm as faults:
        with pytest.raises(StorageError, match="ProvisionedThroughputExceeded"):
            manager.add_user_message(USER, "lost in the storm?", message_id="SMlost")
    assert faults.injected == 4  # the first try plus max_retries retries, then it gives up
    assert [m.content for m in manager.get_history(USER)] == ["before"]
    # The same MessageSid retried after the storm is stored exactly once.
    manager.add_user_message(USER, "lost in the storm?", message_id="SMlost")
    manager.add_user_message(USER, "lost in the storm?", message_id="SMlost")
    assert [m.content for m in manager.get_history(USER)] == ["before", "lost in the storm?"]
    assert manager.get_message_count(USER) == 2


def test_faults_on_reads_are_retried(retrying_storage):
    manager = ConversationManager(retrying_storage)
    manager.add_user_message(USER, "hello")
    with FaultInjector(retrying_storage.client, INTERNAL, times=3, operations=("Query", "GetItem")) as faults:
        history = manager.get_history(USER)
    assert faults.injected == 3
    assert [m.content for m in history] == ["hello"]
