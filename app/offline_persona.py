"""The offline DadaCat persona: fragments, cat noises and a word from the text, no model.

It answers when no model is configured, when the day's model budget is spent, and
whenever the model fails within the deadline.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.config import DEFAULTS
from app.replies import LAST_RESORT, OFFLINE_MODEL, Reply, zero_usage
from app.sms import truncate

log = logging.getLogger(__name__)

_STOPWORDS = frozenset(
    "the and you your are was were what when where which who why how this that these those with "
    "from have has had not but for can could would should will just like about there their they "
    "them then than its it's i'm im dont don't does did into onto out our ours she her his him "
    "hello hey hii yes yeah okay ok please thanks thank tell much very some more also".split()
)
_WORD = re.compile(r"[^\W\d_]{3,}")
_NOTE = re.compile(r"\[[^\]]*\]")

_SOUNDS = ("mrrp", "prrrt", "meow", "mrow", "ksss", "dada dada", "zing-zang-meow", "purr purr",
           "hmmmrrp", "tzitzi miau", "brrrp", "nyaa", "rrrr-tic")
_OPENINGS = (
    "{word}? {sound}.",
    "{sound}. you say {word}, I hear a modem.",
    "{word} {word} {word}, {sound}.",
    "{sound}! {word} falls off the table.",
    "ah, {word}. {sound}.",
    "{sound}... {word} is warm, like a server rack.",
)
_MIDDLES = (
    "my whiskers cache {word} until the kernel panics",
    "the {word} buffer overflows with moonlight",
    "I garbage-collect {word} at midnight",
    "404: {word} not found in the cardboard box",
    "a null pointer naps on the keyboard",
    "every packet smells of fish",
    "the cursor blinks and I pounce",
    "the yarn is a linked list with no end",
    "sunbeam.exe has stopped responding",
    "I compiled a dream and it purred",
    "the moon is a monitor left on",
)
_QUESTIONS = (
    "is {word} a cursor or a mouse?",
    "why ask about {word} when the box is empty?",
    "who taught {word} to purr?",
    "does the red dot know your name?",
    "what is {word} but a sunbeam with a password?",
    "and if {word} were a fish, would you share it?",
)
_CLOSERS = ("dada.", "mrrp.", "prrt.", "end of file.", "reboot the moon.", "meow, or not.",
            "ksss.", "loop forever.")
_NOTHING = ("silence", "the blank", "nothing", "the static")


@dataclass
class OfflineResponder:
    """Answer as DadaCat with no model: fragments, sounds and a word from the text.

    With a ``seed``, the same history length and text give the same reply; without one,
    replies vary.
    """

    seed: int | None = None
    max_chars: int = DEFAULTS["REPLY_MAX_CHARS"]

    def __post_init__(self) -> None:
        self._rng = random.Random()
        self._lock = threading.Lock()

    def reply(self, history: Sequence[Any], text: str, *, deadline: float | None = None,
              media_urls: Sequence[str] = (), message_id: str | None = None,
              summary: str | None = None) -> Reply:
        """Return an offline DadaCat reply that refers to ``text``."""
        # Instant, needs no memory, and the window is not needed beyond its length.
        del deadline, message_id, summary
        started = time.monotonic()
        try:
            body = self.compose(text, history_length=len(history), pictures=len(media_urls))
        except Exception:  # never let the last line of defence fail the texter
            log.exception("offline persona failed; using its last-resort line")
            body = truncate(LAST_RESORT, self.max_chars)
        return Reply(text=body, model=OFFLINE_MODEL, usage=zero_usage(),
                     latency_ms=(time.monotonic() - started) * 1000, fallback="offline")

    def compose(self, text: str, *, history_length: int = 0, pictures: int = 0) -> str:
        """Build the reply text (deterministic for a given seed and inputs)."""
        if self.seed is not None:
            # A str seed is hashed with SHA-512, so this is stable across processes.
            rng = random.Random(f"{self.seed}|{history_length}|{pictures}|{text}")
        else:
            with self._lock:
                rng = random.Random(self._rng.getrandbits(64))
        word = self._pick_word(text, rng, pictures)
        sound = rng.choice(_SOUNDS)
        parts = [rng.choice(_OPENINGS).format(word=word, sound=sound)]
        if text.strip().endswith("?") or rng.random() < 0.4:
            parts.append(rng.choice(_QUESTIONS).format(word=word))
        else:
            parts.append(rng.choice(_MIDDLES).format(word=word) + ".")
        if rng.random() < 0.5:
            parts.append(rng.choice(_CLOSERS))
        return truncate(" ".join(parts), self.max_chars) or truncate(LAST_RESORT, self.max_chars)

    @staticmethod
    def _pick_word(text: str, rng: random.Random, pictures: int) -> str:
        # Bracketed notes such as "[sent an attachment]" are ours, not the texter's words.
        spoken = _NOTE.sub(" ", text)
        pictures = pictures or int(spoken != text)
        text = spoken
        words = [w for w in _WORD.findall(text) if w.lower() not in _STOPWORDS]
        if not words:
            words = _WORD.findall(text)
        if not words:
            return "the picture" if pictures else rng.choice(_NOTHING)
        # Longer words tend to carry the meaning; pick among those near the longest.
        longest = max(len(w) for w in words)
        candidates = sorted({w.lower() for w in words if len(w) >= longest - 2})
        return rng.choice(candidates)[:24]
