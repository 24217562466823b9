"""Conditions a new text's write must meet, checked in that same write (all or nothing).

The quick path of a turn folds three checks into the transaction that stores the
text, instead of spending a request on each: the number has not opted out, the
number's turn lease is free (and is taken), and each of the number's rate counters
is still under its cap (and counts this text). When one of them does not hold,
nothing is written and :class:`GuardFailed` names which; the caller then takes the
slower path that makes each check on its own.

The reply's write can likewise give the turn lease back (``release_lease`` on the
store's ``append``): the next text of the number then finds the reply stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conversation.errors import ConversationError

# The names GuardFailed uses besides the counter names.
OPTED_OUT = "opted_out"
LEASE = "lease"


@dataclass(frozen=True)
class CounterCap:
    """A counter of the number the text adds one to, only while it is below ``below``."""

    name: str
    below: int
    expires_in: float


@dataclass(frozen=True)
class TextGuard:
    """What must hold for a text to be stored on the quick path (see the module docstring).

    :param not_opted_out: the number has not opted out (STOP).
    :param lease_owner: take the number's turn lease for this owner (free, lapsed or
        already this owner's), for ``lease_seconds``.
    :param caps: per-number counters, each counted only while below its cap.
    """

    not_opted_out: bool = True
    lease_owner: str | None = None
    lease_seconds: float = 0.0
    caps: tuple[CounterCap, ...] = field(default_factory=tuple)


class GuardFailed(ConversationError):
    """A guarded text was not stored: ``failed`` names what did not hold
    (``"opted_out"``, ``"lease"`` and/or counter names)."""

    def __init__(self, failed: list[str]) -> None:
        super().__init__(f"the text was not stored: {', '.join(failed)} did not hold")
        self.failed = frozenset(failed)
