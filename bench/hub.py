"""A real JupyterHub on loopback ports, for the Hub tests and `bench.hub_vs_keys`.

    >>> "access:services!service={service}" in CONFIG   # the roles of docs/jupyterhub.md
    True
    >>> with running_hub(Path(tempfile.mkdtemp())) as hub:      # doctest: +SKIP
    ...     token = hub.token_for("alice")                      # ~10 s to start here
    ...     httpx.get(f"{hub.url}/services/tlc/api/queue",
    ...               headers={"Authorization": f"token {token}"})

The Hub is `jupyterhub` from PyPI with the Python `configurable-http-proxy`, the dummy
authenticator and the simple spawner. People: alice and bob (students), carol (group
`teachers`) and admin (a Hub admin). Services:

- `tlc`: the queue server, **Hub-managed**: the Hub starts `python -m tlc_widgets.cli serve
  --practice` with its JUPYTERHUB_* environment and nothing else, and the proxy routes
  `/services/tlc/` to it — exactly what docs/jupyterhub.md sets up. Left out with
  `managed_service=False` (a benchmark runs its own queue servers).
- `tlc-ext`: an **external** service (a token only: not started nor proxied by the Hub), for
  a queue server the caller runs itself and which therefore outlives the Hub.
- `test-admin`: a token the tests use to make user tokens, start servers and edit groups.

The roles are those of docs/jupyterhub.md: users and their servers' tokens may access the
services; the services may read users and groups. `tests/hub_fixture.py` wraps this for
pytest (a skip when jupyterhub is not installed).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tlc_widgets.launch import free_port

__all__ = ["EXTERNAL", "SERVICE", "RunningHub", "missing", "running_hub"]

SERVICE = "tlc"
EXTERNAL = "tlc-ext"
STARTUP_S = 90  # bound on the Hub + proxy + service start (≈10 s here, 35 s when busy)
SERVER_STARTUP_S = 240  # a single-user server (JupyterLab's import alone is slow on a busy box)


def missing() -> list[str]:
    """What a Hub needs that is not installed: jupyterhub, configurable-http-proxy."""
    proxy = Path(sys.executable).parent / "configurable-http-proxy"
    found = {
        "jupyterhub": importlib.util.find_spec("jupyterhub") is not None,
        "configurable-http-proxy": proxy.exists(),
    }
    return [name for name, there in found.items() if not there]


@dataclass
class RunningHub:
    url: str  #: the proxy, where people and kernels reach the Hub and /services/NAME/
    api_url: str  #: the Hub's REST API, as services see it (JUPYTERHUB_API_URL)
    external_token: str  #: the `tlc-ext` service's token
    admin_token: str
    process: subprocess.Popen[bytes]
    log: Path
    _tokens: dict[str, str] = field(default_factory=dict)

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"token {self.admin_token}"},
            timeout=30,
            trust_env=False,
        )

    def token_for(self, user: str) -> str:
        """A Hub API token of `user`'s (one per user, made on first use)."""
        if user not in self._tokens:
            with self.api() as api:
                r = api.post(f"/users/{user}/tokens", json={"note": "tlc tests"})
                assert r.status_code == 201, r.text
                self._tokens[user] = r.json()["token"]
        return self._tokens[user]

    def start_server(self, user: str) -> None:
        """Start `user`'s single-user server and wait until the Hub says it is ready."""
        with self.api() as api:
            r = api.post(f"/users/{user}/server")
            assert r.status_code in (201, 202), r.text
            deadline = time.monotonic() + SERVER_STARTUP_S
            while time.monotonic() < deadline:
                server = api.get(f"/users/{user}").json()["servers"].get("", {})
                if server.get("ready"):
                    return
                if not server:  # the Hub gave up on it (its start_timeout)
                    break
                time.sleep(0.5)  # polling another process's start-up
        raise RuntimeError(f"{user}'s server did not start:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM: the Hub stops its proxy and the services it started, then exits."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        """The Hub's last log lines, without those of the fixture's own polling."""
        polling = ("(test-admin@", "/healthz", "xsrf cookie", "custom error page")
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join([line for line in text if not any(p in line for p in polling)][-lines:])


CONFIG = """\
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{proxy_port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{dir}/home/{{username}}"
c.Spawner.args = ["--allow-root"]  # the test machine runs as root; a real Hub does not
c.Spawner.start_timeout = 200  # a busy 2-core test machine; the Hub's default is 60 s
c.Spawner.http_timeout = 200
# What docs/jupyterhub.md gives every server: the queue's URL, and OpenAI's variables so any
# OpenAI client works unchanged (the server's own Hub token is the key).
c.Spawner.environment = {{
    "TLC_SERVER_URL": "http://127.0.0.1:{proxy_port}/services/{service}",
    "OPENAI_BASE_URL": "http://127.0.0.1:{proxy_port}/services/{service}/v1",
    "OPENAI_API_KEY": lambda spawner: spawner.api_token,
}}
c.Authenticator.allowed_users = {{"alice", "bob", "carol"}}
c.Authenticator.admin_users = {{"admin"}}
c.JupyterHub.load_groups = {{"teachers": {{"users": ["carol"]}}}}
c.JupyterHub.services = [
    {{
        "name": "{service}",
        "url": "http://127.0.0.1:{service_port}",
        "command": [{python!r}, "-m", "tlc_widgets.cli", "serve", "--practice"],
        "environment": {{"TLC_HISTORY_PATH": ":memory:"}},
        "oauth_no_confirm": True,  # run by the Hub's admin: no "authorize?" page at login
    }},
    # No url: the Hub neither starts nor proxies it (the test runs it, reached directly).
    {{"name": "{external}", "api_token": "{external_token}"}},
    {{"name": "test-admin", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_roles = [
    # Everyone, and the token of everyone's server (a kernel's), may use the queue.
    {{"name": "user", "scopes": ["self", "access:services!service={service}",
                                "access:services!service={external}"]}},
    {{"name": "server", "scopes": ["users:activity!user", "access:servers!server",
                                  "access:services!service={service}",
                                  "access:services!service={external}"]}},
    # The queue reads who is in which group (teachers) with its own token.
    {{"name": "tlc-reads-users", "scopes": ["read:users", "read:groups"],
      "services": ["{service}", "{external}"]}},
    {{"name": "test-admin", "scopes": ["admin:users", "admin:groups", "tokens", "servers",
                                "read:users"],
      "services": ["test-admin"]}},
]
"""

#: Appended to CONFIG: the `tlc` service kept by name (the roles name it) but neither started
#: nor proxied — a benchmark runs its own queue servers, as `tlc-ext`.
WITHOUT_MANAGED = f"""
for s in c.JupyterHub.services:
    if s["name"] == "{SERVICE}":
        for k in ("url", "command", "environment", "oauth_no_confirm"):
            s.pop(k, None)
"""


@contextmanager
def running_hub(directory: Path, *, managed_service: bool = True) -> Iterator[RunningHub]:
    """Start a Hub in `directory`, wait until it (and the `tlc` service) answer, stop it after."""
    if missing():
        raise RuntimeError(f"{', '.join(missing())} not installed (pip install -e '.[test]')")
    directory.mkdir(parents=True, exist_ok=True)
    ports = {
        name: free_port() for name in ("proxy_port", "hub_port", "proxy_api_port", "service_port")
    }
    external_token, admin_token = secrets.token_hex(16), secrets.token_hex(16)
    config = directory / "jupyterhub_config.py"
    config.write_text(
        CONFIG.format(
            dir=directory,
            python=sys.executable,
            service=SERVICE,
            external=EXTERNAL,
            external_token=external_token,
            admin_token=admin_token,
            **ports,
        )
        + ("" if managed_service else WITHOUT_MANAGED)
    )
    env = dict(os.environ)
    # The Hub runs `configurable-http-proxy` from PATH, and passes PATH and PYTHONPATH on to
    # its services: this checkout's package and the venv's commands are what they run.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log = directory / "jupyterhub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    hub = RunningHub(
        url=f"http://127.0.0.1:{ports['proxy_port']}",
        api_url=f"http://127.0.0.1:{ports['hub_port']}/hub/api",
        external_token=external_token,
        admin_token=admin_token,
        process=process,
        log=log,
    )
    try:
        started = time.monotonic()
        _wait_for(hub, f"{hub.url}/services/{SERVICE}/healthz" if managed_service else hub.api_url)
        took = time.monotonic() - started
        print(
            f"JupyterHub{f' and the {SERVICE} service' if managed_service else ''} answered "
            f"in {took:.1f} s"
        )
        yield hub
    finally:
        hub.stop()


def _wait_for(hub: RunningHub, url: str) -> None:
    """Poll until `url` answers 200 (the Hub, its proxy and the service are all up)."""
    deadline = time.monotonic() + STARTUP_S
    with httpx.Client(timeout=5, trust_env=False) as client:
        while time.monotonic() < deadline:
            if hub.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited ({hub.process.returncode}):\n{hub.tail()}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)  # polling another process's start-up, not waiting for a result
    raise RuntimeError(f"JupyterHub did not serve {url} within {STARTUP_S} s:\n{hub.tail()}")
