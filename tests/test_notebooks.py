"""The lesson notebooks, as files: listed, present, stored clean, each with a plot and a check.

Running them is nbval's job (`pytest --nbval-lax notebooks/`, with the root `conftest.py`
providing the server); this module checks what a reviewer would otherwise check by eye.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LESSON_PATH = re.compile(r"notebooks/\d\d_\w+\.ipynb")
#: How every lesson's first code cell begins, so any lesson can be opened cold: on one line
#: (`…; url = ensure_server()`) or, as `ruff format` writes it, on two.
FIRST_STATEMENTS = ["from tlc_widgets.lesson import ensure_server", "url = ensure_server()"]
#: Marks the cell holding the exercise (with a working solution) and the cell checking it.
EXERCISE, CHECK = "# EXERCISE", "# CHECK"

GUIDED = sorted(NOTEBOOKS.glob("0[1-7]_*.ipynb"))


def listed_lessons() -> tuple[str, list[str]]:
    """Where the lesson list lives, and the notebook paths it names, in order.

    The README's `## Lessons` section once it has one; until then `docs/lessons.md`.
    """
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Lessons\s*$(.*?)(?=^## |\Z)", readme, flags=re.M | re.S)
    source, text = (
        ("README.md", section.group(1))
        if section
        else (
            "docs/lessons.md",
            (ROOT / "docs" / "lessons.md").read_text(encoding="utf-8"),
        )
    )
    return source, list(dict.fromkeys(LESSON_PATH.findall(text)))


def code_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def test_every_listed_lesson_exists() -> None:
    source, listed = listed_lessons()
    assert listed, f"{source} lists no notebooks/NN_name.ipynb"
    missing = [path for path in listed if not (ROOT / path).is_file()]
    assert not missing, f"{source} lists notebooks that do not exist: {missing}"


def test_every_guided_lesson_is_listed() -> None:
    source, listed = listed_lessons()
    assert len(GUIDED) == 7, [p.name for p in GUIDED]
    unlisted = [f"notebooks/{p.name}" for p in GUIDED if f"notebooks/{p.name}" not in listed]
    assert not unlisted, f"{source} does not list {unlisted}"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"cells {dirty} have outputs or an execution count: clear them"


@pytest.mark.parametrize("path", GUIDED, ids=lambda p: p.name)
def test_lesson_shape(path: Path) -> None:
    cells = code_cells(path)
    assert cells, "a lesson has code"
    lines = [line for line in cells[0].splitlines() if line.strip()]
    first = "; ".join(FIRST_STATEMENTS)
    assert lines[:1] == [first] or lines[:2] == FIRST_STATEMENTS, (
        f"the first code cell must start with `{first}`"
    )
    assert any("plt." in c or "display(Markdown(" in c for c in cells), "needs a plot or a table"

    exercises = [i for i, c in enumerate(cells) if c.startswith(EXERCISE)]
    checks = [i for i, c in enumerate(cells) if c.startswith(CHECK)]
    assert len(exercises) == 1 and len(checks) == 1, (exercises, checks)
    assert exercises[0] < checks[0], "the check comes after the exercise"
    check = cells[checks[0]]
    assert "✅" in check and "assert" in check, "a check says ✅ or raises AssertionError"


@pytest.mark.parametrize("path", GUIDED, ids=lambda p: p.name)
def test_lesson_has_its_own_user(path: Path) -> None:
    """Per-user caps are per name: lessons sharing one would trip each other's limits."""
    source = "\n".join(code_cells(path))
    number = path.name[:2]
    users = set(re.findall(r"""user=["'](\w[\w-]*)""", source))
    users |= set(re.findall(r"""["'](lesson\d\d[\w-]*)["']""", source))
    assert users, "a lesson names the user its requests belong to"
    foreign = [u for u in users if not u.startswith(f"lesson{number}")]
    assert not foreign, f"user names should start with 'lesson{number}': {foreign}"
