"""Conversation memory for DadaCat: models, the store protocol, two stores and a manager.

``store.ConversationStore`` says what may be asked of storage;
``storage.DynamoDBStorage`` (built from ``conversation.dynamodb``) and
``inmemory.MemoryStore`` keep it; ``manager.ConversationManager`` is what the
app uses. This package knows nothing of Flask or Twilio.
"""

from conversation.errors import (
    ConversationError,
    ConversationNotFound,
    InvalidCursor,
    InvalidUserId,
    MessageTooLarge,
    StorageError,
    StorageUnavailable,
)
from conversation.ids import check_user_id, is_valid_user_id
from conversation.inmemory import MemoryStore
from conversation.manager import ConversationManager
from conversation.models import Conversation, Message, Page, User
from conversation.storage import DynamoDBStorage
from conversation.store import ConversationStore

__all__ = [
    "Conversation",
    "ConversationError",
    "ConversationManager",
    "ConversationNotFound",
    "ConversationStore",
    "DynamoDBStorage",
    "InvalidCursor",
    "InvalidUserId",
    "MemoryStore",
    "Message",
    "MessageTooLarge",
    "Page",
    "StorageError",
    "StorageUnavailable",
    "User",
    "check_user_id",
    "is_valid_user_id",
]
