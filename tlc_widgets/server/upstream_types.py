"""What an upstream call gives back, and how it fails: the upstream's plain data types.

>>> Timeouts().first_token_s, ModelInfo(parallel=4).loaded
(300.0, True)
>>> UpstreamFailure(ErrorCode.UPSTREAM_TIMEOUT, "no first token in 300 s").code.value
'upstream_timeout'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..protocol import ErrorCode

__all__ = ["ModelInfo", "StreamResult", "Timeouts", "UpstreamFailure"]


class UpstreamFailure(Exception):
    """An upstream call failed; `code` says how, `detail` what the upstream said."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ModelInfo:
    loaded: bool = True
    parallel: int | None = None  #: None: the upstream did not say; use the upstream's slots
    instances: tuple[str, ...] = ()  #: LM Studio's loaded instance ids (to unload them)
    kind: str = "llm"  #: LM Studio's type: llm, vlm or embeddings
    created: int | None = None  #: as the upstream's /v1/models says, when it says
    owned_by: str | None = None


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    first_token_s: float = 300.0
    stall_s: float = 60.0


@dataclass(slots=True)
class StreamResult:
    finish_reason: str
    usage: dict[str, Any] | None
