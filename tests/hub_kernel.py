"""Run code in a kernel of a user's real single-user server, through the Hub's proxy.

    output = await run_in_kernel(hub, "alice", "print(1 + 1)")   # '2\\n'

Jupyter Server's REST API starts the kernel; its websocket (`/api/kernels/ID/channels`, JSON
messages) carries one `execute_request` and brings back what the cell printed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import websockets

from tests.hub_fixture import RunningHub

__all__ = ["run_in_kernel"]


async def run_in_kernel(hub: RunningHub, user: str, code: str) -> str:
    """What `code` printed in a fresh kernel of `user`'s server (an error raises)."""
    headers = {"Authorization": f"token {hub.token_for(user)}"}
    base = f"{hub.url}/user/{user}"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        r = await http.post("/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kernel = r.json()["id"]
        try:
            ws_url = base.replace("http://", "ws://") + f"/api/kernels/{kernel}/channels"
            async with websockets.connect(ws_url, additional_headers=headers) as ws:
                message = _execute_request(user, code)
                await ws.send(json.dumps(message))
                return await _output_of(ws, message["header"]["msg_id"])
        finally:
            await http.delete(f"/api/kernels/{kernel}")


def _execute_request(user: str, code: str) -> dict[str, Any]:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "username": user,
        "session": uuid.uuid4().hex,
        "date": datetime.now(UTC).isoformat(),
        "version": "5.3",
    }
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    return {
        "header": header,
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


async def _output_of(ws: Any, msg_id: str) -> str:
    printed: list[str] = []
    while True:
        message = json.loads(await ws.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            printed.append(content["text"])
        elif kind == "error":
            raise AssertionError("the cell failed:\n" + "\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(printed)
