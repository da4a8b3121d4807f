"""Limits at the door: body size, conversation shape, allowed models, and per-user rates.

    >>> rates = RateLimiter({Role.STUDENT: Rate(rpm=2, tpm=0)}, clock=lambda: 0.0)
    >>> rates.admit("ada", Role.STUDENT, prompt_tokens=5)
    >>> rates.admit("ada", Role.STUDENT, prompt_tokens=5)
    >>> rates.retry_after("ada", Role.STUDENT)      # the first leaves the window at t = 60 s
    60

Each refusal names the field and the limit: `payload_too_large` (413) for the body,
`invalid_request` for too many messages, `prompt_too_long` for one message too long,
`model_not_found` naming the allowed models, `rate_limited` (429 + `Retry-After`) for rates.

**Rates** are sliding one-minute windows per user: requests per minute (accepted ones), and
tokens per minute = the prompt (≈ characters / 4, counted on acceptance) plus the reply
(counted when it ends). 0 means unlimited. Without keys nothing is limited unless a setting
says so; with keys, roles get `KEYED_DEFAULTS` for every rate left unset.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..protocol import ErrorCode, RequestBody, error_body
from .api_error import ApiError
from .auth import Role

__all__ = [
    "KEYED_DEFAULTS",
    "BodyLimitMiddleware",
    "Rate",
    "RateLimiter",
    "check_conversation",
    "estimate_tokens",
]

WINDOW_S = 60.0


# ---------------------------------------------------------------------------- body size


class _TooLarge(Exception):
    """Raised into the app from `receive`: stop reading, the answer is 413."""


class BodyLimitMiddleware:
    """Pure ASGI: answer 413 once a body passes `max_bytes`, counting the bytes as they come.

    `Content-Length` alone is not enough: a chunked upload has none, and a client may lie.
    When the count passes the limit mid-read, whatever the app answers to its broken read is
    dropped and replaced by the 413.

    Before answering, the rest of the body is read and thrown away (up to `DRAIN_BYTES`):
    an HTTP/1.1 client sends its whole body before it reads, and a server that hangs up on
    unread bytes makes the client see a reset connection instead of the 413's sentence.
    """

    DRAIN_BYTES = 64 * 1_048_576  #: past this, hang up: the client gets no sentence

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            drain = int(declared) <= self.DRAIN_BYTES
            await self._refuse(scope, receive, send, read_all=not drain or await _drain(receive))
            return
        received, over, started, read_all = 0, False, False, False

        async def counting_receive() -> Message:
            nonlocal received, over, read_all
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over, read_all = True, not message.get("more_body", False)
                    raise _TooLarge
            return message

        async def send_unless_over(message: Message) -> None:
            nonlocal started
            if over:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, send_unless_over)
        except Exception:
            if not over:
                raise
        if over and not started:
            read_all = read_all or await _drain(receive, self.DRAIN_BYTES - received)
            await self._refuse(scope, receive, send, read_all)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, read_all: bool) -> None:
        detail = f"The limit is {self.max_bytes} bytes ({self.max_bytes / 1_048_576:.1f} MB)."
        body = error_body(ErrorCode.PAYLOAD_TOO_LARGE, detail, "body")
        # A body not read to its end leaves the connection unusable for another request.
        headers = None if read_all else {"Connection": "close"}
        await JSONResponse(body, 413, headers=headers)(scope, receive, send)


async def _drain(receive: Receive, budget: int = BodyLimitMiddleware.DRAIN_BYTES) -> bool:
    """Read and discard the rest of a body; True if it ended within `budget` bytes."""
    while budget >= 0:
        message = await receive()
        if message["type"] != "http.request":
            return False  # the client left
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


# ---------------------------------------------------------------------------- conversation


def estimate_tokens(characters: int) -> int:
    """A prompt's tokens before any tokenizer sees it: about four characters each."""
    return math.ceil(characters / 4)


def check_conversation(body: RequestBody, settings: Settings) -> None:
    """Raise `ApiError` naming the field and the limit if the conversation is too big."""
    messages = body.chat_messages()
    if len(messages) > settings.max_messages:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"messages: at most {settings.max_messages} messages are allowed; "
            f"this conversation has {len(messages)}.",
            param="messages",
        )
    for n, message in enumerate(messages):
        length = len(message.text())
        if length > settings.max_message_chars:
            where = "prompt" if body.prompt is not None else f"messages.{n}.content"
            raise ApiError(
                ErrorCode.PROMPT_TOO_LONG,
                f"{where} has {length} characters; the limit is "
                f"{settings.max_message_chars} per message.",
                param=where,
            )


# ---------------------------------------------------------------------------- rates


@dataclass(frozen=True, slots=True)
class Rate:
    rpm: int = 0  #: requests per minute; 0 = unlimited
    tpm: int = 0  #: tokens per minute; 0 = unlimited


#: Rates of a role when keys are on and its settings are left unset.
KEYED_DEFAULTS = {
    Role.STUDENT: Rate(rpm=10, tpm=20_000),
    Role.TEACHER: Rate(rpm=60, tpm=200_000),
    Role.ADMIN: Rate(rpm=0, tpm=0),
}


@dataclass(slots=True)
class _Window:
    requests: deque[float] = field(default_factory=deque)  #: acceptance times
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  #: (time, tokens)


class RateLimiter:
    """Per-user sliding windows, checked on admission. All in memory, O(window) per call."""

    def __init__(
        self, rates: dict[Role, Rate], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rates = rates
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    @classmethod
    def from_settings(cls, settings: Settings, keys_on: bool) -> RateLimiter:
        rates = {}
        for role in Role:
            default = KEYED_DEFAULTS[role] if keys_on else Rate()
            rpm = getattr(settings, f"rate_{role.value}_rpm")
            tpm = getattr(settings, f"rate_{role.value}_tpm")
            rates[role] = Rate(
                rpm=default.rpm if rpm is None else rpm, tpm=default.tpm if tpm is None else tpm
            )
        return cls(rates)

    def _window(self, user: str) -> _Window:
        window = self._windows.setdefault(user, _Window())
        horizon = self._clock() - WINDOW_S
        while window.requests and window.requests[0] <= horizon:
            window.requests.popleft()
        while window.tokens and window.tokens[0][0] <= horizon:
            window.tokens.popleft()
        return window

    def retry_after(self, user: str, role: Role) -> int | None:
        """Seconds until the windows let one more request in; None if it may go now."""
        rate = self.rates.get(role, Rate())
        if not rate.rpm and not rate.tpm:
            return None
        window, now, waits = self._window(user), self._clock(), []
        if rate.rpm and len(window.requests) >= rate.rpm:
            # One more fits once all but rpm - 1 of the requests in the window have left it.
            waits.append(window.requests[len(window.requests) - rate.rpm] + WINDOW_S - now)
        spent = sum(n for _, n in window.tokens)
        if rate.tpm and spent >= rate.tpm:
            for at, n in window.tokens:  # oldest first: find when the sum drops below tpm
                spent -= n
                if spent < rate.tpm:
                    waits.append(at + WINDOW_S - now)
                    break
        return max(1, math.ceil(max(waits))) if waits else None

    def admit(self, user: str, role: Role, prompt_tokens: int) -> None:
        """Count an accepted request, or raise `rate_limited` with its Retry-After."""
        rate = self.rates.get(role, Rate())
        if not rate.rpm and not rate.tpm:
            return  # unlimited: keep no window, so the common case costs nothing
        wait = self.retry_after(user, role)
        if wait is not None:
            limits = ", ".join(
                f"{n} {unit} per minute"
                for n, unit in ((rate.rpm, "requests"), (rate.tpm, "tokens"))
                if n
            )
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"The limit for a {role.value} is {limits}; try again in {wait} s.",
                retry_after=wait,
            )
        window, now = self._window(user), self._clock()
        window.requests.append(now)
        if prompt_tokens:
            window.tokens.append((now, prompt_tokens))

    def spend(self, user: str, tokens: int) -> None:
        """Count a finished reply's tokens against its user."""
        if tokens and user in self._windows:
            self._window(user).tokens.append((self._clock(), tokens))
