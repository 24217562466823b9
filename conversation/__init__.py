"""Conversation memory for DadaCat: models, a DynamoDB store and a manager.

This package knows nothing of Flask or Twilio.
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
from conversation.manager import ConversationManager, check_user_id
from conversation.models import Conversation, Message, Page
from conversation.storage import DynamoDBStorage

__all__ = [
    "Conversation",
    "ConversationError",
    "ConversationManager",
    "ConversationNotFound",
    "DynamoDBStorage",
    "InvalidCursor",
    "InvalidUserId",
    "Message",
    "MessageTooLarge",
    "Page",
    "StorageError",
    "StorageUnavailable",
    "check_user_id",
]
