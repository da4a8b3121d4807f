"""Fault injection: make the practice model misbehave on purpose, the way real servers do.

    >>> faults = Faults(fail_after_tokens=3)
    >>> faults.updated({"fail_after_tokens": None, "stall_after_tokens": 5}).as_dict()
    {'fail_after_tokens': None, 'stall_after_tokens': 5, 'drop_after_tokens': None, \
'truncate_after_tokens': None, 'no_models_loaded': False, 'load_failure': None, \
'load_time_s': None}

Each `*_after_tokens` fault fires once a stream has sent that many tokens (reasoning tokens
count too). What a client sees:

* fail     — an OpenAI-style `data: {"error": …}` line, then the stream ends (non-streaming: 500);
* stall    — nothing more, ever, until the client gives up;
* drop     — the TCP connection is torn down in the middle of the chunked response;
* truncate — the stream ends tidily but without `finish_reason` and without `[DONE]`;
* no_models_loaded — LM Studio's "No models loaded" error and empty model lists;
* load_failure — the next model loads fail: "out_of_memory" (soon after starting) or
  "timeout" (after the load time); `load_time_s` changes how long loads take.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlc_widgets.practice.settings import PracticeSettings

__all__ = ["FAIL_MESSAGE", "LOAD_FAILURES", "Faults"]

#: The load failures the practice model can fake (None: loads work).
LOAD_FAILURES = (None, "out_of_memory", "timeout")

FAIL_MESSAGE = "Model crashed (practice fault: fail_after_tokens)"

_COUNTS = ("fail_after_tokens", "stall_after_tokens", "drop_after_tokens", "truncate_after_tokens")


@dataclass(frozen=True)
class Faults:
    """Which faults are switched on. Frozen: a running stream keeps the faults it started with."""

    fail_after_tokens: int | None = None
    stall_after_tokens: int | None = None
    drop_after_tokens: int | None = None
    truncate_after_tokens: int | None = None
    no_models_loaded: bool = False
    #: A model load fails: "out_of_memory" at once-ish, or "timeout" after the load time.
    load_failure: str | None = None
    #: Loads take this many seconds (None: the setting `default_load_time_s`).
    load_time_s: float | None = None

    @classmethod
    def from_settings(cls, settings: PracticeSettings) -> Faults:
        """The faults switched on by settings (env vars, `.env`) at start-up."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with `changes` applied; fields not named keep their value, `None` clears.

        Raises `ValueError` with a sentence a student can act on for unknown names or bad values.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {sorted(names)}")
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "no_models_loaded":
                if value is None:
                    value = False
                if not isinstance(value, bool):
                    raise ValueError("no_models_loaded must be true, false or null")
            elif name == "load_failure":
                if value not in LOAD_FAILURES:
                    raise ValueError(f"load_failure must be one of {LOAD_FAILURES}")
            elif name == "load_time_s":
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float) or value < 0
                ):
                    raise ValueError("load_time_s must be a number of seconds ≥ 0, or null")
            elif value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"{name} must be a whole number ≥ 0, or null to switch it off")
            clean[name] = value
        return replace(self, **clean)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape used by `GET/PUT /practice/faults`."""
        return asdict(self)

    def first_stream_fault(self) -> tuple[str, int] | None:
        """The stream fault that fires first, as `(name, after_tokens)`, or None.

        >>> Faults(stall_after_tokens=9, fail_after_tokens=2).first_stream_fault()
        ('fail_after_tokens', 2)
        """
        armed = [
            (getattr(self, n), i, n) for i, n in enumerate(_COUNTS) if getattr(self, n) is not None
        ]
        if not armed:
            return None
        count, _, name = min(armed)
        return name, count
