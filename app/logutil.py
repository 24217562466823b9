"""Logging helpers shared by the webhook and the operator API: masking and the line format."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from conversation.ids import channel_and_address

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Structured fields ride on the record under this one attribute, so they can never
# collide with LogRecord's own attributes (name, msg, args...).
FIELDS_ATTRIBUTE = "dadacat_fields"


def mask_number(number: str | None) -> str:
    """Mask a sender for logs: keep a channel prefix, the country prefix and the last two digits.

    ``+15551234567`` logs as ``+15******67``, ``whatsapp:+15551234567`` as
    ``whatsapp:+15******67``.
    """
    if not number:
        return "-"
    channel, address = channel_and_address(str(number))
    if len(address) <= 5:
        return channel + "*" * len(address)
    return channel + address[:3] + "*" * (len(address) - 5) + address[-2:]


def log_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``extra=`` for a log call whose JSON line should carry these fields."""
    return {FIELDS_ATTRIBUTE: dict(fields)}


class _JsonLineFormatter(JsonFormatter):
    """One JSON object per record: time, level, logger, message and the record's fields."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        fields = getattr(record, FIELDS_ATTRIBUTE, None) or {}
        super().add_fields(log_data, record, message_dict)
        log_data.pop(FIELDS_ATTRIBUTE, None)
        for name, value in fields.items():
            log_data.setdefault(name, value)


# What could end a log line or disguise one: C0 and C1 controls, DEL, line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """Escape control characters and line breaks, so a value can never start a log line of its own."""
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


class OneLineFormatter(logging.Formatter):
    """The text format: each record's line escaped; a traceback's lines indented below it.

    Request fields (a MessageSid, a status, a query parameter) reach log messages; a
    newline in one must not forge a line that looks like the bot's own.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record's escaped line, then any traceback or stack indented under it."""
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        lines = [one_line(self.formatMessage(record))]
        # Formatted here, not taken from record.exc_text: another handler may have cached it unindented.
        if record.exc_info:
            lines.append(_indented(self.formatException(record.exc_info)))
        elif record.exc_text:
            lines.append(_indented(record.exc_text))
        if record.stack_info:
            lines.append(_indented(self.formatStack(record.stack_info)))
        return "\n".join(lines)


def _indented(text: str) -> str:
    return "\n".join("  " + one_line(line) for line in text.splitlines())


def log_formatter(log_format: str) -> logging.Formatter:
    """Return the formatter for LOG_FORMAT: ``text`` (one readable line) or ``json``."""
    if log_format == "json":
        return _JsonLineFormatter(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return OneLineFormatter(TEXT_FORMAT)
