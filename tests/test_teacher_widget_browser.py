"""`TeacherPanel` in a real JupyterLab, in headless Chromium, light and dark: the teacher's
notebook shows a running and a waiting student request, pauses the class from the widget
(the student's next request is refused with the message), reads a student's conversation,
exports a CSV beside the notebook and cancels a request — and the browser itself never
calls the queue server (the kernel does).

Skipped without Chromium unless TLC_REQUIRE_BROWSER=1 (then it fails). Screenshots go to
test-artifacts/browser/teacher-widget-{light,dark}.png (copied to docs/img/ for the README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from tests.browser_util import (
    ARTIFACTS,
    JupyterLab,
    change_theme,
    chromium_page,
    open_notebook,
    run_all_cells,
)
from tests.class_keys import ADA, BOB, KEYS, TINA_KEY, bob_holds_ada_waits
from tests.conftest import practice_server, queue_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

CELL = "from tlc_widgets import TeacherPanel\npanel = TeacherPanel(interval_s=0.5)\npanel"
W = ".tlc-teacher"


def _rows(page: Any, table: str) -> list[str]:
    return list(
        page.eval_on_selector_all(
            f"{W} table.{table} tbody tr", "rows => rows.map(r => r.innerText.replace(/\\t/g, ' '))"
        )
    )


_EXECUTE = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, silent: true, store_history: false });
  let out = "";
  future.onIOPub = (msg) => { if (msg.header.msg_type === "stream") out += msg.content.text; };
  await future.done;
  return out;
}"""


def in_kernel(page: Any, code: str) -> str:
    """What `code` printed in the notebook's kernel (run from the page, not as a cell)."""
    return str(page.evaluate(_EXECUTE, code)).strip()


def _setup_class(http: httpx.Client, practice_url: str) -> tuple[str, str]:
    """ada asks once (done), bob holds the only slot, ada's second request waits."""
    done = http.post("/api/requests", headers=ADA, json={"prompt": "What is a coroutine?"})
    with http.stream("GET", f"/api/requests/{done.json()['id']}/events", headers=ADA) as r:
        r.read()
    return bob_holds_ada_waits(http, practice_url, "and a task?")


def test_the_teacher_widget_shows_the_class_and_pauses_it(chromium: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, tmp_path / "class.ipynb")
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", keys=KEYS, budget_prompts_per_day=20) as queue:
            env = {"TLC_SERVER_URL": queue.url, "TLC_API_KEY": TINA_KEY}
            with httpx.Client(base_url=queue.url, timeout=30) as http:
                holder, waiting = _setup_class(http, practice.url)
                with JupyterLab(tmp_path, env=env) as lab, chromium_page(chromium) as page:
                    asked: list[str] = []
                    page.on("request", lambda r: asked.append(r.url))
                    open_notebook(page, lab.url, "class.ipynb")
                    run_all_cells(page)
                    page.wait_for_function(
                        f"() => document.querySelectorAll('{W} table.tlc-t-live tbody tr')"
                        ".length === 2",
                        timeout=60_000,
                    )
                    live = _rows(page, "tlc-t-live")
                    assert live[0].startswith("bob") and "running" in live[0], live
                    assert live[1].startswith("ada") and "waiting · #1" in live[1], live
                    page.wait_for_function(
                        f"() => document.querySelectorAll('{W} table.tlc-t-students tbody tr')"
                        ".length === 2"
                    )
                    students = _rows(page, "tlc-t-students")
                    assert students[0].startswith("ada"), students
                    assert "18 of 20 prompts left today" in students[0], students

                    message = "Chat is paused for the quiz until 10:30"
                    page.fill(f"{W} .tlc-t-pause-message", message)
                    page.click(f"{W} .tlc-t-pause")
                    page.wait_for_function(
                        f"() => document.querySelector('{W} .tlc-t-badge').innerText === 'Paused'"
                    )
                    assert page.inner_text(f"{W} .tlc-t-mode-message") == message
                    refused = http.post("/api/requests", headers=ADA, json={"prompt": "hi?"})
                    assert refused.status_code == 423, refused.text
                    assert refused.json()["error"]["code"] == "class_paused"
                    assert message in refused.json()["error"]["message"]

                    page.click(f"{W} table.tlc-t-students tbody tr:first-child button")
                    page.wait_for_selector(f"{W} .tlc-t-reader:not([hidden]) article")
                    assert "What is a coroutine?" in page.inner_text(f"{W} .tlc-t-reader")

                    widget = page.locator(W)
                    widget.screenshot(path=str(ARTIFACTS / "teacher-widget-light.png"))
                    background = "el => getComputedStyle(el).backgroundColor"
                    light = widget.evaluate(background)
                    size = widget.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")
                    assert size >= 16  # readable on a projector
                    change_theme(page, "JupyterLab Dark")
                    dark = widget.evaluate(background)
                    widget.screenshot(path=str(ARTIFACTS / "teacher-widget-dark.png"))
                    assert light != dark, (light, dark)  # JupyterLab's theme, not fixed colours

                    page.click(f"{W} button:has-text('Export CSV')")
                    page.wait_for_selector(f"{W} .tlc-t-notice .tlc-t-path")
                    exported = Path(page.inner_text(f"{W} .tlc-t-notice .tlc-t-path"))
                    assert exported.parent == tmp_path and exported.suffix == ".csv"
                    assert "What is a coroutine?" in exported.read_text("utf-8")

                    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel ada's request?"
                    page.click(f"{W} table.tlc-t-live tbody tr:nth-child(2) button")
                    page.wait_for_function(
                        f"() => document.querySelectorAll('{W} table.tlc-t-live tbody tr')"
                        ".length === 1"
                    )
                    status = http.get(f"/api/requests/{waiting}", headers=ADA).json()
                    assert (status["outcome"]["event"], status["outcome"]["by"]) == (
                        "cancelled",
                        "teacher",
                    )
                    # The page only ever talked to JupyterLab: the kernel called the server.
                    assert asked and not [u for u in asked if u.startswith(queue.url)]

                    # Its output cleared, nobody sees the view: the kernel stops polling.
                    assert in_kernel(page, "print(panel.sync.views)") == "1"
                    page.evaluate(
                        "() => window.jupyterapp.commands.execute("
                        "'notebook:clear-all-cell-outputs')"
                    )
                    for _ in range(300):  # bounded: until the view's goodbye reaches the kernel
                        if in_kernel(page, "print(panel.sync.views)") == "0":
                            break
                    assert in_kernel(page, "print(panel.sync._watched.is_set())") == "False"
                http.delete(f"/api/requests/{holder}", headers=BOB)
