"""Operator commands: ``flask init-db`` and ``flask conversations list|show|stats|summary|...``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from app.api import conversation_json, message_json
from app.logutil import mask_number
from app.operations import NUMBER_RULE, is_valid_number, summary_view
from app.services import services
from conversation import (
    ConversationManager,
    ConversationNotFound,
    DynamoDBStorage,
    InvalidCursor,
    StorageError,
)

log = logging.getLogger(__name__)

@click.group("conversations", cls=AppGroup)
def conversations() -> None:
    """Read, export and erase SMS conversations."""
    # stdout carries only the command's output (JSON for export). Logs already go to
    # stderr; follow sys.stderr as it is now, in case a runner has replaced it.
    ctx = click.get_current_context()
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_dadacat", False) and isinstance(handler, logging.StreamHandler):
            previous = handler.setStream(sys.stderr)
            if previous is not None:
                ctx.call_on_close(lambda handler=handler, previous=previous: handler.setStream(previous))


def _manager() -> ConversationManager:
    return services().manager


def _number(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not is_valid_number(value):
        raise click.BadParameter(NUMBER_RULE.removeprefix("number "), ctx, param)
    return value


def _store_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn store failures into one-line errors with exit status 1."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConversationNotFound as exc:
            raise click.ClickException(f"no such conversation: {exc}") from None
        except InvalidCursor:
            raise click.ClickException("the cursor is not one this listing issued") from None
        except StorageError as exc:
            raise click.ClickException(f"the conversation store failed: {exc}") from None

    return run


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


NUMBER = click.argument("number", callback=_number)
LIMIT = click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
                     help="Most items to show.")
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.command("init-db")
@with_appcontext
@_store_errors
def init_db() -> None:
    """Create the DynamoDB table, its activity index and TTL setting if missing."""
    storage = services().storage
    if not isinstance(storage, DynamoDBStorage):
        raise click.ClickException(f"init-db creates a DynamoDB table; this app stores in {storage!r}")
    created = storage.create_table()
    state = "created" if created else "already exists"
    click.echo(f"table {storage.table_name}: {state}")


@conversations.command("list")
@click.argument("number", required=False, callback=_number)
@LIMIT
@click.option("--cursor", help="Continue from the cursor a previous listing printed.")
@AS_JSON
@_store_errors
def list_command(number: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """List NUMBER's conversations newest first, or recent ones across all numbers."""
    manager = _manager()
    if number:
        page = manager.list_conversations(number, limit=limit, cursor=cursor)
    else:
        page = manager.list_recent_conversations(limit=min(limit, 100), cursor=cursor)
    log.info("operator cli list number=%s count=%d", mask_number(number), len(page.items))
    items = [conversation_json(c) for c in page.items]
    if as_json:
        _echo_json({"items": items, "next_cursor": page.cursor})
        return
    if not items:
        click.echo("no conversations")
    for item in items:
        flag = "active  " if item["is_active"] else "archived"
        title = item["title"] or "-"
        click.echo(
            f"{item['conversation_id']}  {item['number']}  {flag}  {item['message_count']:>5} msgs  "
            f"{item['last_message_at'] or item['created_at']}  {title}  {item['preview'][:40]!r}"
        )
    if page.cursor:
        click.echo(f"more: --cursor {page.cursor}")


def _newest_conversation(manager: ConversationManager, number: str) -> str:
    """Return the id of NUMBER's newest conversation; a ClickException when it has none."""
    newest = manager.list_conversations(number, limit=1).items
    if not newest:
        raise click.ClickException(f"{number} has no conversations")
    return newest[0].conversation_id


@conversations.command("show")
@NUMBER
@click.argument("conversation_id", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Most messages to show.")
@click.option("--newest-first", is_flag=True, help="Show the newest messages first.")
@AS_JSON
@_store_errors
def show_command(
    number: str, conversation_id: str | None, limit: int, newest_first: bool, as_json: bool
) -> None:
    """Show a conversation's messages (NUMBER's newest conversation by default)."""
    manager = _manager()
    if conversation_id is None:
        conversation_id = _newest_conversation(manager, number)
    conversation = manager.get_conversation(number, conversation_id)
    page = manager.list_messages(number, conversation_id, limit=limit, newest_first=newest_first)
    log.info("operator cli show number=%s conversation=%s", mask_number(number), conversation_id)
    if as_json:
        _echo_json({**conversation_json(conversation), "messages": [message_json(m) for m in page.items]})
        return
    state = "active" if conversation.is_active else "archived"
    click.echo(
        f"{conversation.conversation_id} ({state}, {conversation.message_count} messages)"
        f"{'  ' + conversation.title if conversation.title else ''}"
    )
    for message in page.items:
        click.echo(f"{message.timestamp}  {message.role:>9}: {message.content}")
    if page.cursor:
        click.echo("... more messages (raise --limit, or page through them with the API)")


@conversations.command("stats")
@NUMBER
@click.argument("conversation_id")
@_store_errors
def stats_command(number: str, conversation_id: str) -> None:
    """Print a conversation's statistics as JSON."""
    _echo_json(_manager().conversation_stats(number, conversation_id))


@conversations.command("summary")
@NUMBER
@click.argument("conversation_id", required=False)
@click.option("--clear", is_flag=True, help="Forget the summary instead of printing it.")
@AS_JSON
@_store_errors
def summary_command(number: str, conversation_id: str | None, clear: bool, as_json: bool) -> None:
    """Print (or --clear) the running summary of a conversation (NUMBER's newest by default)."""
    manager = _manager()
    if conversation_id is None:
        conversation_id = _newest_conversation(manager, number)
    if clear:
        cleared = manager.clear_summary(number, conversation_id)
        log.info("operator cli clear_summary number=%s conversation=%s cleared=%s",
                 mask_number(number), conversation_id, cleared)
        click.echo("summary cleared" if cleared else "no summary to clear")
        return
    summary = manager.get_summary(number, conversation_id)
    log.info("operator cli summary number=%s conversation=%s", mask_number(number), conversation_id)
    if as_json:
        _echo_json(summary_view(number, conversation_id, summary))
    elif summary is None or summary.text is None:
        click.echo(f"{conversation_id}: no summary")
    else:
        click.echo(f"{conversation_id}: covers {summary.count} messages, updated {summary.updated_at}")
        click.echo(summary.text)


@conversations.command("export")
@NUMBER
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@_store_errors
def export_command(number: str, output: str | None) -> None:
    """Export everything stored for NUMBER as JSON."""
    document = _manager().export_user(number)
    log.info("operator cli export number=%s", mask_number(number))
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        click.echo(f"wrote {len(document['conversations'])} conversations to {output}", err=True)
    else:
        click.echo(text)


@conversations.command("reset")
@NUMBER
@_store_errors
def reset_command(number: str) -> None:
    """Archive NUMBER's active conversation, exactly like texting "reset"."""
    archived = _manager().reset_conversation(number)
    log.info("operator cli reset number=%s conversation=%s", mask_number(number), archived or "-")
    click.echo(f"archived {archived}" if archived else "nothing to reset")


@conversations.command("erase")
@NUMBER
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_store_errors
def erase_command(number: str, yes: bool) -> None:
    """Erase everything stored for NUMBER (safe to repeat)."""
    if not yes:
        click.confirm(f"Erase every message and conversation of {number}?", abort=True)
    erased = _manager().erase_user(number)
    log.info("operator cli erase number=%s items=%d", mask_number(number), erased)
    click.echo(f"erased {erased} items")


def init_app(app: Flask) -> None:
    """Register the operator commands on the app."""
    app.cli.add_command(init_db)
    app.cli.add_command(conversations)
