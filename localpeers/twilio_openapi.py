"""Twilio's own OpenAPI description of the Messages API, used to check requests to the fake.

The description ships in npm ``@twilio/cli-core`` (installed by ``make install`` into
scripts/npm/node_modules). ``MessagesDescription`` reads the three operations the bot uses
(create, list, fetch a Message) and says what is wrong with a request, in the description's
terms: a form field or query parameter it does not name, a value of the wrong type or shape
(pattern, length, enum, integer range, boolean, uri), a required field missing. Two rules the
description states in prose are checked too: a message needs ``From`` or
``MessagingServiceSid``, and ``Body``, ``MediaUrl`` or ``ContentSid``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = (ROOT / "scripts" / "npm" / "node_modules" / "@twilio" / "cli-core" / "src" / "services"
             / "twilio-api" / "twilio_api_v2010.json")
MESSAGES = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
MESSAGE = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"
FORM = "application/x-www-form-urlencoded"


class DescriptionMissing(RuntimeError):
    """The npm package with Twilio's description is not installed."""


@dataclass(frozen=True)
class Problem:
    """One thing the description does not allow, with the Twilio error code the fake answers."""

    code: int
    message: str


# Twilio's codes for the rules it states in prose; anything else is an invalid parameter.
MISSING_TO, MISSING_FROM, MISSING_BODY, INVALID_PARAMETER = 21604, 21603, 21602, 20001


class MessagesDescription:
    """The create / list / fetch operations of Messages, read from Twilio's OpenAPI file."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        if not path.is_file():
            raise DescriptionMissing(
                f"{path} is missing: run `make install` (npm @twilio/cli-core in scripts/npm)")
        self.path = path
        spec = json.loads(path.read_text())
        self._schemas: dict[str, Any] = spec["components"]["schemas"]
        messages, message = spec["paths"][MESSAGES], spec["paths"][MESSAGE]
        create = messages["post"]["requestBody"]["content"][FORM]["schema"]
        self.create_fields: dict[str, Any] = create["properties"]
        self.create_required: tuple[str, ...] = tuple(create.get("required", ()))
        self.list_parameters = _parameters(messages["get"], "query")
        self.account_sid = _parameters(messages["post"], "path")["AccountSid"]
        self.message_sid = _parameters(message["get"], "path")["Sid"]

    def check_account(self, account_sid: str) -> list[Problem]:
        """What is wrong with the account SID of a request's path."""
        return self._value("AccountSid (path)", self.account_sid, account_sid)

    def check_create(self, form: Mapping[str, Sequence[str]]) -> list[Problem]:
        """What is wrong with the form of a create-message request (empty: it is allowed)."""
        problems: list[Problem] = []
        for name, values in form.items():
            schema = self.create_fields.get(name)
            if schema is None:
                problems.append(Problem(INVALID_PARAMETER, f"unknown parameter {name!r}"))
                continue
            schema = self._resolve(schema)
            if schema.get("type") == "array":
                for value in values:
                    problems += self._value(name, self._resolve(schema.get("items", {})), value)
            elif len(values) != 1:
                problems.append(Problem(INVALID_PARAMETER, f"{name} is given {len(values)} times"))
            else:
                problems += self._value(name, schema, values[0])
        present = {name for name, values in form.items() if any(v != "" for v in values)}
        for name in self.create_required:
            if name not in present:
                problems.append(Problem(MISSING_TO if name == "To" else INVALID_PARAMETER,
                                        f"required parameter {name!r} is missing"))
        if not present & {"From", "MessagingServiceSid"}:
            problems.append(Problem(MISSING_FROM, "a 'From' or 'MessagingServiceSid' parameter is required"))
        if not present & {"Body", "MediaUrl", "ContentSid"}:
            problems.append(Problem(MISSING_BODY, "a body is required: 'Body', 'MediaUrl' or 'ContentSid'"))
        return problems

    def check_list(self, query: Mapping[str, Sequence[str]]) -> list[Problem]:
        """What is wrong with the query of a list-messages request."""
        problems: list[Problem] = []
        for name, values in query.items():
            schema = self.list_parameters.get(name)
            if schema is None:
                problems.append(Problem(INVALID_PARAMETER, f"unknown query parameter {name!r}"))
            elif len(values) != 1:
                problems.append(Problem(INVALID_PARAMETER, f"{name} is given {len(values)} times"))
            else:
                # The DateSent filters take a plain date too, says their description.
                problems += self._value(name, schema, values[0], dates=name.startswith("DateSent"))
        return problems

    def check_message_sid(self, sid: str) -> list[Problem]:
        """What is wrong with the message SID of a fetch."""
        return self._value("Sid (path)", self.message_sid, sid)

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if ref:
            return self._schemas[ref.rsplit("/", 1)[-1]]
        return schema

    def _value(self, name: str, schema: Mapping[str, Any], value: str, *,
               dates: bool = False) -> list[Problem]:
        schema = self._resolve(schema)
        kind = schema.get("type", "string")
        wrong = _wrong(schema, kind, value, dates)
        return [Problem(INVALID_PARAMETER, f"{name} {wrong}: {value[:80]!r}")] if wrong else []


def _parameters(operation: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {p["name"]: p["schema"] for p in operation.get("parameters", ()) if p["in"] == where}


def _wrong(schema: Mapping[str, Any], kind: str, value: str, dates: bool) -> str | None:
    """Why ``value`` (as sent in a form or query) does not fit ``schema``; None when it does."""
    if kind == "boolean":
        return None if value.lower() in ("true", "false") else "must be true or false"
    if kind in ("integer", "number"):
        try:
            number = int(value) if kind == "integer" else float(value)
        except ValueError:
            return f"must be a{'n integer' if kind == 'integer' else ' number'}"
        if "minimum" in schema and number < schema["minimum"]:
            return f"must be at least {schema['minimum']}"
        if "maximum" in schema and number > schema["maximum"]:
            return f"must be at most {schema['maximum']}"
        return None
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {', '.join(schema['enum'])}"
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"must have at least {schema['minLength']} characters"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"must have at most {schema['maxLength']} characters"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return f"must match {schema['pattern']}"
    ignore_format = schema.get("x-twilio", {}).get("ignoreFormat")
    if schema.get("format") == "uri" and not ignore_format and not _is_uri(value):
        return "must be an absolute URI"
    if schema.get("format") == "date-time" and not _is_date_time(value, dates):
        return "must be a date-time (ISO 8601)" + (" or a date" if dates else "")
    return None


def _is_uri(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]+[^\s]*", value) is not None


def _is_date_time(value: str, dates: bool) -> bool:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return dates and bool(date.fromisoformat(value))
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", value):
            return False
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@cache
def messages_description(path: Path = SPEC_PATH) -> MessagesDescription:
    """The description at ``path``, read once per process (the file is about 2 MB)."""
    return MessagesDescription(path)
