"""Logging helpers shared by the webhook and the operator API: masking and the line format."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Structured fields ride on the record under this one attribute, so they can never
# collide with LogRecord's own attributes (name, msg, args...).
FIELDS_ATTRIBUTE = "dadacat_fields"


def mask_number(number: str | None) -> str:
    """Mask a phone number for logs, keeping the country prefix and last two digits."""
    if not number:
        return "-"
    text = str(number)
    if len(text) <= 5:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 5) + text[-2:]


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


def log_formatter(log_format: str) -> logging.Formatter:
    """Return the formatter for LOG_FORMAT: ``text`` (one readable line) or ``json``."""
    if log_format == "json":
        return _JsonLineFormatter(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(TEXT_FORMAT)
