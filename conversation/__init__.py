"""Conversation memory for DadaCat: models, a DynamoDB store and a manager.

This package knows nothing of Flask or Twilio.
"""

from conversation.errors import (
    ConversationError,
    ConversationNotFound,
    InvalidCursor,
    MessageTooLarge,
    StorageError,
    StorageUnavailable,
)
from conversation.manager import ConversationManager
from conversation.models import Conversation, Message, Page
from conversation.storage import DynamoDBStorage

__all__ = [
    "Conversation",
    "ConversationError",
    "ConversationManager",
    "ConversationNotFound",
    "DynamoDBStorage",
    "InvalidCursor",
    "Message",
    "MessageTooLarge",
    "Page",
    "StorageError",
    "StorageUnavailable",
]
