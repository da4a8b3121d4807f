"""JupyterHub service mode: identities from Hub tokens, the Hub's login, the service prefix.

    >>> from tlc_widgets.config import Settings
    >>> hub_mode(Settings(_env_file=None, hub=False))
    False

`tlc serve` turns it on by itself when the Hub starts it as a service (the Hub puts
`JUPYTERHUB_API_URL`, `JUPYTERHUB_API_TOKEN` and `JUPYTERHUB_SERVICE_NAME` in its
environment); see docs/jupyterhub.md.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ...config import Settings
from .identities import HubIdentities, hub_mode, token_of
from .login import HubLogin, HubLoginMiddleware
from .prefix import PrefixMiddleware, route_path

__all__ = [
    "HubIdentities",
    "HubLogin",
    "HubLoginMiddleware",
    "PrefixMiddleware",
    "hub_mode",
    "route_path",
    "service_address",
    "token_of",
]


def service_address(settings: Settings) -> Settings:
    """`settings` listening where the Hub expects the service (`JUPYTERHUB_SERVICE_URL`),
    unless a host or port was given.

    >>> s = Settings(_env_file=None, hub=True, hub_service_url="http://127.0.0.1:10101")
    >>> (service_address(s).host, service_address(s).port)
    ('127.0.0.1', 10101)
    """
    if not settings.hub_service_url or not hub_mode(settings):
        return settings
    url = urlsplit(settings.hub_service_url)
    update: dict[str, object] = {}
    if "host" not in settings.model_fields_set and url.hostname:
        update["host"] = url.hostname
    if "port" not in settings.model_fields_set and url.port:
        update["port"] = url.port
    return settings.model_copy(update=update)
