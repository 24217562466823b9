"""Status-callback URLs for replies sent after the webhook answered (there is no request then).

Besides the SID of the text the reply answers (``sid``), the URL carries where that text is
stored (``c``: its conversation, ``p``: its position), so a status is recorded on the reply
with one write and no read. Twilio signs the URL it posts to, query included, so these
cannot be altered by anyone without the auth token.
"""

from __future__ import annotations

from urllib.parse import urlencode

from conversation.models import Message

# The path of the delivery-status view (app/webhook.py), which reads the text's SID from ``sid``.
STATUS_PATH = "/sms/status"


class CallbackUrls:
    """The URL Twilio posts a REST-sent reply's delivery status to.

    The base is PUBLIC_BASE_URL, or else the one the latest webhook request came to.
    """

    def __init__(self, public_base_url: str | None) -> None:
        self.base = public_base_url.rstrip("/") if public_base_url else None
        self.learned: str | None = None

    def learn(self, request_base: str) -> None:
        """Remember the base URL a webhook request came to (used without PUBLIC_BASE_URL)."""
        if not self.base:
            self.learned = request_base.rstrip("/")

    def __call__(self, text: Message) -> str | None:
        """The URL for the status of the reply to the stored ``text``."""
        base = self.base or self.learned
        if not base or not text.message_id:
            return None
        query = {"sid": text.message_id}
        if text.conversation_id and text.position:
            query.update(c=text.conversation_id, p=text.position)
        return f"{base}{STATUS_PATH}?{urlencode(query)}"
