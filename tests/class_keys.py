"""The keys of the class the classroom tests run: two students, a teacher and an admin,
and the one queue the teacher's views are shown (bob runs, ada waits)."""

from __future__ import annotations

import time

import httpx

ADA_KEY, BOB_KEY = "sk-ada-0001-abcdefgh", "sk-bob-0002-abcdefgh"
TINA_KEY, ROOT_KEY = "sk-tina-003-abcdefgh", "sk-root-04-abcdefgh"

#: `TLC_KEYS` for a queue server: ada and bob are students, tina a teacher, root an admin.
KEYS = f"{ADA_KEY}:ada:student,{BOB_KEY}:bob:student,{TINA_KEY}:tina:teacher,{ROOT_KEY}:root:admin"

ADA, BOB, TINA, ROOT = (
    {"Authorization": f"Bearer {key}"} for key in (ADA_KEY, BOB_KEY, TINA_KEY, ROOT_KEY)
)


def bob_holds_ada_waits(http: httpx.Client, practice_url: str, prompt: str) -> tuple[str, str]:
    """bob's request takes the practice model's only slot and keeps it (a stall after one
    token); ada's `prompt` then waits behind it. Returns (holder, waiting)."""
    http.put(f"{practice_url}/practice/faults", json={"stall_after_tokens": 1})
    holder = http.post("/api/requests", headers=BOB, json={"prompt": "hold"}).json()["id"]
    for _ in range(2000):  # bounded: until the holder has its slot (and stalls)
        if http.get(f"/api/requests/{holder}", headers=BOB).json()["tokens"] >= 1:
            break
        time.sleep(0.01)  # another process's state
    http.put(f"{practice_url}/practice/faults", json={"stall_after_tokens": None})
    waiting = http.post("/api/requests", headers=ADA, json={"prompt": prompt}).json()["id"]
    return holder, waiting
