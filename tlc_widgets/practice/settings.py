"""How the practice model server is configured, and which practice models it offers.

    >>> PracticeSettings(port=1235, parallel=2).parallel
    2

Every field can also come from an environment variable (`TLC_PRACTICE_PARALLEL=2`) or from a
`.env` file in the working directory, so a lesson can change the server without code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BUILTIN_MODELS", "DESCRIPTION", "EMBED_DESCRIPTION", "ModelSpec", "PracticeSettings"]

#: Said wherever a model is listed, so nobody mistakes the practice model for a real LLM.
DESCRIPTION = "practice model (statistical text generator, not an LLM)"
#: The same for the embedding model: its vectors count words, they do not capture meaning.
EMBED_DESCRIPTION = "practice embeddings (hashed bag of words, not semantic)"


@dataclass(frozen=True)
class ModelSpec:
    """One built-in practice model: its name, its speed and whether it "thinks" first.

    >>> BUILTIN_MODELS[0].id, BUILTIN_MODELS[0].tokens_per_second
    ('practice-small', 20.0)
    """

    id: str
    display_name: str
    tokens_per_second: float
    first_token_latency_s: float
    reasoning: bool = False
    #: A pretend file size, so `/api/v1/models` looks like a real catalogue.
    size_bytes: int = 1_000_000
    #: "llm" writes text; "embeddings" only turns text into vectors (LM Studio's types).
    kind: str = "llm"


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    # First listed, so lessons get it by default: a human pace, so that students see the
    # answer stream, their place in the queue and the Stop button at work.
    ModelSpec("practice-small", "Practice Small — " + DESCRIPTION, 20.0, 0.3),
    # Fast, for tests and benchmarks that ask for it by name.
    ModelSpec("practice-fast", "Practice Fast — " + DESCRIPTION, 120.0, 0.05),
    ModelSpec("practice-thinker", "Practice Thinker — " + DESCRIPTION, 30.0, 0.3, reasoning=True),
    ModelSpec(
        "practice-embed",
        "Practice Embed — " + EMBED_DESCRIPTION,
        0.0,
        0.0,
        size_bytes=100_000,
        kind="embeddings",
    ),
)


class PracticeSettings(BaseSettings):
    """Settings of the practice server (env prefix `TLC_PRACTICE_`, `.env` is read too).

    >>> PracticeSettings(tokens_per_second=0).tokens_per_second   # no delays: for benchmarks
    0.0
    """

    model_config = SettingsConfigDict(env_prefix="TLC_PRACTICE_", env_file=".env", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Network address to listen on.")
    port: int = Field(default=1234, description="TCP port to listen on (LM Studio uses 1234 too).")
    tokens_per_second: float | None = Field(
        default=None,
        description=(
            "How fast every model writes. Empty: each model keeps its own speed. "
            "0: no delay at all (for benchmarks)."
        ),
    )
    first_token_latency_s: float | None = Field(
        default=None,
        description=(
            "Seconds of 'thinking about the prompt' before the first word. Empty: each "
            "model's own delay. 0: none."
        ),
    )
    parallel: int = Field(
        default=4,
        ge=1,
        description=(
            "How many answers one model writes at the same time (LM Studio's 'Max Concurrent "
            "Predictions'). Further requests wait in line, first come first served."
        ),
    )
    fail_after_tokens: int | None = Field(
        default=None, ge=0, description="Practice fault: after this many words, report a crash."
    )
    stall_after_tokens: int | None = Field(
        default=None, ge=0, description="Practice fault: after this many words, go silent forever."
    )
    drop_after_tokens: int | None = Field(
        default=None, ge=0, description="Practice fault: after this many words, cut the connection."
    )
    truncate_after_tokens: int | None = Field(
        default=None,
        ge=0,
        description="Practice fault: after this many words, end the answer without saying why.",
    )
    no_models_loaded: bool = Field(
        default=False,
        description="Practice fault: act as if no model were loaded (LM Studio's error).",
    )
    loaded_at_start: list[str] | None = Field(
        default=None,
        description=(
            "Which models are loaded when the server starts, like LM Studio after `lms load`. "
            "Empty: all of them. [] : none, so the first request loads its model (JIT)."
        ),
    )
    jit_loading: bool = Field(
        default=True,
        description="Load a model that is not loaded when a request asks for it (LM Studio's JIT).",
    )
    default_load_time_s: float = Field(
        default=3.0, ge=0, description="Seconds a model takes to load (progress is reported)."
    )
    default_ttl_s: float | None = Field(
        default=3600.0,
        ge=0,
        description=(
            "A model loaded on first use unloads after this many idle seconds (LM Studio's JIT "
            "TTL, 60 min). A request's `ttl` field overrides it. Empty: never."
        ),
    )
    load_failure: Literal["out_of_memory", "timeout"] | None = Field(
        default=None,
        description='Practice fault: loads fail, with "out_of_memory" or "timeout".',
    )
    load_time_s: float | None = Field(
        default=None, ge=0, description="Practice fault: loads take this long instead."
    )
    models: list[str] | None = Field(
        default=None,
        description=(
            'Which built-in practice models to offer, e.g. ["practice-fast"]. Empty: all of them.'
        ),
    )

    def offered_models(self) -> tuple[ModelSpec, ...]:
        """The built-in models this server offers, in catalogue order.

        >>> [m.id for m in PracticeSettings(models=["practice-small"]).offered_models()]
        ['practice-small']
        """
        if self.models is None:
            return BUILTIN_MODELS
        known = {m.id for m in BUILTIN_MODELS}
        unknown = [name for name in self.models if name not in known]
        if unknown:
            raise ValueError(f"unknown practice models {unknown}; built in: {sorted(known)}")
        return tuple(m for m in BUILTIN_MODELS if m.id in self.models)
