"""The lesson notebooks, for people who installed the package without cloning the repository.

    >>> sorted(p.name for p in lesson_files())[0]
    '00_start_here.ipynb'

The notebooks live in `notebooks/` at the repository's root. A wheel carries a copy of them
in `tlc_widgets/lessons/` (`setup.py` copies them there when the wheel is built); a clone or
an editable install reads `notebooks/` itself. `tlc lessons DIR` copies them into `DIR`.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

__all__ = ["copy_lessons", "lesson_files"]


def _lesson_dir() -> Path:
    packaged = Path(str(resources.files("tlc_widgets").joinpath("lessons")))
    if packaged.is_dir():
        return packaged  # an installed wheel
    checkout = Path(__file__).resolve().parent.parent / "notebooks"
    if checkout.is_dir():
        return checkout  # a clone, or an editable install of one
    raise FileNotFoundError(
        "the lesson notebooks are not in this installation; reinstall tlc_widgets from a "
        "wheel or a clone of the repository"
    )


def lesson_files() -> list[Path]:
    """Every lesson notebook, in order."""
    return sorted(_lesson_dir().glob("*.ipynb"))


def copy_lessons(dest: Path, overwrite: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy the lessons into `dest` (made if missing): (copied, skipped because they exist).
    A student's own work is never overwritten unless `overwrite`."""
    dest.mkdir(parents=True, exist_ok=True)
    copied, skipped = [], []
    for source in lesson_files():
        target = dest / source.name
        if target.exists() and not overwrite:
            skipped.append(target)
            continue
        shutil.copyfile(source, target)
        copied.append(target)
    return copied, skipped
