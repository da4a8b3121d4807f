"""Hub mode without a Hub: settings, the token cache, the role rule and the service prefix."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tests.conftest import queue_server
from tlc_widgets.config import Settings
from tlc_widgets.server.api_error import ApiError
from tlc_widgets.server.auth import Role
from tlc_widgets.server.hub import (
    HubIdentities,
    HubLogin,
    HubLoginMiddleware,
    PrefixMiddleware,
    hub_mode,
    service_address,
)
from tlc_widgets.server.hub.cache import TokenCache
from tlc_widgets.serving import free_port

pytestmark = pytest.mark.anyio


def test_hub_mode_is_on_with_the_hubs_environment_and_can_be_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not hub_mode(Settings(_env_file=None))  # type: ignore[call-arg]
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-token")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/tlc/")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "tlc")
    monkeypatch.setenv("TLC_HUB_TEACHER_GROUPS", "teachers, tas")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert hub_mode(settings) and settings.hub_service_prefix == "/services/tlc/"
    hub = HubIdentities.from_settings(settings)
    assert hub is not None and hub.api_url == "http://127.0.0.1:8081/hub/api"
    assert hub.teacher_groups == {"teachers", "tas"}
    monkeypatch.setenv("TLC_HUB", "0")
    assert HubIdentities.from_settings(Settings(_env_file=None)) is None  # type: ignore[call-arg]


def test_inside_a_users_own_server_it_stays_a_local_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A single-user server's environment has the Hub's URL and a token, and a prefix and URL
    of its own, but no service name: a `tlc serve` a notebook starts there is not the Hub's."""
    for name, value in {
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_API_TOKEN": "alices-server-token",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:45678/user/alice/",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not hub_mode(settings) and HubIdentities.from_settings(settings) is None
    assert service_address(settings).port == 8000  # not the port of alice's own server


def test_forcing_hub_mode_without_the_hub_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN"):
        HubIdentities.from_settings(Settings(_env_file=None, hub=True))  # type: ignore[call-arg]


def test_the_service_listens_where_the_hub_expects_unless_told_otherwise() -> None:
    url = "http://127.0.0.1:10101"
    given = Settings(_env_file=None, hub=True, hub_service_url=url)  # type: ignore[call-arg]
    assert (service_address(given).host, service_address(given).port) == ("127.0.0.1", 10101)
    told = Settings(_env_file=None, hub=True, hub_service_url=url, port=9000)  # type: ignore[call-arg]
    assert service_address(told).port == 9000


def test_roles_come_from_admin_and_the_teacher_groups() -> None:
    hub = HubIdentities("http://hub/api", service_token="t", teacher_groups=["tas"])
    assert hub.role_of({"name": "root", "admin": True, "groups": ["tas"]}) is Role.ADMIN
    assert hub.role_of({"name": "ta", "admin": False, "groups": ["x", "tas"]}) is Role.TEACHER
    assert hub.role_of({"name": "carol", "admin": False, "groups": ["teachers"]}) is Role.STUDENT
    assert hub.role_of({"name": "svc", "kind": "service"}) is Role.STUDENT


def test_the_token_cache_is_bounded_and_forgets_what_is_too_old() -> None:
    cache: TokenCache[str] = TokenCache(fresh_s=60, stale_s=600, size=3)
    for n in range(5):
        cache.put(f"token-{n}", f"user-{n}", now=0)
    assert len(cache) == 3 and cache.fresh("token-0", now=1) is None  # the oldest went first
    assert cache.fresh("token-2", now=1) == "user-2"
    cache.put("token-5", "user-5", now=1)  # token-2 was just used: token-3 goes instead
    assert cache.stale("token-2", now=2) == "user-2" and cache.stale("token-3", now=2) is None
    assert cache.stale("token-2", now=599) == "user-2"
    assert cache.stale("token-2", now=601) is None and len(cache) == 2


async def test_an_unreachable_hub_is_a_503_and_a_missing_token_a_401() -> None:
    # A port nothing listens on: the Hub is down before anyone was ever seen.
    hub = HubIdentities(f"http://127.0.0.1:{free_port()}/hub/api", service_token="t")
    try:
        with pytest.raises(ApiError) as refused:
            await hub.identify("token abc")
        assert (refused.value.status, refused.value.code) == (503, "hub_unavailable")
        with pytest.raises(ApiError) as missing:
            await hub.identify(None)
        assert (missing.value.status, missing.value.code) == (401, "unauthorized")
    finally:
        await hub.aclose()


async def test_the_app_answers_under_the_service_prefix_and_at_the_root() -> None:
    hub = {"hub_api_url": f"http://127.0.0.1:{free_port()}/hub/api", "hub_api_token": "t"}
    with queue_server(
        "http://127.0.0.1:9/v1", hub=True, hub_service_prefix="/services/tlc/", **hub
    ) as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            for path in ("/healthz", "/services/tlc/healthz", "/services/tlc/openapi.json"):
                assert (await client.get(path)).status_code == 200, path
            docs = (await client.get("/services/tlc/docs")).text
            assert "/services/tlc/openapi.json" in docs  # the docs page works behind the proxy
            r = await client.get("/services/tlc/api/queue")  # found, and guarded
            assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
            # Not under the prefix: an unknown path, which needs a token like any other.
            assert (await client.get("/services/tlcx/healthz")).status_code == 401


async def test_a_login_callback_with_a_wrong_state_is_refused_without_asking_the_hub() -> None:
    login = HubLogin(
        client_id="service-tlc",
        client_secret="s",
        api_url=f"http://127.0.0.1:{free_port()}/hub/api",  # nobody: it must not be asked
        hub_base_url="/",
        callback_url="/services/tlc/oauth_callback",
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the callback never reaches the app")

    asgi = PrefixMiddleware(HubLoginMiddleware(app, login, frozenset()), "/services/tlc/")
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as browser:
        browser.cookies.set("tlc-oauth-state", "right|/services/tlc/", path="/")
        r = await browser.get("/services/tlc/oauth_callback?code=c&state=wrong")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
        assert "tlc-hub-token" not in r.headers.get("set-cookie", "")
