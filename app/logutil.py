"""Logging helpers shared by the webhook and the operator API."""

from __future__ import annotations


def mask_number(number: str | None) -> str:
    """Mask a phone number for logs, keeping the country prefix and last two digits."""
    if not number:
        return "-"
    text = str(number)
    if len(text) <= 5:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 5) + text[-2:]
