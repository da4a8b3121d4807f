"""LM Studio's model lists and error bodies, as the practice server sends them.

    >>> bad_request("no")
    {'error': 'no'}

Shapes follow what LM Studio sends (see /work/shared/reference/UPSTREAMS.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tlc_widgets.practice.settings import DESCRIPTION, ModelSpec

__all__ = [
    "CONTEXT_LENGTH",
    "bad_request",
    "model_not_found",
    "models_api_v0",
    "models_api_v1",
    "models_openai",
    "no_models_loaded",
    "server_error",
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
    """`GET /v1/models`."""
    data = [{"id": s.id, "object": "model", "owned_by": "organization_owner"} for s in specs]
    return {"object": "list", "data": data if loaded else []}


def models_api_v0(specs: Sequence[ModelSpec], loaded: bool) -> dict[str, Any]:
    """`GET /api/v0/models` (LM Studio 0.3.6+ native REST)."""
    return {
        "object": "list",
        "data": [
            {
                "id": s.id,
                "object": "model",
                "type": "llm",
                "publisher": "tlc",
                "arch": "markov",
                "compatibility_type": "gguf",
                "quantization": "none",
                "state": "loaded" if loaded else "not-loaded",
                "max_context_length": CONTEXT_LENGTH,
            }
            for s in specs
        ],
    }


def models_api_v1(specs: Sequence[ModelSpec], loaded: bool, parallel: int) -> dict[str, Any]:
    """`GET /api/v1/models` (LM Studio 0.4+): `parallel` is "Max Concurrent Predictions"."""
    return {
        "models": [
            {
                "type": "llm",
                "key": s.id,
                "display_name": s.display_name,
                "publisher": "tlc",
                "architecture": "markov",
                "quantization": None,
                "size_bytes": s.size_bytes,
                "params_string": None,
                "loaded_instances": (
                    [
                        {
                            "id": s.id,
                            "config": {"context_length": CONTEXT_LENGTH, "parallel": parallel},
                        }
                    ]
                    if loaded
                    else []
                ),
                "max_context_length": CONTEXT_LENGTH,
                "format": "gguf",
                "capabilities": {
                    "vision": False,
                    "trained_for_tool_use": False,
                    "reasoning": s.reasoning,
                },
                "description": DESCRIPTION,
            }
            for s in specs
        ]
    }
