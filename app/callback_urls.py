"""Status-callback URLs for replies sent after the webhook answered (there is no request then)."""

from __future__ import annotations

from urllib.parse import urlencode

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

    def __call__(self, sid: str) -> str | None:
        base = self.base or self.learned
        if not base or not sid:
            return None
        return f"{base}{STATUS_PATH}?{urlencode({'sid': sid})}"
