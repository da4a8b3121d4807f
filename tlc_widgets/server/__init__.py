"""The queue server: `create_app(settings)` gives the ASGI app that `tlc serve` runs."""

from .app import create_app

__all__ = ["create_app"]
