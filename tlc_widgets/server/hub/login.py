"""`HubLoginMiddleware`: a browser logs in with the Hub (OAuth), then its cookie is its token.

    >>> login = HubLogin(client_id="service-tlc", client_secret="s3cret",
    ...     api_url="http://127.0.0.1:8081/hub/api", hub_base_url="/",
    ...     callback_url="/services/tlc/oauth_callback")
    >>> login.authorize_url("abc").startswith("/hub/api/oauth2/authorize?client_id=service-tlc")
    True

Notebooks send a token; a teacher opening the service from the Hub's Services menu has only
the Hub's login. So, as the Hub's `HubOAuth` does: a page request (GET, `Accept: text/html`)
without a token goes to the Hub's authorize URL; the Hub sends the browser back to
`oauth_callback` with a code; the code becomes a token (`POST {api_url}/oauth2/token`), kept in
an HttpOnly cookie. Each later request of that browser is identified by that token, through
the same `HubIdentities` as any other. A cookie is sent by the browser to any site's request,
so it counts only for reads, and for writes from the service's own pages (`Sec-Fetch-Site:
same-origin` or a matching `Origin`): a page elsewhere cannot pause the class.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...config import Settings
from ...protocol import ErrorCode, error_body

__all__ = ["HubLogin", "HubLoginMiddleware"]

TOKEN_COOKIE = "tlc-hub-token"
STATE_COOKIE = "tlc-oauth-state"
CALLBACK = "/oauth_callback"


@dataclass(frozen=True)
class HubLogin:
    """The OAuth client the Hub registered for this service (its JUPYTERHUB_* variables)."""

    client_id: str
    client_secret: str  #: the service's own API token
    api_url: str
    hub_base_url: str  #: JUPYTERHUB_BASE_URL, "/" unless the Hub lives under a path
    callback_url: str  #: JUPYTERHUB_OAUTH_CALLBACK_URL, e.g. /services/tlc/oauth_callback

    @classmethod
    def from_settings(cls, settings: Settings) -> HubLogin | None:
        """None unless the Hub gave this service an OAuth client (a service with a `url`)."""
        s = settings
        if not (s.hub_client_id and s.hub_oauth_callback_url and s.hub_api_url):
            return None
        if s.hub_api_token is None:
            return None
        return cls(
            s.hub_client_id,
            s.hub_api_token.get_secret_value(),
            s.hub_api_url.rstrip("/"),
            s.hub_base_url or "/",
            s.hub_oauth_callback_url,
        )

    def authorize_url(self, state: str) -> str:
        query = {
            "client_id": self.client_id,
            "redirect_uri": self.callback_url,
            "response_type": "code",
            "state": state,
        }
        return f"{self.hub_base_url.rstrip('/')}/hub/api/oauth2/authorize?{urlencode(query)}"

    async def token_for(self, code: str) -> str | None:
        form = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.callback_url,
        }
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            r = await http.post(f"{self.api_url}/oauth2/token", data=form)
        token = r.json().get("access_token") if r.status_code == 200 else None
        return token if isinstance(token, str) else None


class HubLoginMiddleware:
    """Pure ASGI, just inside `PrefixMiddleware` and outside the key check."""

    def __init__(self, app: ASGIApp, login: HubLogin, open_paths: frozenset[str]) -> None:
        self.app, self.login, self.open_paths = app, login, open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        root = scope.get("root_path", "")
        if scope["path"] == CALLBACK:
            await self._callback(scope, receive, send, headers, root)
            return
        cookie = _cookies(headers).get(TOKEN_COOKIE)
        page = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if "authorization" not in headers and cookie and _may_use_cookie(scope, headers):
            scope = dict(scope)
            scope["headers"] = [*scope["headers"], (b"authorization", f"token {cookie}".encode())]
            if page:  # an expired login: log in again rather than show a 401 page
                send = self._login_on_401(scope, root, send)
        elif "authorization" not in headers and page and scope["path"] not in self.open_paths:
            await self._to_hub(scope, root)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _to_hub(self, scope: Scope, root: str) -> Response:
        state = secrets.token_urlsafe(16)
        target = root + scope["path"]
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        response = RedirectResponse(self.login.authorize_url(state), status_code=302)
        response.set_cookie(
            STATE_COOKIE,
            f"{state}|{target}",
            max_age=600,
            path=root + CALLBACK,
            httponly=True,
            samesite="lax",
        )
        return response

    def _login_on_401(self, scope: Scope, root: str, send: Send) -> Send:
        redirect = self._to_hub(scope, root)
        redirect.delete_cookie(TOKEN_COOKIE, path=root + "/")
        swallowing = False

        async def patched(message: Message) -> None:
            nonlocal swallowing
            if message["type"] == "http.response.start" and message["status"] == 401:
                swallowing = True
                start = {"type": "http.response.start", "status": 302}
                await send({**start, "headers": redirect.raw_headers})
                await send({"type": "http.response.body", "body": b""})
            elif not swallowing:
                await send(message)

        return patched

    async def _callback(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, root: str
    ) -> None:
        """The Hub sent the browser back: check the state, trade the code for a token."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        state, _, target = _cookies(headers).get(STATE_COOKIE, "").partition("|")
        code, given = (query.get("code") or [""])[0], (query.get("state") or [""])[0]
        token = None
        if state and code and secrets.compare_digest(state, given):
            try:
                token = await self.login.token_for(code)
            except httpx.HTTPError:
                token = None
        if token is None:
            body = error_body(ErrorCode.UNAUTHORIZED, "The Hub login did not finish; try again.")
            await JSONResponse(body, status_code=401)(scope, receive, send)
            return
        if not target.startswith(root + "/") or urlsplit(target).netloc:
            target = root + "/"  # only ever back to a page of this service
        response = RedirectResponse(target, status_code=302)
        response.set_cookie(TOKEN_COOKIE, token, path=root + "/", httponly=True, samesite="lax")
        response.delete_cookie(STATE_COOKIE, path=root + CALLBACK)
        await response(scope, receive, send)


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no login, not a 500
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _may_use_cookie(scope: Scope, headers: Headers) -> bool:
    """Reads always; writes only from this site's own pages (no cross-site forgery)."""
    if scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return True
    if headers.get("sec-fetch-site") == "same-origin":
        return True
    origin = headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == headers.get("host")
