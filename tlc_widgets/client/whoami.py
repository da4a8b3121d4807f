"""Who the client is to the queue server: its key or Hub token, and the user it declares.

    >>> authorization("sk-0123456789abcdef")
    {'Authorization': 'Bearer sk-0123456789abcdef'}

Inside a JupyterHub nothing is set up by hand: without `TLC_API_KEY` the client sends the
single-user server's own `JUPYTERHUB_API_TOKEN`, and the server asks the Hub who that is.
"""

from __future__ import annotations

import getpass
import os

__all__ = ["authorization", "default_user"]


def authorization(api_key: str | None) -> dict[str, str]:
    """Who we are to the server: a key (`api_key`, `TLC_API_KEY`), else — inside a
    JupyterHub — the single-user server's own Hub token, so nothing is set up by hand.

    """
    key = api_key or os.environ.get("TLC_API_KEY")
    if key:
        return {"Authorization": f"Bearer {key}"}
    hub_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    return {"Authorization": f"token {hub_token}"} if hub_token else {}


def default_user() -> str:
    """The user a request declares when no key or token says who: `TLC_USER`, the Hub's
    `JUPYTERHUB_USER`, else the login name."""
    for var in ("TLC_USER", "JUPYTERHUB_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser() or "anonymous"
    except Exception:  # no login name at all (some containers): getpass raises OSError/KeyError
        return "anonymous"
