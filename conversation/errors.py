"""Typed errors raised by the conversation package."""


class ConversationError(Exception):
    """Base class for every error this package raises."""


class MessageTooLarge(ConversationError, ValueError):
    """A message is over the configured size limit; nothing was written."""


class InvalidCursor(ConversationError, ValueError):
    """A pagination cursor is malformed or belongs to another listing."""


class ConversationNotFound(ConversationError, LookupError):
    """The conversation does not exist (or was hard-deleted)."""


class StorageError(ConversationError):
    """DynamoDB refused a request; the original botocore error is the cause."""


class StorageUnavailable(StorageError):
    """DynamoDB could not be reached (connection refused, timed out, no credentials)."""


class TableMissing(StorageError):
    """The table does not exist and creating it on first use is turned off."""


class WrongTableLayout(StorageError):
    """The table exists but is not in this store's layout (e.g. the original one-item-per-user layout)."""


class InvalidUserId(ConversationError, ValueError):
    """A user id is empty, too long or has a character the store reserves."""


class StaleMetadata(ConversationError):
    """A conditional metadata update found other values than expected; nothing was written."""
