"""The chat panel in a real JupyterLab, in headless Chromium: queue position, live tokens,
the done status, in the light and the dark theme.

Skipped when no Chromium is installed, unless TLC_REQUIRE_BROWSER=1 (CI), which fails
instead. Screenshots go to test-artifacts/browser/ (gitignored).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser_util import (
    ARTIFACTS,
    JupyterLab,
    change_theme,
    chromium_page,
    document_state,
    open_notebook,
    run_all_cells,
)
from tests.conftest import practice_server, queue_server
from tests.test_widgets_kernel import hold_slot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "00_start_here.ipynb"

STATUS = ".tlc-chat .tlc-status .tlc-status-text"
LIVE = ".tlc-chat .tlc-transcript .tlc-live .tlc-body"


def text_of(page: Any, selector: str) -> str:
    return str(page.eval_on_selector(selector, "el => el.innerText"))


def test_chat_panel_streams_into_jupyterlab(chromium: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # a copy: JupyterLab may save into it
    # ~30 tokens/s: slow enough to watch the reply grow, one slot so a holder makes us wait.
    with practice_server(parallel=1, tokens_per_second=30) as practice:
        with queue_server(practice.url + "/v1") as queue:
            with JupyterLab(root, env={"TLC_SERVER_URL": queue.url}) as lab:
                with chromium_page(chromium) as page:
                    open_notebook(page, lab.url, NOTEBOOK.name)
                    # Opening a lesson does not mark it modified (its metadata holds what
                    # JupyterLab would add), and Run All asks for no kernel.
                    assert document_state(page) == {"dirty": False, "dialog": None}
                    run_all_cells(page)
                    assert document_state(page)["dialog"] is None
                    page.wait_for_selector(".tlc-chat .tlc-prompt-input", timeout=30_000)
                    page.wait_for_selector(".tlc-monitor .tlc-num", timeout=30_000)
                    assert text_of(page, STATUS).startswith("done · ")  # the notebook's own send
                    drive_the_panel(page, queue.url, practice.url)


STOP = ".tlc-chat .tlc-toolbar .tlc-tool:has-text('Stop')"
HINT = ".tlc-chat .tlc-prompt-hint"


def drive_the_panel(page: Any, queue_url: str, practice_url: str, app: str = "lab") -> None:
    # Idle: Stop is inactive, Send is not; sending nothing says so.
    assert page.locator(STOP).is_disabled() and page.locator(".tlc-chat .tlc-send").is_enabled()
    page.fill(".tlc-chat .tlc-prompt-input", "  ")
    page.click(".tlc-chat .tlc-send")
    page.wait_for_function(
        f"() => document.querySelector({HINT!r}).innerText.includes('Type a prompt first')"
    )
    holder = hold_slot(queue_url, practice_url)
    page.fill(".tlc-chat .tlc-prompt-input", "Tell me about the Queen")
    page.click(".tlc-chat .tlc-send")
    page.wait_for_function(
        f"() => document.querySelector({STATUS!r}).innerText.startsWith('queued — position')",
        timeout=30_000,
    )
    assert text_of(page, STATUS).startswith("queued — position 1 of 1")  # + ETA, if known
    # A reply runs: Send waits, Stop is active.
    page.wait_for_function("() => document.querySelector('.tlc-chat .tlc-send').disabled")
    assert page.locator(STOP).is_enabled()
    chat = page.locator(".tlc-chat")
    chat.scroll_into_view_if_needed()
    chat.screenshot(path=str(ARTIFACTS / f"{app}-chat-queued-light.png"))

    httpx.delete(f"{queue_url}/api/requests/{holder}")
    # Watch the live reply grow: each wait ends as soon as the text is longer than before.
    lengths = [0]
    for _ in range(3):
        lengths.append(
            page.wait_for_function(
                f"""(before) => {{
                    const el = document.querySelector({LIVE!r});
                    return el && el.innerText.length > before ? el.innerText.length : false;
                }}""",
                arg=lengths[-1],
                timeout=30_000,
            ).json_value()
        )
    assert lengths == sorted(set(lengths)), lengths
    chat.screenshot(path=str(ARTIFACTS / f"{app}-chat-streaming-light.png"))

    page.wait_for_function(
        f"() => document.querySelector({STATUS!r}).innerText.startsWith('done · ')",
        timeout=60_000,
    )
    last = page.locator(".tlc-chat .tlc-assistant .tlc-body").last.inner_text()
    assert len(last) >= lengths[-1] and not page.query_selector(LIVE)
    page.wait_for_function("() => !document.querySelector('.tlc-chat .tlc-send').disabled")
    assert page.locator(STOP).is_disabled()
    # Settings open from a toolbar toggle; every label is whole ("Temperature", not cut).
    page.click(".tlc-chat .tlc-tool:has-text('Settings')")
    clipped = page.evaluate(
        """() => [...document.querySelectorAll('.tlc-chat .tlc-settings .widget-label')]
            .filter((l) => l.offsetParent && l.scrollWidth > l.clientWidth + 1)
            .map((l) => l.innerText)"""
    )
    assert clipped == [], clipped
    chat.screenshot(path=str(ARTIFACTS / f"{app}-chat-done-light.png"))
    page.click(".tlc-chat .tlc-tool:has-text('Settings')")
    page.screenshot(path=str(ARTIFACTS / f"{app}-light.png"))

    # Shift+Enter makes a new line; Enter sends.
    box = page.locator(".tlc-chat .tlc-prompt-input")
    box.click()
    box.type("Line one")
    box.press("Shift+Enter")
    box.type("line two")
    assert box.input_value() == "Line one\nline two"
    assert text_of(page, STATUS).startswith("done · ")  # nothing was sent
    box.press("Enter")
    page.wait_for_function(
        f"() => !document.querySelector({STATUS!r}).innerText.startsWith('done · ')",
        timeout=30_000,
    )
    page.wait_for_function(
        f"() => document.querySelector({STATUS!r}).innerText.startsWith('done · ')",
        timeout=60_000,
    )
    assert page.locator(".tlc-chat .tlc-user .tlc-body").last.inner_text() == "Line one\nline two"
    assert box.input_value() == ""

    change_theme(page, "JupyterLab Dark")
    chat.screenshot(path=str(ARTIFACTS / f"{app}-chat-done-dark.png"))
    monitor = page.locator(".tlc-monitor")
    monitor.scroll_into_view_if_needed()
    monitor.screenshot(path=str(ARTIFACTS / f"{app}-monitor-dark.png"))
    # Theme-aware: the transcript's background follows the theme's layout colour.
    colors = page.evaluate(
        """() => [getComputedStyle(document.querySelector('.tlc-transcript')).backgroundColor,
                  getComputedStyle(document.body).getPropertyValue('--jp-layout-color1').trim()]"""
    )
    assert colors[0] != "rgb(255, 255, 255)", colors


RENDER_CHECK = r"""
from tlc_widgets.widgets.conversation import Turn
from tlc_widgets.widgets.transcript import Transcript

reply = '''## A heading

Some **bold**, *italic*, `inline <code>`, a [link](https://example.org)
and [no link](javascript:alert(1)).

1. first
2. second

```python
def greet(name: str) -> str:
    # say hello
    return f"Hello, {name}!"
```

<script>window.pwned = true</script><img src=x onerror="window.pwned = true">'''
transcript = Transcript()
transcript.turns = [
    Turn("user", "Show me <b>markdown</b>").as_view(),
    Turn("assistant", reply, reasoning="The user asks about *markdown*.").as_view(),
]
transcript
"""


def test_transcript_renders_markdown_safely(chromium: str, tmp_path: Path) -> None:
    import nbformat

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(RENDER_CHECK)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, tmp_path / "render.ipynb")
    with JupyterLab(tmp_path) as lab, chromium_page(chromium) as page:
        open_notebook(page, lab.url, "render.ipynb")
        run_all_cells(page)
        answer = page.wait_for_selector(".tlc-transcript .tlc-assistant .tlc-body h2")
        assert answer.inner_text() == "A heading"
        assert page.locator(".tlc-assistant strong").first.inner_text() == "bold"
        assert page.locator(".tlc-assistant code").first.inner_text() == "inline <code>"
        links = page.locator(".tlc-assistant a")
        assert links.count() == 1 and links.get_attribute("href") == "https://example.org"
        assert links.get_attribute("rel") == "noopener noreferrer"
        keyword = page.locator("pre.tlc-code code.language-python .tlc-tok-keyword").first
        assert keyword.inner_text() == "def"
        # Model text is text: no element was made from it, no handler ran.
        assert page.locator(".tlc-transcript script, .tlc-transcript img").count() == 0
        assert "<script>" in page.locator(".tlc-assistant .tlc-body").inner_text()
        assert page.evaluate("() => window.pwned === undefined")
        assert page.locator(".tlc-user .tlc-body").inner_text() == "Show me <b>markdown</b>"
        # Reasoning sits apart, collapsed until opened.
        thinking = page.locator(".tlc-assistant details.tlc-reasoning")
        assert thinking.get_attribute("open") is None
        thinking.locator("summary").click()
        assert thinking.get_attribute("open") is not None
        page.locator(".tlc-transcript").screenshot(path=str(ARTIFACTS / "markdown-light.png"))
        change_theme(page, "JupyterLab Dark")
        page.locator(".tlc-transcript").screenshot(path=str(ARTIFACTS / "markdown-dark.png"))


def test_chat_panel_streams_into_notebook_7(chromium: str, tmp_path: Path) -> None:
    """Many Hubs open Jupyter Notebook 7 (/tree): the same walk through the panel there."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    with practice_server(parallel=1, tokens_per_second=30) as practice:
        with queue_server(practice.url + "/v1") as queue:
            env = {"TLC_SERVER_URL": queue.url}
            with JupyterLab(root, env=env, app="notebook") as nb7, chromium_page(chromium) as page:
                open_notebook(page, nb7.url, NOTEBOOK.name, app="notebook")
                assert document_state(page) == {"dirty": False, "dialog": None}
                run_all_cells(page)
                page.wait_for_selector(".tlc-chat .tlc-prompt-input", timeout=30_000)
                assert text_of(page, STATUS).startswith("done · ")
                drive_the_panel(page, queue.url, practice.url, app="notebook7")


#: 5,000 tokens in 500 flushes of 10, as the coalescer sends them (a bare string each):
#: paragraphs of ~60 tokens, a code block now and then, like a long model answer.
STREAM_5000 = r"""
import asyncio
from tlc_widgets.widgets.transcript import Transcript

WORDS = "Once upon a time, the **rabbit** ran down its `hole` and kept running.".split()

def token(i):
    if i % 600 == 590:
        return "\n\n```python\nfor step in range(3):\n    print(step)\n```\n\n"
    return WORDS[i % len(WORDS)] + ("\n\n" if i % 60 == 59 else " ")

async def stream_5000():
    live.begin_reply()
    for flush in range(500):
        live.send("".join(token(flush * 10 + k) for k in range(10)))
        await asyncio.sleep(0.005)

await stream_5000()
"""


def test_live_reply_render_cost_per_flush(chromium: str, tmp_path: Path) -> None:
    """Figures, not a threshold: the browser's render time per flush of a 5,000-token reply,
    early and late. Incremental rendering keeps the late flushes as cheap as the early."""
    import nbformat

    code = "from tlc_widgets.widgets.transcript import Transcript\nlive = Transcript()\nlive"
    cells = [nbformat.v4.new_code_cell(code), nbformat.v4.new_code_cell(STREAM_5000)]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, tmp_path / "render_cost.ipynb")
    with JupyterLab(tmp_path) as lab, chromium_page(chromium) as page:
        open_notebook(page, lab.url, "render_cost.ipynb")
        page.evaluate("() => { globalThis.tlcRenderTimes = []; }")  # transcript.js records
        run_all_cells(page)
        try:
            page.wait_for_function(
                "() => globalThis.tlcRenderTimes.length >= 500", timeout=120_000, polling=250
            )
        except Exception:
            seen = page.evaluate("() => globalThis.tlcRenderTimes.length")
            shown = page.locator(".tlc-transcript").inner_text()[:300]
            raise AssertionError(f"{seen} flushes rendered; the transcript: {shown!r}") from None
        times = page.evaluate("() => globalThis.tlcRenderTimes")
        page.locator(".tlc-transcript").screenshot(path=str(ARTIFACTS / "render-5000.png"))
    assert len(times) >= 500 and times[-1]["chars"] > times[0]["chars"]  # + a late view's catch-up

    def median(flushes: list[dict[str, float]]) -> float:
        ms = sorted(f["ms"] for f in flushes)
        return ms[len(ms) // 2]

    early, late = times[10:60], times[-50:]
    print(
        f"\nrender per flush, 5,000-token reply (500 flushes of 10 tokens): "
        f"flushes 10-59 (~{early[-1]['chars']:,} chars) median {median(early):.3f} ms; "
        f"last 50 (~{late[-1]['chars']:,} chars) median {median(late):.3f} ms; "
        f"max {max(f['ms'] for f in times):.2f} ms"
    )


def test_the_panel_shows_a_model_loading(chromium: str, tmp_path: Path) -> None:
    """A model unloaded (as LM Studio does after its idle TTL) is loaded again for the next
    prompt: the panel says so, with the load's progress, then streams the reply."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    loading = f"""() => {{
        const el = document.querySelector({STATUS!r});
        return el && el.innerText.startsWith('Loading ') && el.innerText.includes('%');
    }}"""
    with practice_server(default_load_time_s=8, tokens_per_second=30) as up:
        with queue_server(up.url + "/v1") as queue:
            with JupyterLab(root, env={"TLC_SERVER_URL": queue.url}) as lab:
                with chromium_page(chromium) as page:
                    open_notebook(page, lab.url, NOTEBOOK.name)
                    run_all_cells(page)
                    page.wait_for_selector(".tlc-chat .tlc-prompt-input", timeout=30_000)
                    model = httpx.get(queue.url + "/api/models").json()["default"]
                    r = httpx.post(f"{queue.url}/api/admin/models/unload", json={"model": model})
                    assert r.status_code == 200 and r.json()["loaded"] is False, r.text
                    page.fill(".tlc-chat .tlc-prompt-input", "Tell me about the Duchess")
                    page.click(".tlc-chat .tlc-send")
                    page.wait_for_function(loading, timeout=60_000)
                    chat = page.locator(".tlc-chat")
                    chat.scroll_into_view_if_needed()
                    chat.screenshot(path=str(ARTIFACTS / "lab-chat-loading-light.png"))
                    page.wait_for_function(
                        f"() => document.querySelector({STATUS!r}).innerText.startsWith('done')",
                        timeout=120_000,
                    )
            loads = httpx.get(up.url + "/practice/models").json()
    assert loads[model]["loads"] == 1  # the one load after the unload
