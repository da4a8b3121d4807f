"""`HubIdentities`: who sent a request, from the JupyterHub token it carries.

    >>> hub = HubIdentities("http://127.0.0.1:8081/hub/api", service_token="s3cret")
    >>> hub.role_of({"name": "carol", "admin": False, "groups": ["teachers"]})
    <Role.TEACHER: 'teacher'>
    >>> token_of("token abc123"), token_of("Bearer abc123")
    ('abc123', 'abc123')
    >>> await hub.identify("token abc123")  # doctest: +SKIP
    Identity(user='alice', role=<Role.STUDENT: 'student'>)

The same interface as `auth.Keys` (truthy; `identify(authorization) -> Identity`), but async:
the middleware awaits it. A token is checked the way the Hub's own `HubAuth` does it:
`GET {api_url}/user` with that token, which works for a user's token and for a kernel's
`JUPYTERHUB_API_TOKEN` (its server's token). The user is the Hub user; the role is admin for
Hub admins, teacher for members of `teacher_groups`, student otherwise. When the service knows
its name, the token must also grant `access:services!service=NAME`, the Hub's access rule.

Each answer is cached for `cache_s` (`cache.py`); if the Hub cannot be reached, an identity
seen in the last `stale_s` keeps working and an unknown token gets `503 hub_unavailable`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import httpx

from ...config import Settings
from ...protocol import ErrorCode
from ..api_error import ApiError
from ..auth import Identity, Role
from .cache import TokenCache

__all__ = ["HubIdentities", "hub_mode", "token_of"]

log = logging.getLogger("tlc.hub")

# HubAuth's own pattern: both `token X` (the Hub's spelling) and `Bearer X` (OpenAI clients).
_HEADER = re.compile(r"(?:token|bearer)\s+(\S+)\s*$", re.IGNORECASE)


class _HubUnreachable(Exception):
    """The Hub did not answer, or answered 5xx: it cannot say yes or no right now."""


def token_of(authorization: str | None) -> str:
    """The token of an `Authorization` header, or `ApiError(unauthorized)` saying how to send it."""
    match = _HEADER.match((authorization or "").strip())
    if match is None:
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "This server runs in JupyterHub: send your Hub token as "
            "'Authorization: token <token>' (in a Hub server QueueClient sends "
            "$JUPYTERHUB_API_TOKEN; OpenAI clients send it as api_key).",
        )
    return match.group(1)


class HubIdentities:
    """Identities from the Hub, cached; the middleware awaits `identify`."""

    def __init__(
        self,
        api_url: str,
        *,
        service_token: str,
        service_name: str | None = None,
        teacher_groups: Iterable[str] = ("teachers",),
        cache_s: float = 60,
        stale_s: float = 3600,
        cache_size: int = 10_000,
        timeout_s: float = 5,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.service_name = service_name
        self.teacher_groups = frozenset(teacher_groups)
        self._service_token = service_token
        self._timeout = httpx.Timeout(timeout_s)
        self._cache: TokenCache[Identity] = TokenCache(cache_s, stale_s, cache_size)
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HubIdentities | None:
        """The Hub's identities when Hub mode is on (`hub_mode(settings)`), else None."""
        if not hub_mode(settings):
            return None
        if not settings.hub_api_url or settings.hub_api_token is None:
            raise ValueError(
                "TLC_HUB is on, but JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN are not both "
                "set: run tlc serve as a Hub service, or set them to the Hub's API URL and a "
                "service token (docs/jupyterhub.md)."
            )
        return cls(
            settings.hub_api_url,
            service_token=settings.hub_api_token.get_secret_value(),
            service_name=settings.hub_service_name,
            teacher_groups=settings.hub_teacher_groups,
            cache_s=settings.hub_cache_s,
            stale_s=settings.hub_stale_s,
            cache_size=settings.hub_cache_size,
        )

    def __bool__(self) -> bool:
        return True  # like a non-empty `Keys`: every request must prove who it is

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def identify(self, authorization: str | None) -> Identity:
        """The identity the token in `authorization` proves, or an `ApiError` (401/403/503)."""
        token = token_of(authorization)
        cached = self._cache.fresh(token, now=time.monotonic())
        if cached is not None:
            return cached
        try:
            model = await self._get("/user", token)
            if model is not None and model.get("kind", "user") == "user" and "groups" not in model:
                model["groups"] = await self._groups_of(str(model.get("name")))
        except _HubUnreachable as exc:
            stale = self._cache.stale(token, now=time.monotonic())
            if stale is not None:
                return stale
            log.warning("JupyterHub at %s is not answering: %s", self.api_url, exc)
            raise ApiError(ErrorCode.HUB_UNAVAILABLE, retry_after=30) from None
        if model is None or not isinstance(model.get("name"), str):
            self._cache.forget(token)
            raise ApiError(
                ErrorCode.UNAUTHORIZED,
                "JupyterHub does not know that token (it may have expired: restart your "
                "server from the Hub's control panel).",
            )
        self._check_access(model)
        identity = Identity(user=model["name"], role=self.role_of(model))
        self._cache.put(token, identity, now=time.monotonic())
        return identity

    def role_of(self, model: dict[str, Any]) -> Role:
        """Admin for Hub admins, teacher for members of a teacher group, else student."""
        if model.get("admin") is True:
            return Role.ADMIN
        if self.teacher_groups.intersection(model.get("groups") or ()):
            return Role.TEACHER
        return Role.STUDENT

    def _check_access(self, model: dict[str, Any]) -> None:
        if self.service_name is None:
            return
        wanted = {"access:services", f"access:services!service={self.service_name}"}
        if wanted.isdisjoint(model.get("scopes") or ()):
            raise ApiError(
                ErrorCode.FORBIDDEN,
                f"Your JupyterHub token does not give access to the service "
                f"{self.service_name!r}; the Hub's admin grants it with a role holding "
                f"'access:services!service={self.service_name}' (docs/jupyterhub.md).",
            )

    async def _groups_of(self, name: str) -> list[str]:
        # Tokens without read:users:groups!user get no `groups` from /user: ask with our own.
        model = await self._get(f"/users/{name}", self._service_token)
        if model is None or "groups" not in model:
            log.warning(
                "cannot read the groups of %s: give this service read:users:groups "
                "(docs/jupyterhub.md); treating them as a student",
                name,
            )
            return []
        return list(model["groups"])

    async def _get(self, path: str, token: str) -> dict[str, Any] | None:
        """The Hub's JSON at `path`, None for a token it refuses (401/403/404)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        try:
            r = await self._client.get(
                self.api_url + path, headers={"Authorization": f"token {token}"}
            )
        except httpx.TransportError as exc:
            raise _HubUnreachable(type(exc).__name__) from exc
        if r.status_code in (401, 403, 404):
            return None
        if r.status_code != 200:
            raise _HubUnreachable(f"HTTP {r.status_code}")
        body = r.json()
        return body if isinstance(body, dict) else None


def hub_mode(settings: Settings) -> bool:
    """`TLC_HUB` if set, else on when the Hub started us as a service (or we were told so).

    A user's own server has JUPYTERHUB_API_URL and _TOKEN too (and a service prefix and URL
    of its own): a `tlc serve` started from a notebook there must stay a plain local server.
    Only a service is given JUPYTERHUB_SERVICE_NAME.
    """
    if settings.hub is not None:
        return settings.hub
    return bool(settings.hub_api_url and settings.hub_api_token and settings.hub_service_name)
