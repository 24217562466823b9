"""The OpenAPI 3 document of the operator API (served at /api/v1/openapi.json)."""

from __future__ import annotations

import copy
from typing import Any

from conversation.ids import USER_ID_PATTERN

_NUMBER = {
    "name": "number",
    "in": "path",
    "required": True,
    "description": (
        "The sender, URL-encoded: an E.164 number (+15551234567 is %2B15551234567), a channel "
        "sender such as whatsapp:+15551234567, or an agent session id such as agent:chat-1."
    ),
    "schema": {"type": "string", "pattern": USER_ID_PATTERN},
}
_CONVERSATION_ID = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,64}$"},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "Items per page (1-100).",
    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
}
_CURSOR = {
    "name": "cursor",
    "in": "query",
    "required": False,
    "description": "Opaque cursor from a previous page's next_cursor (same listing only).",
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,1800}\.[A-Za-z0-9_-]{22}$"},
}
_ORDER = {
    "name": "order",
    "in": "query",
    "required": False,
    "description": "asc: oldest first (default); desc: newest first.",
    "schema": {"type": "string", "enum": ["asc", "desc"]},
}
_HARD = {
    "name": "hard",
    "in": "query",
    "required": False,
    "description": "true: delete every item of the conversation; false (default): hide it, keep it.",
    "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
}

_NULLABLE_TIME = {"type": "string", "nullable": True}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "nullable": True},
                },
            }
        },
    },
    "Conversation": {
        "type": "object",
        "required": [
            "conversation_id", "number", "title", "is_active", "message_count",
            "created_at", "updated_at", "last_message_at", "preview", "deleted_at",
        ],
        "properties": {
            "conversation_id": {"type": "string"},
            "number": {"type": "string"},
            "title": {"type": "string", "nullable": True},
            "is_active": {"type": "boolean"},
            "message_count": {"type": "integer", "minimum": 0},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "last_message_at": _NULLABLE_TIME,
            "preview": {"type": "string"},
            "deleted_at": _NULLABLE_TIME,
        },
    },
    "ConversationPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Conversation"}},
            "next_cursor": {"type": "string", "nullable": True},
        },
    },
    "Message": {
        "type": "object",
        "required": ["message_id", "role", "content", "timestamp", "media_urls", "metadata", "reply_to"],
        "properties": {
            "message_id": {"type": "string"},
            "role": {"type": "string", "enum": ["user", "assistant", "system"]},
            "content": {"type": "string"},
            "timestamp": {"type": "string"},
            "media_urls": {"type": "array", "items": {"type": "string"}},
            "metadata": {"type": "object"},
            "reply_to": {"type": "string", "nullable": True},
            "conversation_id": {"type": "string", "nullable": True},
        },
    },
    "MessagePage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
            "next_cursor": {"type": "string", "nullable": True},
        },
    },
    "Stats": {
        "type": "object",
        "required": [
            "conversation_id", "number", "message_count", "by_role", "first_message_at",
            "last_message_at", "duration_seconds", "tokens", "segments", "model_calls",
            "delivery_failures", "counters",
        ],
        "properties": {
            "conversation_id": {"type": "string"},
            "number": {"type": "string"},
            "message_count": {"type": "integer", "minimum": 0},
            "by_role": {
                "type": "object",
                "required": ["user", "assistant", "system"],
                "properties": {
                    "user": {"type": "integer", "minimum": 0},
                    "assistant": {"type": "integer", "minimum": 0},
                    "system": {"type": "integer", "minimum": 0},
                },
            },
            "first_message_at": _NULLABLE_TIME,
            "last_message_at": _NULLABLE_TIME,
            "duration_seconds": {"type": "number", "nullable": True, "minimum": 0},
            "tokens": {"type": "integer", "description": "Model tokens used."},
            "segments": {"type": "integer", "description": "SMS segments sent in replies."},
            "model_calls": {"type": "integer"},
            "delivery_failures": {"type": "integer"},
            "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "ConversationUpdate": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
            "archived": {"type": "boolean", "enum": [True], "description": "Only true: archive."},
        },
    },
    "DeleteResult": {
        "type": "object",
        "required": ["conversation_id", "hard", "deleted_items"],
        "properties": {
            "conversation_id": {"type": "string"},
            "hard": {"type": "boolean"},
            "deleted_items": {"type": "integer", "minimum": 0},
        },
    },
    "ResetResult": {
        "type": "object",
        "required": ["number", "archived_conversation_id"],
        "properties": {
            "number": {"type": "string"},
            "archived_conversation_id": {"type": "string", "nullable": True},
        },
    },
    "Summary": {
        "type": "object",
        "required": ["number", "conversation_id", "summary", "covers_messages", "covers_up_to",
                     "updated_at"],
        "properties": {
            "number": {"type": "string"},
            "conversation_id": {"type": "string"},
            "summary": {"type": "string", "nullable": True,
                        "description": "What the model remembers of messages older than its window."},
            "covers_messages": {"type": "integer", "minimum": 0},
            "covers_up_to": {"type": "string", "nullable": True,
                             "description": "Opaque position of the newest message it covers."},
            "updated_at": {"type": "string", "nullable": True},
        },
    },
    "SummaryCleared": {
        "type": "object",
        "required": ["number", "conversation_id", "cleared"],
        "properties": {
            "number": {"type": "string"},
            "conversation_id": {"type": "string"},
            "cleared": {"type": "boolean"},
        },
    },
    "EraseResult": {
        "type": "object",
        "required": ["number", "erased_items"],
        "properties": {
            "number": {"type": "string"},
            "erased_items": {"type": "integer", "minimum": 0},
        },
    },
    "Export": {
        "type": "object",
        "required": ["user_id", "user", "conversations"],
        "properties": {
            "user_id": {"type": "string"},
            "user": {"type": "object", "nullable": True},
            "conversations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["conversation_id", "messages"],
                    "properties": {
                        "conversation_id": {"type": "string"},
                        "messages": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    },
}

_ERRORS = {
    "400": "Malformed number, id, cursor, limit or body; error.field names it.",
    "401": "Missing or wrong bearer token.",
    "404": "Unknown conversation, or the API is closed (no ADMIN_API_TOKEN).",
    "409": "The change conflicts with the conversation's state.",
    "429": "Too many wrong tokens from this client address; Retry-After says when to try again.",
    "503": "The conversation store is unreachable or refused the request.",
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _operation(
    operation_id: str,
    summary: str,
    ok: tuple[str, str],
    parameters: list[dict[str, Any]],
    errors: tuple[str, ...] = ("400", "401", "404", "503"),
    body: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": copy.deepcopy(parameters),
        "responses": {"200": _json(*ok)},
    }
    for status in (*errors, "429"):
        operation["responses"][status] = _json("Error", _ERRORS[status])
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return operation


def build_document() -> dict[str, Any]:
    """Return the OpenAPI 3.0 document for the operator API."""
    number_conv = [_NUMBER, _CONVERSATION_ID]
    paths = {
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {
                    "200": {"description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}}},
                    "401": _json("Error", _ERRORS["401"]),
                    "404": _json("Error", _ERRORS["404"]),
                    "429": _json("Error", _ERRORS["429"]),
                },
            }
        },
        "/api/v1/conversations": {
            "get": _operation(
                "listRecentConversations",
                "Conversations across all numbers, newest activity first.",
                ("ConversationPage", "One page of conversations."),
                [_LIMIT, _CURSOR],
            )
        },
        "/api/v1/numbers/{number}/conversations": {
            "get": _operation(
                "listConversations",
                "One number's conversations, newest first.",
                ("ConversationPage", "One page of conversations."),
                [_NUMBER, _LIMIT, _CURSOR],
            )
        },
        "/api/v1/numbers/{number}/conversations/{conversation_id}": {
            "get": _operation(
                "getConversation", "One conversation's header.",
                ("Conversation", "The conversation."), number_conv,
            ),
            "patch": _operation(
                "updateConversation",
                "Rename (title) and/or archive (archived: true) a conversation.",
                ("Conversation", "The updated conversation."),
                number_conv,
                errors=("400", "401", "404", "409", "503"),
                body="ConversationUpdate",
            ),
            "delete": _operation(
                "deleteConversation",
                "Delete a conversation: hidden but kept by default, every item with hard=true.",
                ("DeleteResult", "What was deleted."),
                [*number_conv, _HARD],
                errors=("400", "401", "404", "409", "503"),
            ),
        },
        "/api/v1/numbers/{number}/conversations/{conversation_id}/messages": {
            "get": _operation(
                "listMessages",
                "One conversation's messages, oldest first (order=desc: newest first).",
                ("MessagePage", "One page of messages."),
                [*number_conv, _ORDER, _LIMIT, _CURSOR],
            )
        },
        "/api/v1/numbers/{number}/conversations/{conversation_id}/stats": {
            "get": _operation(
                "conversationStats",
                "Message counts by role, first/last message, duration, tokens, segments, failures.",
                ("Stats", "The statistics."),
                number_conv,
            )
        },
        "/api/v1/numbers/{number}/conversations/{conversation_id}/summary": {
            "get": _operation(
                "getSummary",
                "The conversation's running summary of messages older than the model's window.",
                ("Summary", "The summary (summary is null before the first one)."),
                number_conv,
            ),
            "delete": _operation(
                "clearSummary",
                "Forget the running summary; messages it covered are not summarised again.",
                ("SummaryCleared", "Whether there was a summary to forget."),
                number_conv,
            ),
        },
        "/api/v1/numbers/{number}/reset": {
            "post": _operation(
                "resetNumber",
                "Archive the number's active conversation (same as texting reset).",
                ("ResetResult", "The archived conversation's id, or null."),
                [_NUMBER],
                errors=("400", "401", "404", "503"),
            )
        },
        "/api/v1/numbers/{number}/export": {
            "get": _operation(
                "exportNumber",
                "Everything stored for a number, as JSON.",
                ("Export", "The export."),
                [_NUMBER],
            )
        },
        "/api/v1/numbers/{number}": {
            "delete": _operation(
                "eraseNumber",
                "Erase everything stored for a number (safe to repeat).",
                ("EraseResult", "How many items were deleted."),
                [_NUMBER],
            )
        },
        "/api/v1/numbers/{number}/erase": {
            "post": _operation(
                "eraseNumberPost",
                "Same as DELETE /api/v1/numbers/{number}.",
                ("EraseResult", "How many items were deleted."),
                [_NUMBER],
            )
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "DadaCat SMS operator API",
            "version": "1.0.0",
            "description": (
                "Read, rename, archive, export and erase SMS conversations. Closed (404) unless "
                "ADMIN_API_TOKEN is set; then send Authorization: Bearer <token>. Errors are "
                '{"error": {"code", "message", "field"}}.'
            ),
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": copy.deepcopy(_SCHEMAS),
        },
    }
