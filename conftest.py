"""One queue server, with the practice model inside, for every lesson notebook in a run.

    pytest --nbval-lax notebooks/01_coroutines_and_the_event_loop.ipynb

At the repository's root, not among the lessons a student opens. nbval's cells are not
pytest functions, so fixtures never reach them: the server is started by a hook, just before
the first notebook cell runs, and stopped when the session ends. Its URL goes into
`TLC_SERVER_URL` first; nbval kernels inherit this process's environment, so each lesson's
`ensure_server()` finds this server instead of starting one of its own. Test modules
(`tests/`) never start it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

_server: Any = None  # a tlc_widgets.launch.BackgroundServer once a notebook runs
_previous_url: str | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    global _server, _previous_url
    if _server is not None or item.path.suffix != ".ipynb":
        return
    # Imported here: a run of tests/ alone never pays for the server's imports.
    from tlc_widgets.config import Settings
    from tlc_widgets.launch import BackgroundServer
    from tlc_widgets.server import create_app

    # Without .env: a developer's local settings must not change what the lessons measure.
    # History in memory: lesson runs must not fill the user's history file.
    settings = Settings(_env_file=None, practice=True, port=0, history_path=":memory:")  # type: ignore[call-arg]
    _server = BackgroundServer(create_app(settings)).start()
    _previous_url = os.environ.get("TLC_SERVER_URL")
    os.environ["TLC_SERVER_URL"] = _server.url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None
        if _previous_url is None:
            os.environ.pop("TLC_SERVER_URL", None)
        else:
            os.environ["TLC_SERVER_URL"] = _previous_url
