"""Practice embeddings: hashed bag-of-words vectors (deterministic, L2-normalised, not semantic).

    >>> a, b = vector("the White Rabbit", 64), vector("rabbit, the WHITE!", 64)
    >>> round(sum(x * y for x, y in zip(a, b)), 3)    # same words: similarity 1
    1.0

Each word (lower case, letters and digits) is hashed to a position and a sign; the vector
counts the words and is scaled to length 1. Texts that share words point the same way; texts
that mean the same in other words do not — that is the lesson: real embedding models learn
meaning, this one only counts. Token arrays (lists of integers) count each token id as a word.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Sequence
from typing import Any

from tlc_widgets.practice.text import normal

__all__ = [
    "DEFAULT_DIMENSIONS",
    "EmbeddingError",
    "EmbeddingRequest",
    "parse_embedding_request",
    "response",
    "vector",
]

DEFAULT_DIMENSIONS = 384
_MAX_DIMENSIONS = 4096


class EmbeddingError(ValueError):
    """The body is not a valid embeddings request; the message says what to change."""


def _features(text: str | Sequence[int]) -> list[str]:
    if isinstance(text, str):
        return [w for w in (normal(raw) for raw in text.split()) if w]
    return [f"#{token}" for token in text]


def vector(text: str | Sequence[int], dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The practice embedding of `text` (all zeros for a text without words)."""
    out = [0.0] * dimensions
    for feature in _features(text):
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        h = int.from_bytes(digest, "big")
        out[h % dimensions] += 1.0 if (h >> 63) else -1.0
    norm = math.sqrt(sum(x * x for x in out))
    return [x / norm for x in out] if norm else out


class EmbeddingRequest:
    """The fields of `POST /v1/embeddings` the practice model uses."""

    def __init__(
        self, model: str, inputs: list[str | list[int]], base64_: bool, dimensions: int
    ) -> None:
        self.model, self.inputs, self.base64, self.dimensions = model, inputs, base64_, dimensions


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def parse_embedding_request(body: Any, default_model: str) -> EmbeddingRequest:
    """Check a decoded body: `input` a string, strings, a token array or token arrays."""
    if not isinstance(body, dict):
        raise EmbeddingError("The request body must be a JSON object.")
    raw = body.get("input")
    inputs: list[str | list[int]]
    if isinstance(raw, str) or (_is_tokens(raw) and raw):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) or _is_tokens(x) for x in raw):
        inputs = list(raw)
    else:
        raise EmbeddingError(
            "'input' must be a string, an array of strings, or an array of token arrays."
        )
    if any(isinstance(x, str) and not x for x in inputs):
        raise EmbeddingError("'input' cannot contain an empty string.")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64", None):
        raise EmbeddingError('\'encoding_format\' must be "float" or "base64".')
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= _MAX_DIMENSIONS
    ):
        raise EmbeddingError(f"'dimensions' must be a whole number from 1 to {_MAX_DIMENSIONS}.")
    model = body.get("model") or default_model
    if not isinstance(model, str):
        raise EmbeddingError("'model' must be a string.")
    return EmbeddingRequest(model, inputs, fmt == "base64", dimensions)


def _encoded(values: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return values
    # OpenAI's base64 is the little-endian float32 array; the openai client decodes it so.
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def response(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    """OpenAI's embeddings list, with the word count as `usage`."""
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _encoded(vector(text, request.dimensions), request.base64),
        }
        for i, text in enumerate(request.inputs)
    ]
    tokens = sum(len(_features(text)) for text in request.inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
