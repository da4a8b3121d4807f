"""`%%chat`: send a cell to the queue and watch the reply arrive below it.

    %load_ext tlc_widgets

    %%chat --model practice-fast --max-tokens 80
    Tell me about the rabbit.

**The cell returns at once.** A cell magic is a plain function: it cannot `await`, and the
kernel's event loop is already running, so it cannot run one either. So `%%chat` displays
two outputs (the reply, and a status line under it) with `IPython.display` handles, starts
an asyncio task on the kernel's running loop, and returns. The task fills the outputs in
while the kernel is idle — your place in line, the reply as it grows (at most 4 updates a
second), then `done · …` — and other cells can run meanwhile.

Each update re-sends the reply so far (that is how display handles work), so for long
replies prefer `ChatPanel`, which sends only the new text. `%chat_stop` stops every reply
still running (the server frees the slot at once). The task of the last `%%chat` is
`tlc_widgets.widgets.magic.last_task`, for code that wants to `await` it.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import shlex
import time
from typing import Any

from IPython.display import display

from ..client import QueueClient, Submitted, TLCError, follow
from ..protocol import Delta, Event, Queued
from . import inflight
from .status import Phase, StatusTracker

__all__ = ["UPDATE_EVERY_S", "chat", "chat_stop", "last_task", "register"]

#: The reply's output is re-sent at most this often while it grows.
UPDATE_EVERY_S = 0.25

_tasks: set[asyncio.Task[str]] = set()  # referenced, so none is garbage-collected mid-reply
_client: QueueClient | None = None
last_task: asyncio.Task[str] | None = None


def register(ipython: Any) -> None:
    """Add `%%chat` and `%chat_stop` to an IPython shell (what `%load_ext tlc_widgets` does)."""
    ipython.register_magic_function(chat, magic_kind="cell", magic_name="chat")
    ipython.register_magic_function(chat_stop, magic_kind="line", magic_name="chat_stop")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%chat", add_help=False, exit_on_error=False)
    p.add_argument("--model", "-m", help="model id (default: the server's)")
    p.add_argument("--max-tokens", type=int, help="longest reply, in tokens")
    p.add_argument("--temperature", type=float, help="0 = predictable … 2 = wild")
    p.add_argument("--system", help="a system prompt")
    return p


def chat(line: str, cell: str) -> None:
    """`%%chat [--model M] [--max-tokens N] [--temperature T] [--system S]` + the prompt."""
    global last_task
    try:
        args = _parser().parse_args(shlex.split(line))
    except (argparse.ArgumentError, ValueError) as exc:
        print(f"%%chat: {exc}. Usage: %%chat [--model M] [--max-tokens N] [--temperature T]")
        return
    if not cell.strip():
        print("%%chat: the cell is empty; write the prompt under the %%chat line.")
        return
    reply = display(_markdown(""), raw=True, display_id=True)  # type: ignore[no-untyped-call]
    status = display(_status("sending…"), raw=True, display_id=True)  # type: ignore[no-untyped-call]
    task = asyncio.get_running_loop().create_task(_converse(cell.strip(), args, reply, status))
    _tasks.add(task)
    task.add_done_callback(_forget)
    last_task = task


def chat_stop(line: str = "") -> None:
    """`%chat_stop`: stop every `%%chat` reply still running."""
    for task in list(_tasks):
        task.cancel()


async def _converse(prompt: str, args: argparse.Namespace, reply: Any, status: Any) -> str:
    """One `%%chat` cell's request, followed by `follow()` (its cancel rule: `%chat_stop`
    cancels on the server; a `cancelled` event raises `RequestCancelled`)."""
    client = _shared_client()
    tracker = StatusTracker()
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": prompt})
    parts: list[str] = []
    shown_at = 0.0
    accepted: list[str] = []

    def on_accepted(submitted: Submitted) -> None:
        accepted.append(submitted.id)
        inflight.track(client.url, submitted.id)  # the kernel's exit hook cancels it
        queued = Queued(submitted.position, submitted.waiting, submitted.eta_s)
        status.update(_status(tracker.update(queued).text), raw=True)

    def on_event(event: Event) -> None:
        nonlocal shown_at
        progress = tracker.update(event)
        if isinstance(event, Delta):
            parts.append(event.content or "")
            if time.monotonic() - shown_at < UPDATE_EVERY_S:
                return  # coalesce: the next update carries these tokens too
            shown_at = time.monotonic()
            reply.update(_markdown("".join(parts)), raw=True)
        status.update(_status(progress.text), raw=True)

    try:
        return (
            await follow(
                client,
                on_accepted=on_accepted,
                on_event=on_event,
                messages=messages,
                model=args.model,
                max_tokens=args.max_tokens,
                temperature=args.temperature,
            )
        ).text
    except TLCError as exc:
        if tracker.progress.phase not in (Phase.ERROR, Phase.STOPPED):
            status.update(_status(tracker.fail(exc).text), raw=True)  # refused at the door
        raise
    except asyncio.CancelledError:
        status.update(_status(tracker.stopped().text), raw=True)
        raise
    finally:
        for request_id in accepted:
            inflight.untrack(request_id)  # it ended, or follow() cancelled it
        reply.update(_markdown("".join(parts)), raw=True)


def _shared_client() -> QueueClient:
    """One client for all `%%chat` cells, made on first use (after `ensure_server()` ran)."""
    global _client
    if _client is None:
        _client = QueueClient()
    return _client


def _forget(task: asyncio.Task[str]) -> None:
    _tasks.discard(task)
    if not task.cancelled():
        task.exception()  # already shown in the status output


def _markdown(text: str) -> dict[str, str]:
    return {"text/markdown": text or "…", "text/plain": text or "…"}


def _status(text: str) -> dict[str, str]:
    style = "color: var(--jp-ui-font-color2); font-size: var(--jp-ui-font-size1)"
    return {"text/html": f'<div style="{style}">{html.escape(text)}</div>', "text/plain": text}
