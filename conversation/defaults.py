"""The defaults the conversation layer and the app's settings share, held once.

``app/config.py`` takes these as the defaults of the matching settings (DYNAMODB_TABLE_NAME,
DYNAMODB_MAX_RETRIES, DYNAMODB_CONNECT_TIMEOUT, DYNAMODB_READ_TIMEOUT, HISTORY_MAX_MESSAGES,
HISTORY_MAX_CHARS, MEMORY_UPDATE_EVERY, MEMORY_SUMMARY_MAX_CHARS), and the constructors here
use them when called without settings (the seed's usage example, scripts, tests), so a
storage or manager built either way behaves the same.
"""

from __future__ import annotations

TABLE_NAME = "DadaCatConversations"
# Short timeouts and few retries: a texter waits on every call, and Twilio gives up after 15 s.
DYNAMODB_MAX_RETRIES = 1
DYNAMODB_CONNECT_TIMEOUT = 1.0
DYNAMODB_READ_TIMEOUT = 3.0
HISTORY_MAX_MESSAGES = 20
HISTORY_MAX_CHARS = 6000
MEMORY_UPDATE_EVERY = 10
MEMORY_SUMMARY_MAX_CHARS = 1000
