"""A process-local :class:`~conversation.store.ConversationStore`, for tests and tools."""

from conversation.inmemory.store import MemoryStore

__all__ = ["MemoryStore"]
