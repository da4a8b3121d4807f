"""The teacher's page in headless Chromium: the live view, a pause typed into the page, a
student's conversation, in the light and the dark colour scheme.

Skipped without Chromium unless TLC_REQUIRE_BROWSER=1 (then it fails). Screenshots go to
test-artifacts/browser/ (gitignored): teacher-light.png, teacher-dark.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser_util import ARTIFACTS, chromium_page
from tests.class_keys import ADA, BOB, KEYS, TINA_KEY, bob_holds_ada_waits
from tests.conftest import practice_server, queue_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _rows(page: Any, table: str) -> list[str]:
    return list(
        page.eval_on_selector_all(f"#{table} tbody tr", "rows => rows.map(r => r.innerText)")
    )


def test_the_teacher_page_shows_the_class_and_pauses_it(chromium: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", keys=KEYS, budget_prompts_per_day=20) as queue:
            with httpx.Client(base_url=queue.url, timeout=30) as http:
                done = http.post(
                    "/api/requests",
                    headers=ADA,
                    json={"prompt": "What is a coroutine?", "max_tokens": 12},
                )
                with http.stream(
                    "GET", f"/api/requests/{done.json()['id']}/events", headers=ADA
                ) as r:
                    r.read()
                holder, waiting = bob_holds_ada_waits(http, practice.url, "and a task?")

                with chromium_page(chromium) as page:
                    page.goto(f"{queue.url}/teacher")
                    page.wait_for_selector("#login:not([hidden])")
                    page.fill("#key", TINA_KEY)
                    page.click("#login button")
                    page.wait_for_function(
                        "() => document.querySelectorAll('#live tbody tr').length === 2"
                    )
                    live = _rows(page, "live")
                    assert live[0].startswith("bob") and "running" in live[0]
                    assert live[1].startswith("ada") and "waiting · #1" in live[1]
                    page.wait_for_function(
                        "() => document.querySelectorAll('#students tbody tr').length === 2"
                    )
                    students = _rows(page, "students")
                    assert (
                        students[0].startswith("ada")
                        and "18 of 20 prompts left today" in students[0]
                    )

                    message = "Chat is paused for the quiz until 10:30"
                    page.fill("#pause-message", message)
                    page.click("#pause")
                    page.wait_for_function(
                        "() => document.querySelector('#mode').innerText === 'Paused'"
                    )
                    assert page.inner_text("#mode-message") == message
                    snapshot = http.get("/api/queue", headers=ADA).json()
                    assert (snapshot["class_mode"], snapshot["class_message"]) == (
                        "paused",
                        message,
                    )

                    page.click("#students tbody tr:first-child button")
                    page.wait_for_selector("#reader:not([hidden]) article")
                    assert "What is a coroutine?" in page.inner_text("#reader-body")
                    page.screenshot(path=str(ARTIFACTS / "teacher-light.png"), full_page=True)
                    light = page.evaluate("() => getComputedStyle(document.body).backgroundColor")

                    page.emulate_media(color_scheme="dark")
                    dark = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
                    page.screenshot(path=str(ARTIFACTS / "teacher-dark.png"), full_page=True)
                    assert (light, dark) == ("rgb(255, 255, 255)", "rgb(18, 18, 18)")
                    size = page.evaluate(
                        "() => parseFloat(getComputedStyle(document.body).fontSize)"
                    )
                    assert size >= 18  # readable from the back of a room

                    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel ada's request?"
                    page.click("#live tbody tr:nth-child(2) button")
                    page.wait_for_function(
                        "() => document.querySelectorAll('#live tbody tr').length === 1"
                    )
                    status = http.get(f"/api/requests/{waiting}", headers=ADA).json()
                    assert (status["outcome"]["event"], status["outcome"]["by"]) == (
                        "cancelled",
                        "teacher",
                    )
                http.delete(f"/api/requests/{holder}", headers=BOB)
