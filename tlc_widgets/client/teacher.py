"""`ClassClient`: a `QueueClient` that also speaks the teacher's API (`/api/class/*`).

    >>> async with ClassClient() as client:                       # doctest: +SKIP
    ...     live = await client.live()          # who runs, who waits, for how long
    ...     await client.pause("Chat is paused for the quiz until 10:30")
    ...     path = await client.export("csv", Path("class.csv"))

Same server, same identity as the chat panel (`TLC_SERVER_URL`; `TLC_API_KEY`, else the
single-user server's Hub token): a student's calls get `AccessDenied` (403 `forbidden`).
The routes are documented in `tlc_widgets/server/routes/teacher.py` and docs/classroom.md.

    >>> export_name("csv", day="2026-11-29")
    'tlc-class-2026-11-29.csv'
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote

import httpx

from ..errors import ServerUnavailable, error_from_response
from .queue_client import QueueClient

__all__ = ["ClassClient", "ExportFormat", "export_name"]

ExportFormat = Literal["jsonl", "csv"]


def export_name(fmt: ExportFormat, day: str | None = None) -> str:
    """The file name an export gets (the server's own name for it)."""
    return f"tlc-class-{day or time.strftime('%Y-%m-%d')}.{fmt}"


class ClassClient(QueueClient):
    """The teacher's calls. Each returns the server's JSON answer (see the routes)."""

    async def state(self) -> dict[str, Any]:
        """The class: mode, message, class prompts, budgets, the notice."""
        return cast(dict[str, Any], await self._call("GET", "/api/class"))

    async def live(self) -> dict[str, Any]:
        """Running (for how long) then waiting (place in line, for how long)."""
        return cast(dict[str, Any], await self._call("GET", "/api/class/live"))

    async def students(self) -> dict[str, Any]:
        """Per user today: prompts, reply tokens, errors, live requests, budget left."""
        return cast(dict[str, Any], await self._call("GET", "/api/class/students"))

    async def student_history(self, user: str, limit: int = 20) -> list[dict[str, Any]]:
        """A student's conversations, newest first."""
        path = f"/api/class/students/{quote(user, safe='')}/history"
        answer = await self._call("GET", path, params={"limit": limit})
        return cast(list[dict[str, Any]], answer["requests"])

    async def pause(self, message: str) -> dict[str, Any]:
        """Refuse what students send (423 `class_paused`, with `message`)."""
        return cast(
            dict[str, Any], await self._call("POST", "/api/class/pause", json={"message": message})
        )

    async def resume(self) -> dict[str, Any]:
        """Students chat again."""
        return cast(dict[str, Any], await self._call("POST", "/api/class/resume"))

    async def set_prompt(self, text: str, model: str | None = None) -> dict[str, Any]:
        """The class prompt for `model` (None: all models); "" removes it."""
        body = {"text": text, "model": model}
        return cast(dict[str, Any], await self._call("PUT", "/api/class/prompt", json=body))

    async def set_budget(
        self, prompts: int, tokens: int, user: str | None = None
    ) -> dict[str, Any]:
        """The daily budget of the class (`user` None) or of one student; 0: unlimited."""
        path = "/api/class/budget" + (f"/{quote(user, safe='')}" if user else "")
        body = {"prompts": prompts, "tokens": tokens}
        return cast(dict[str, Any], await self._call("PUT", path, json=body))

    async def reset_budget(self, user: str) -> dict[str, Any]:
        """The student goes back to the class's budget."""
        path = f"/api/class/budget/{quote(user, safe='')}"
        return cast(dict[str, Any], await self._call("DELETE", path))

    async def start_session(self, label: str = "") -> dict[str, Any]:
        """Budgets count per session from now, from zero, until `end_session`."""
        body = {"label": label}
        return cast(dict[str, Any], await self._call("POST", "/api/class/session", json=body))

    async def end_session(self) -> dict[str, Any]:
        """Back to daily budgets (with the day's counts)."""
        return cast(dict[str, Any], await self._call("DELETE", "/api/class/session"))

    async def cancel_any(self, request_id: str) -> bool:
        """Cancel anyone's live request (its stream ends `cancelled` by `teacher`)."""
        path = f"/api/class/requests/{quote(request_id, safe='')}"
        return bool((await self._call("DELETE", path))["cancelled"])

    async def export(self, fmt: ExportFormat, path: Path, since: str | None = None) -> int:
        """Write the class's history (since `since`: a date, date-time or Unix time) to
        `path`; returns the bytes written. A refused export writes nothing."""
        params = {"format": fmt} | ({"since": since} if since else {})
        request = self._http.build_request(
            "GET", "/api/class/export", params=params, timeout=self._stream_timeout
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise ServerUnavailable(self.url) from exc
        written = 0
        # A part file, renamed at the end: a broken export never looks like a whole one.
        part = path.with_name(path.name + ".part")
        try:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
            with part.open("wb") as out:  # small writes to a local disk: not worth a thread
                async for chunk in response.aiter_bytes():
                    written += out.write(chunk)
            part.replace(path)
        except httpx.TransportError as exc:
            raise ServerUnavailable(self.url) from exc
        finally:
            part.unlink(missing_ok=True)
            await response.aclose()
        return written
