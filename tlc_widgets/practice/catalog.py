"""LM Studio's model lists and error bodies, as the practice server sends them.

    >>> bad_request("no")
    {'error': 'no'}

Shapes follow what LM Studio sends (see /work/shared/reference/UPSTREAMS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tlc_widgets.practice.settings import DESCRIPTION, EMBED_DESCRIPTION, ModelSpec

__all__ = [
    "CONTEXT_LENGTH",
    "bad_request",
    "load_failed",
    "model_not_found",
    "models_api_v0",
    "models_api_v1",
    "models_openai",
    "native_error",
    "no_models_loaded",
    "not_loaded",
    "server_error",
    "wrong_kind",
]

CONTEXT_LENGTH = 8192


# -- errors -----------------------------------------------------------------------------------


def bad_request(message: str) -> dict[str, Any]:
    """LM Studio's terse form: the error is a bare string."""
    return {"error": message}


def model_not_found(name: str, available: Iterable[str]) -> dict[str, Any]:
    """400: the model name is not one the server offers."""
    return {
        "error": {
            "message": f'Model "{name}" not found. Available: {", ".join(available)}',
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def wrong_kind(name: str, kind: str) -> dict[str, Any]:
    """400: an embedding model asked to chat, or a chat model asked for embeddings."""
    what = (
        "an embedding model: it turns text into vectors"
        if kind == "embeddings"
        else ("a text model: it writes text, it does not make embeddings")
    )
    return {
        "error": {
            "message": f'Model "{name}" is {what}. Choose a model of the right type.',
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def not_loaded(name: str) -> dict[str, Any]:
    """404: the model exists but is not loaded, and JIT loading is off."""
    return {
        "error": {
            "message": f'Model "{name}" is not loaded, and loading on first use (JIT) is off. '
            "Load it first: `lms load` or POST /api/v1/models/load.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_loaded",
        }
    }


def load_failed(code: str, message: str) -> dict[str, Any]:
    """500 on the OpenAI endpoints: the model could not be loaded."""
    return {"error": {"message": message, "type": "server_error", "param": "model", "code": code}}


def native_error(kind: str, message: str, code: str | None = None) -> dict[str, Any]:
    """An error of LM Studio's native `/api/v1` API (also the `error` event's payload)."""
    error = {"type": kind, "message": message}
    return {"error": error | ({"code": code} if code else {})}


def no_models_loaded() -> dict[str, Any]:
    """404: LM Studio with nothing loaded (and JIT loading off)."""
    return {
        "error": {
            "message": "No models loaded. Please load a model in the developer page or use "
            "the `lms load` command.",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }


def server_error(message: str) -> dict[str, Any]:
    """A crash, mid-stream as a `data:` line or as a 500 body."""
    return {"error": {"message": message, "type": "server_error"}}


# -- model lists ------------------------------------------------------------------------------


def models_openai(specs: Sequence[ModelSpec], loaded: bool) -> dict[str, Any]:
    """`GET /v1/models`: every model LM Studio could serve (JIT loads the others)."""
    data = [{"id": s.id, "object": "model", "owned_by": "organization_owner"} for s in specs]
    return {"object": "list", "data": data if loaded else []}


def models_api_v0(specs: Sequence[ModelSpec], is_loaded: Callable[[str], bool]) -> dict[str, Any]:
    """`GET /api/v0/models` (LM Studio 0.3.6+ native REST)."""
    return {
        "object": "list",
        "data": [
            {
                "id": s.id,
                "object": "model",
                "type": "embeddings" if s.kind == "embeddings" else "llm",
                "publisher": "tlc",
                "arch": "markov" if s.kind == "llm" else "hashed-bag-of-words",
                "compatibility_type": "gguf",
                "quantization": "none",
                "state": "loaded" if is_loaded(s.id) else "not-loaded",
                "max_context_length": CONTEXT_LENGTH,
            }
            for s in specs
        ],
    }


def _v1_entry(spec: ModelSpec, instances: list[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "llm" if spec.kind == "llm" else "embedding",
        "key": spec.id,
        "display_name": spec.display_name,
        "publisher": "tlc",
        "architecture": "markov",
        "quantization": None,
        "size_bytes": spec.size_bytes,
        "params_string": None,
        "loaded_instances": instances,
        "max_context_length": CONTEXT_LENGTH,
        "format": "gguf",
        "capabilities": {
            "vision": False,
            "trained_for_tool_use": False,
            "reasoning": spec.reasoning,
        },
        "description": DESCRIPTION,
    }
    if spec.kind != "llm":
        # LM Studio leaves these out for embedding models; the display name says what it is.
        del entry["architecture"], entry["capabilities"]
        entry["description"] = EMBED_DESCRIPTION
    return entry


def models_api_v1(
    specs: Sequence[ModelSpec], instances: Callable[[str], list[dict[str, Any]]]
) -> dict[str, Any]:
    """`GET /api/v1/models` (LM Studio 0.4+): `parallel` is "Max Concurrent Predictions"."""
    return {"models": [_v1_entry(s, instances(s.id)) for s in specs]}
