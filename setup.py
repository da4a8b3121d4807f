"""Packaging beyond pyproject.toml: the wheel carries the lesson notebooks.

The notebooks live in `notebooks/` at the repository's root (the lessons are run and tested
there); `build_py` copies them into `tlc_widgets/lessons/` of the build, so `tlc lessons DIR`
works for people who installed the package without cloning (see tlc_widgets/course.py).
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithLessons(build_py):
    def run(self) -> None:
        super().run()
        notebooks = Path(__file__).parent / "notebooks"
        target = Path(self.build_lib) / "tlc_widgets" / "lessons"
        target.mkdir(parents=True, exist_ok=True)
        for notebook in sorted(notebooks.glob("*.ipynb")):
            self.copy_file(str(notebook), str(target / notebook.name))


setup(cmdclass={"build_py": BuildWithLessons})
