"""What can go wrong with shared state, in words the service can pass on.

>>> str(StoreUnavailable("redis://127.0.0.1:6390"))
'The shared queue store (redis://127.0.0.1:6390) is not answering; try again in a moment.'
"""

from __future__ import annotations

__all__ = ["LeaseLost", "StoreError", "StoreUnavailable"]


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """Redis did not answer: down, restarting, loading its data, or unreachable. The service
    answers 503 (and the request may be retried); nothing was changed by the failed step
    unless Redis ran it and the reply was lost, which a Lua step makes all-or-nothing."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"The shared queue store ({where}) is not answering; try again in a moment."
        )
        self.where = where


class LeaseLost(StoreError):
    """A slot lease ran out before it was renewed (this replica paused, or Redis lost it):
    another replica may already use that slot, so the stream holding it must stop."""
