"""svcbot console: the same words in a terminal, no credentials; messages it would send are shown."""
from __future__ import annotations

import sys

from sqlalchemy import func, select

from bot import render
from bot.runtime import Runtime
from handlers.core.context import Command
from handlers.core.people import console_actor
from handlers.router import dispatch
from storage.models import OutboxMessage

PROMPT = "svc> "


def run_console(runtime: Runtime, person_id: str | None, commands: list[str] | None = None) -> int:
    ctx = runtime.ctx
    actor = console_actor(ctx, person_id)
    interactive = commands is None and sys.stdin.isatty()
    # Typed commands are already on the screen; piped and -c ones are echoed, so a transcript shows
    # which answer belongs to which command.
    echo = not interactive
    if interactive:
        roles = ", ".join(sorted(r.replace("_", " ") for r in actor.roles)) or "no special role"
        print(f"{ctx.config.bot.name} console — you are {actor.name} ({roles}). "
              f"Type 'help', or 'quit' to leave. 'svcbot console --as PERSON' speaks as someone else.")
    with ctx.sessions() as s:
        seen = s.scalar(select(func.max(OutboxMessage.id))) or 0
    lines = iter(commands) if commands is not None else _stdin(interactive)
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if echo:
            print(f"{PROMPT}{line}")
        if line in ("quit", "exit"):
            break
        reply, _ = dispatch(ctx, Command(actor=actor, text=line))
        print(render.text(reply))
        seen = _show_outgoing(runtime, seen)
        print()
    return 0


def _stdin(interactive: bool):
    while True:
        try:
            yield input(PROMPT) if interactive else next(sys.stdin)
        except (EOFError, StopIteration):
            return
        except KeyboardInterrupt:
            print()
            return


def _show_outgoing(runtime: Runtime, seen: int) -> int:
    """Show what the last command queued for Slack and Teams (delivered by 'svcbot run')."""
    with runtime.ctx.sessions() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.id > seen).order_by(OutboxMessage.id)).all()
    for row in rows:
        where = f"@{row.target}" if row.target_kind == "person" else f"#{row.target}"
        what = {"edit": "an edit", "person": "a message"}.get(row.target_kind, "a thread reply" if row.anchor_key
                                                               else "a post")
        print(f"  → queued {what} for {row.platform.title()} {where}: {row.message['title']}")
    return rows[-1].id if rows else seen
