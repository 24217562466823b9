"""Console pages: conversations, one conversation, and the actions on them.

No full phone number and no message text ever appears in a URL: conversations
and numbers are named by sealed references, page cursors are sealed too, and
a number typed into the filter travels in a POST body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app import operations as ops
from app.console.security import seal, unseal
from app.logutil import mask_number
from app.operations import OperatorError
from app.services import services
from conversation import ConversationManager

VIA = "console"
CONVERSATIONS_PER_PAGE = 25
MESSAGES_PER_PAGE = 200


@dataclass(frozen=True)
class Action:
    """Something an operator can do, with the question its confirmation asks."""

    name: str
    label: str
    question: str
    scope: str  # "conversation" or "number"
    danger: bool = False


ACTIONS = {action.name: action for action in (
    Action("rename", "Rename", "Give this conversation a new title.", "conversation"),
    Action("archive", "Archive", "Archive this conversation? The number's next text starts a new one.",
           "conversation"),
    Action("reset", "Reset number", "Reset this number? Its active conversation is archived, exactly as if "
           "the texter had sent \u201creset\u201d.", "number"),
    Action("export", "Export", "Download everything stored for this number as one JSON file?", "number"),
    Action("forget-summary", "Forget memory", "Forget this conversation's running summary? The bot keeps "
           "seeing its newest messages but loses what it remembered of older ones.", "conversation", True),
    Action("delete", "Delete", "Delete this conversation? It disappears from the listings and is archived; "
           "its messages are kept.", "conversation", True),
    Action("hard-delete", "Delete for good", "Delete this conversation and all its messages for good? "
           "This cannot be undone.", "conversation", True),
    Action("erase", "Erase number", "Erase everything stored for this number: every conversation, every "
           "message, its opt-out state? This cannot be undone.", "number", True),
)}
DONE = {
    "renamed": "Renamed.", "archived": "Archived.", "reset": "The number was reset.",
    "deleted": "The conversation was deleted.", "hard-deleted": "The conversation was deleted for good.",
    "erased": "Everything stored for the number was erased.",
    "summary-forgotten": "The running summary was forgotten.",
}


def manager() -> ConversationManager:
    return services().manager


# ------------------------------------------------------------ references


def conversation_ref(number: str, conversation_id: str) -> str:
    """Return the opaque reference of a conversation, for URLs."""
    return seal("conversation", f"{number}\n{conversation_id}")


def read_conversation_ref(ref: str) -> tuple[str, str]:
    number, _, conversation_id = unseal("conversation", ref).partition("\n")
    return number, conversation_id


def number_ref(number: str) -> str:
    """Return the opaque reference of a phone number, for URLs."""
    return seal("number", number)


def _page_cursor(scope: str) -> str | None:
    token = request.args.get("page")
    return unseal(f"page:{scope}", token) if token else None


def _next_page(scope: str, cursor: str | None) -> str | None:
    return seal(f"page:{scope}", cursor) if cursor else None


def _reveal() -> bool:
    """Return whether this request asked to show full numbers (a POST, so never in a URL)."""
    return request.method == "POST" and request.form.get("reveal") == "1"


def conversation_row(conversation: Any, reveal: bool) -> dict[str, Any]:
    """Return what the conversation tables show of one conversation."""
    number = conversation.user_id
    return {
        "ref": conversation_ref(number, conversation.conversation_id),
        "number": number if reveal else mask_number(number),
        "title": conversation.title,
        "message_count": conversation.message_count,
        "preview": conversation.preview,
        "last_activity": when(conversation.last_message_at or conversation.updated_at),
        "status": status_of(conversation),
    }


def status_of(conversation: Any) -> str:
    if conversation.deleted_at:
        return "deleted"
    return "active" if conversation.is_active else "archived"


def when(timestamp: str | None) -> str:
    """Format a stored ISO timestamp for people: UTC, to the second."""
    if not timestamp:
        return ""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def message_row(message: Any) -> dict[str, Any]:
    """Return what the conversation page shows of one message."""
    meta = message.metadata or {}
    usage: dict[str, Any] = meta["usage"] if isinstance(meta.get("usage"), dict) else {}
    row = {
        "time": when(message.timestamp),
        "role": message.role,
        "content": message.content,
        "media": list(message.media_urls),
        "details": [],
    }
    details = row["details"]
    latency = meta.get("latency_ms")
    if message.role == "assistant":
        for label, value in (
            ("model", meta.get("model")),
            ("latency", f"{float(latency):.0f} ms" if isinstance(latency, int | float) else None),
            ("tokens", usage.get("total_tokens")),
            ("segments", meta.get("segments")),
            ("encoding", meta.get("encoding")),
            ("fallback", meta.get("fallback") or "none"),
            ("delivery", meta.get("delivery_status") or "not reported"),
            ("error code", meta.get("delivery_error_code")),
            ("notice", meta.get("notice")),
            ("command", meta.get("command")),
        ):
            if value not in (None, ""):
                details.append((label, value))
    else:
        for label, key in (("command", "command"), ("unanswered", "unanswered")):
            if meta.get(key) not in (None, ""):
                details.append((label, meta[key]))
    return row


# ------------------------------------------------------------------ pages


def conversations() -> str:
    """List conversations across all numbers, newest activity first."""
    reveal = _reveal()
    page = ops.recent_conversations(
        manager(), limit=CONVERSATIONS_PER_PAGE, cursor=_page_cursor("recent"), via=VIA
    )
    if reveal:
        ops.audit("reveal_numbers", count=len(page.items), via=VIA)
    # The activity index orders by minute; within a page, order by the exact time.
    items = sorted(page.items, key=lambda c: c.last_message_at or c.updated_at or "", reverse=True)
    return render_template(
        "console/conversations.html",
        rows=[conversation_row(c, reveal) for c in items],
        next_page=_next_page("recent", page.cursor),
        reveal=reveal,
        done=DONE.get(request.args.get("done", "")),
        heading="Conversations",
    )


def find_number() -> Response | tuple[str, int]:
    """Filter by number: the number comes in a POST body and leaves as a sealed reference."""
    number = (request.form.get("number") or "").strip()
    if ":" not in number:
        # A typed phone number: "+1 555-123-4567". Channel senders and agent ids
        # (whatsapp:..., agent:...) are taken as they are.
        number = number.replace(" ", "").replace("-", "")
    try:
        ops.check_number(number)
    except OperatorError as exc:
        return render_template(
            "console/conversations.html", rows=[], next_page=None, reveal=False, done=None,
            heading="Conversations", error=exc.message,
        ), 400
    return redirect(url_for("console.number", ref=number_ref(number)), 303)


def number(ref: str) -> str:
    """List one number's conversations, newest first, with the number's actions."""
    phone = unseal("number", ref)
    reveal = _reveal()
    scope = f"number:{phone}"
    page = ops.number_conversations(
        manager(), phone, limit=CONVERSATIONS_PER_PAGE, cursor=_page_cursor(scope), via=VIA
    )
    if reveal:
        ops.audit("reveal_number", phone, via=VIA)
    return render_template(
        "console/conversations.html",
        rows=[conversation_row(c, reveal) for c in page.items],
        next_page=_next_page(scope, page.cursor),
        reveal=reveal,
        done=DONE.get(request.args.get("done", "")),
        heading=f"Conversations of {phone if reveal else mask_number(phone)}",
        number_ref=ref,
        actions=[a for a in ACTIONS.values() if a.scope == "number"],
    )


def conversation(ref: str) -> str:
    """Show one conversation: its header, every message and the actions."""
    phone, conversation_id = read_conversation_ref(ref)
    reveal = _reveal()
    header = ops.get_conversation(manager(), phone, conversation_id, via=VIA)
    scope = f"messages:{phone}:{conversation_id}"
    page = ops.conversation_messages(
        manager(), phone, conversation_id,
        limit=MESSAGES_PER_PAGE, cursor=_page_cursor(scope), via=VIA,
    )
    if reveal:
        ops.audit("reveal_number", phone, conversation_id, via=VIA)
    return render_template(
        "console/conversation.html",
        ref=ref,
        number_ref=number_ref(phone),
        number=phone if reveal else mask_number(phone),
        reveal=reveal,
        header=header,
        status=status_of(header),
        created=when(header.created_at),
        last_activity=when(header.last_message_at or header.updated_at),
        counters=dict(header.counters),
        summary=header.summary if header.summary and header.summary.text else None,
        summary_updated=when(header.summary.updated_at) if header.summary else None,
        messages=[message_row(m) for m in page.items],
        next_page=_next_page(scope, page.cursor),
        actions=list(ACTIONS.values()),
        done=DONE.get(request.args.get("done", "")),
    )


# ---------------------------------------------------------------- actions


def _action(name: str, allowed_scopes: tuple[str, ...]) -> Action:
    action = ACTIONS.get(name)
    if action is None or action.scope not in allowed_scopes:
        abort(404)
    return action


def conversation_action(ref: str, name: str) -> Response | str | tuple[str, int]:
    """Confirm (GET) or perform (POST) an action on a conversation or on its number."""
    action = _action(name, ("conversation", "number"))
    phone, conversation_id = read_conversation_ref(ref)
    back = url_for("console.conversation", ref=ref)
    if request.method == "GET":
        header = ops.get_conversation(manager(), phone, conversation_id, via=VIA)
        return _confirm(action, back, mask_number(phone), header.title)
    try:
        return _perform(action, phone, conversation_id, ref)
    except OperatorError as exc:
        if exc.status != 400:
            raise
        return _confirm(action, back, mask_number(phone), request.form.get("title"), exc.message), 400


def number_action(ref: str, name: str) -> Response | str:
    """Confirm (GET) or perform (POST) an action on a number."""
    action = _action(name, ("number",))
    phone = unseal("number", ref)
    if request.method == "GET":
        return _confirm(action, url_for("console.number", ref=ref), mask_number(phone), None)
    return _perform(action, phone, None, None, number_page=ref)


def _confirm(action: Action, back: str, masked: str, title: str | None, error: str | None = None) -> str:
    return render_template(
        "console/confirm.html", action=action, back=back, masked=masked, title=title, error=error
    )


def _perform(
    action: Action, phone: str, conversation_id: str | None, ref: str | None, number_page: str | None = None
) -> Response:
    m = manager()
    # Conversation actions come only from a conversation's page, which always names one.
    cid = conversation_id or ""
    here = (url_for("console.conversation", ref=ref) if ref
            else url_for("console.number", ref=number_page or number_ref(phone)))
    if action.name == "rename":
        ops.update_conversation(m, phone, cid, title=request.form.get("title", ""), via=VIA)
        return redirect(f"{here}?done=renamed", 303)
    if action.name == "archive":
        ops.update_conversation(m, phone, cid, archive=True, via=VIA)
        return redirect(f"{here}?done=archived", 303)
    if action.name == "forget-summary":
        ops.clear_summary(m, phone, cid, via=VIA)
        return redirect(f"{here}?done=summary-forgotten", 303)
    if action.name == "reset":
        ops.reset_number(m, phone, via=VIA)
        return redirect(f"{here}?done=reset", 303)
    if action.name == "export":
        document = ops.export_number(m, phone, via=VIA)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return Response(
            json.dumps(document, ensure_ascii=False, indent=2, default=str),
            mimetype="application/json",
            headers={"Content-Disposition": f'attachment; filename="dadacat-export-{stamp}.json"'},
        )
    listing = url_for("console.conversations")
    if action.name in ("delete", "hard-delete"):
        hard = action.name == "hard-delete"
        ops.delete_conversation(m, phone, cid, hard=hard, via=VIA)
        return redirect(f"{listing}?done={'hard-deleted' if hard else 'deleted'}", 303)
    if action.name == "erase":
        ops.erase_number(m, phone, via=VIA)
        return redirect(f"{listing}?done=erased", 303)
    abort(404)
