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

import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import Settings
from ..protocol import ErrorCode, Message, RequestBody
from .api_error import ApiError
from .auth import Role
from .body_limit import BodyLimitMiddleware  # re-exported: app.py imports it from here

__all__ = [
    "KEYED_DEFAULTS",
    "BodyLimitMiddleware",
    "Rate",
    "RateLimiter",
    "check_conversation",
    "check_user",
    "conversation_size",
    "estimate_tokens",
    "message_size",
    "parse_last_event_id",
]

WINDOW_S = 60.0


# ---------------------------------------------------------------------------- conversation


def estimate_tokens(characters: int) -> int:
    """A prompt's tokens before any tokenizer sees it: about four characters each."""
    return math.ceil(characters / 4)


def _json_size(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def message_size(message: Message) -> int:
    """What a message weighs against the prompt limits and the token estimate, in
    characters: its text, plus everything else it carries — parts of any other type (an
    image's data URI, a misspelt type), extra keys in a part, extra fields of the message.

    >>> message_size(Message(role="user", content="Hello"))
    5
    >>> image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 900}}
    >>> message_size(Message(role="user", content=[{"type": "text", "text": "Hi"}, image]))
    967
    """
    content, size = message.content, 0
    if isinstance(content, str):
        size = len(content)
    elif content:
        for part in content:
            text = part.get("text")
            if part.get("type") == "text" and isinstance(text, str) and len(part) == 2:
                size += len(text)  # a plain text part: its text, as before
            else:
                size += _json_size(part)  # anything else counts whole, as it travels
    if message.model_extra:
        size += _json_size(message.model_extra)
    return size


def conversation_size(messages: list[Message]) -> int:
    """`message_size` summed: what admission compares with `max_prompt_chars`."""
    return sum(message_size(m) for m in messages)


def check_user(user: str | None, param: str = "user") -> None:
    """Refuse a declared user name with control characters or line breaks (they would
    forge lines in the server log and in exports).

    >>> check_user("Ada Lovelace")
    >>> check_user("ada" + chr(10) + "INFO request id=x state=done user=root")
    Traceback (most recent call last):
    ...
    tlc_widgets.server.api_error.ApiError: invalid_request: user: a name may not ...
    """
    if user is not None and not user.isprintable():
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"{param}: a name may not hold line breaks or control characters.",
            param=param,
        )


#: Event ids are small counters; a cap far below Python's 4,300-digit int() limit.
MAX_EVENT_ID_DIGITS = 64


def parse_last_event_id(value: str) -> int:
    """The `Last-Event-ID` header as a number, or `ApiError(invalid_request)` naming it.

    >>> parse_last_event_id(" 42 ")
    42
    >>> parse_last_event_id("9" * 4301)
    Traceback (most recent call last):
    ...
    tlc_widgets.server.api_error.ApiError: invalid_request: Last-Event-ID must be ...
    """
    text = value.strip()
    # isascii + isdecimal: "²" is a digit to isdigit() and "١٢" decimal, neither is ASCII.
    if not text or len(text) > MAX_EVENT_ID_DIGITS or not (text.isascii() and text.isdecimal()):
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "Last-Event-ID must be a whole number of at most "
            f"{MAX_EVENT_ID_DIGITS} digits: the id of the last event you got.",
            param="Last-Event-ID",
        )
    return int(text)


def check_conversation(body: RequestBody, settings: Settings) -> None:
    """Raise `ApiError` naming the field and the limit if the conversation is too big, or
    its declared user has control characters."""
    check_user(body.user)
    messages = body.chat_messages()
    if len(messages) > settings.max_messages:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"messages: at most {settings.max_messages} messages are allowed; "
            f"this conversation has {len(messages)}.",
            param="messages",
        )
    for n, message in enumerate(messages):
        length = message_size(message)
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

    @property
    def empty(self) -> bool:
        return not self.requests and not self.tokens


class RateLimiter:
    """Per-user sliding windows, checked on admission. All in memory, O(window) per call."""

    def __init__(
        self, rates: dict[Role, Rate], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rates = rates
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._admitted = 0
        #: with --redis: per user, [requests, tokens] counted here since the last sync
        #: (shared_rates.py tells the other replicas); None: this process alone
        self.unsent: dict[str, list[int]] | None = None

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
        self._note(user, 1, prompt_tokens)
        self._admitted += 1
        if self._admitted % 1024 == 0:  # users idle for a minute are forgotten: bounded memory
            for idle in [u for u in list(self._windows) if self._window(u).empty]:
                del self._windows[idle]

    def spend(self, user: str, tokens: int) -> None:
        """Count a finished reply's tokens against its user."""
        if tokens and user in self._windows:
            self._window(user).tokens.append((self._clock(), tokens))
            self._note(user, 0, tokens)

    def _note(self, user: str, requests: int, tokens: int) -> None:
        if self.unsent is not None:
            counts = self.unsent.setdefault(user, [0, 0])
            counts[0] += requests
            counts[1] += tokens

    def add_elsewhere(self, user: str, requests: int, tokens: int) -> None:
        """What another replica admitted for `user` (with --redis): in the windows as of now.

        >>> rates = RateLimiter({Role.STUDENT: Rate(rpm=2)}, clock=lambda: 0.0)
        >>> rates.add_elsewhere("ada", requests=2, tokens=0)
        >>> rates.retry_after("ada", Role.STUDENT)
        60
        """
        window, now = self._window(user), self._clock()
        window.requests.extend([now] * requests)
        if tokens:
            window.tokens.append((now, tokens))
