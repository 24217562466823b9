"""Conditions a new text's write must meet, checked in that same write (all or nothing).

The quick path of a turn folds three checks into the transaction that stores the
text, instead of spending a request on each: the number has not opted out, the
number's turn lease is free (and is taken), and each of the number's rate counters
is still under its cap (and counts this text). When one of them does not hold,
nothing is written and :class:`GuardFailed` names which; the caller then takes the
slower path that makes each check on its own.

The reply's write can likewise give the turn lease back (``release_lease`` on the
store's ``append``): the next text of the number then finds the reply stored.

In ``auto``/``async`` modes the number's work item (see ``WorkQueue`` in
:mod:`conversation.store`) rides in the same writes: the text's write notes the text on
it and takes its claim (:class:`WorkNote`), and the reply's write checks the opt-out
again and either renews the claim (a reply still to be sent) or ends the work (a reply
already on its way in the webhook's answer) (:class:`ReplyGuard`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conversation.errors import ConversationError

# The names GuardFailed uses besides the counter names.
OPTED_OUT = "opted_out"
LEASE = "lease"
WORK = "work"


@dataclass(frozen=True)
class CounterCap:
    """A counter of the number the text adds one to, only while it is below ``below``."""

    name: str
    below: int
    expires_in: float


@dataclass(frozen=True)
class WorkNote:
    """Count the text on its number's work item (creating the item), in the text's write.

    With ``owner`` the work's claim is taken too, for ``seconds``, when it is free, lapsed
    or already this owner's (else GuardFailed names ``"work"``). A claim taken this way
    covers every text noted so far, the new one included: the work's version starts
    again at 0, which is the version the claimer finishes at when no text comes meanwhile.
    """

    owner: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class TextGuard:
    """What must hold for a text to be stored on the quick path (see the module docstring).

    :param not_opted_out: the number has not opted out (STOP).
    :param lease_owner: take the number's turn lease for this owner (free, lapsed or
        already this owner's), for ``lease_seconds``.
    :param caps: per-number counters, each counted only while below its cap.
    :param work: note the text on the number's work item (and take its claim).
    """

    not_opted_out: bool = True
    lease_owner: str | None = None
    lease_seconds: float = 0.0
    caps: tuple[CounterCap, ...] = field(default_factory=tuple)
    work: WorkNote | None = None


@dataclass(frozen=True)
class ReplyGuard:
    """What a reply written under a number's work claim checks in its own write.

    :param owner: the claim's owner; the reply is not stored unless it still holds the
        claim (GuardFailed names ``"work"``: the number was erased or its work taken over).
    :param seconds: renew the claim for this long (a reply that is still to be sent).
    :param finish_version: instead of renewing, end the work when no text was noted since
        this version (a reply the webhook's answer carries). When newer texts came, the
        reply is stored with the claim renewed for ``seconds`` and ``Recorded.finished``
        is False: the turn runs again for them.
    :param not_opted_out: the number has not opted out since its text (GuardFailed names
        ``"opted_out"``).
    """

    owner: str
    seconds: float = 0.0
    finish_version: int | None = None
    not_opted_out: bool = True


class GuardFailed(ConversationError):
    """A guarded text was not stored: ``failed`` names what did not hold
    (``"opted_out"``, ``"lease"`` and/or counter names)."""

    def __init__(self, failed: list[str]) -> None:
        super().__init__(f"the text was not stored: {', '.join(failed)} did not hold")
        self.failed = frozenset(failed)
