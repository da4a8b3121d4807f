"""Start a throwaway JupyterLab and drive it with Debian's Chromium through Playwright.

    with JupyterLab(root, env={"TLC_SERVER_URL": url}) as lab, chromium_page() as page:
        open_notebook(page, lab.url, "00_start_here.ipynb")

Everything JupyterLab would read or write (config, runtime, settings, workspaces,
checkpoints) lives in a temporary directory, so a test neither sees nor changes `~/.jupyter`;
the browser is offline except for loopback. Recipe: docs/…/UPSTREAMS.md, "Browser testing".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from tlc_widgets.serving import free_port

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


# Settings that keep toasts (news, update checks) out of the screenshots.
_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class JupyterLab:
    """`jupyter lab` (or, with `app="notebook"`, Jupyter Notebook 7) on a free loopback
    port, serving `root`; `url` once it answers."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, app: str = "lab") -> None:
        self.root = root
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="tlc-lab-")
        self._env = env or {}
        self._process: subprocess.Popen[bytes] | None = None
        self.log = Path(self._tmp.name) / "jupyterlab.log"

    def __enter__(self) -> JupyterLab:
        tmp = Path(self._tmp.name)
        settings = tmp / "settings"
        for name, values in _SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            **self._env,
        }
        cls = "LabApp" if self.app == "lab" else "JupyterNotebookApp"
        cmd = [
            sys.executable, "-m", "jupyter", self.app,
            "--no-browser", "--allow-root", "--ip=127.0.0.1",
            f"--port={self.port}", "--port-retries=0",
            "--IdentityProvider.token=", "--ServerApp.disable_check_xsrf=True",
            f"--ServerApp.root_dir={self.root}",
            f"--{cls}.expose_app_in_browser=True",
            f"--{cls}.user_settings_dir={settings}",
            f"--{cls}.workspaces_dir={tmp / 'workspaces'}",
            f"--FileCheckpoints.checkpoint_dir={tmp / 'checkpoints'}",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(600):  # ~60 s; on 2 busy cores it is usually up in 2–5 s
            if self._process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/api/status", timeout=1).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"JupyterLab did not answer:\n{self.log.read_text()[-3000:]}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._tmp.cleanup()


@contextmanager
def chromium_page(executable: str) -> Iterator[Any]:
    """A Playwright page in headless Chromium that may only talk to loopback."""
    from playwright.sync_api import Route, sync_playwright

    def only_loopback(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            route.abort()

    with tempfile.TemporaryDirectory(prefix="tlc-chromium-") as home, sync_playwright() as pw:
        # Chromium's crash handler writes under XDG_CONFIG_HOME: keep it out of ~/.config.
        browser = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            env={**os.environ, "XDG_CONFIG_HOME": home, "HOME": home},
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1500})
            context.route("**/*", only_loopback)
            yield context.new_page()
        finally:
            browser.close()


# ---------------------------------------------------------------------------- JupyterLab

_KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = w && w.sessionContext && w.sessionContext.session;
  const kernel = session && session.kernel;
  return Boolean(kernel && kernel.status === "idle");
}"""

_ALL_RUN = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.widgets.filter((c) => c.model.type === "code");
  return cells.every((c) => c.model.executionCount !== null) &&
    w.sessionContext.session.kernel.status === "idle";
}"""


def open_notebook(page: Any, base_url: str, name: str, app: str = "lab") -> None:
    """Open a notebook (in JupyterLab, or Notebook 7), wait for the app and an idle kernel."""
    page.goto(
        f"{base_url}/lab/tree/{name}?reset" if app == "lab" else f"{base_url}/notebooks/{name}"
    )
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.wait_for_function(_KERNEL_IDLE, timeout=90_000)


def run_all_cells(page: Any, timeout_ms: int = 120_000) -> None:
    """Run every cell and wait until each has run and the kernel is idle again."""
    # Not awaited: the command's promise resolves only once every cell has finished.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_function(_ALL_RUN, timeout=timeout_ms, polling=250)


def document_state(page: Any) -> dict[str, Any]:
    """Whether the open notebook is marked modified, and whether a dialog is showing."""
    return dict(
        page.evaluate(
            """() => ({
              dirty: window.jupyterapp.shell.currentWidget.context.model.dirty,
              dialog: document.querySelector('.jp-Dialog') ? document.querySelector(
                '.jp-Dialog').innerText : null,
            })"""
        )
    )


def change_theme(page: Any, theme: str) -> None:
    page.evaluate(
        "async (theme) => { await window.jupyterapp.commands.execute("
        "'apputils:change-theme', {theme}); }",
        theme,
    )
    light = "true" if theme == "JupyterLab Light" else "false"
    # The theme is applied under a splash screen; wait until it has gone too.
    page.wait_for_function(
        f"() => document.body.dataset.jpThemeLight === '{light}'"
        " && !document.querySelector('#jupyterlab-splash')",
        timeout=30_000,
    )
