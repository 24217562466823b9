"""The seam between a turn and whatever sends its reply after the webhook has answered.

A turn codes against ``ReplySender``; ``app.twilio_rest.TwilioRestSender`` sends through
Twilio's Messages API. Failures come in two kinds: ``SendRefused`` (retrying will not
help: the texter sent STOP, the number is invalid) and ``SendFailed`` (transient: network,
429, 5xx; the send may be retried, and may even have happened).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Sent:
    """What Twilio answered to one send."""

    sid: str  # the message SID, "SM..."
    status: str  # "queued", "accepted", ...


class SendRefused(Exception):
    """Twilio said no and retrying will not help (21610 STOP, 21211 invalid number, ...)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class SendFailed(Exception):
    """A transient failure (network, 429, 5xx): the send may be retried."""


class ReplySender(Protocol):
    """Sends a reply as a new outbound message."""

    def send(self, *, to: str, from_: str | None, body: str, status_callback: str | None) -> Sent:
        """Send ``body`` to ``to`` from ``from_`` (None: the messaging service).

        :raises SendRefused: Twilio refused for good.
        :raises SendFailed: the send failed for now (it may still have been sent).
        """
        ...

    def recent_to(self, to: str, since_epoch: float) -> list[tuple[str, str]]:
        """(sid, body) of the messages sent to ``to`` since ``since_epoch``, oldest first.

        Recovery of an ambiguous send asks this before sending again.
        :raises SendFailed: the list could not be read.
        """
        ...
