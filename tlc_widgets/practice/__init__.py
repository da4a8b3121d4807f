"""The practice model: a statistical text generator (not an LLM) behind LM Studio's HTTP API.

    >>> from tlc_widgets.practice import PracticeSettings, create_app
    >>> app = create_app(PracticeSettings(tokens_per_second=0))   # serve with uvicorn

Lessons and tests use it where LM Studio cannot run: same URLs, same JSON, real HTTP.
"""

from tlc_widgets.practice.app import create_app
from tlc_widgets.practice.generator import MarkovModel
from tlc_widgets.practice.settings import PracticeSettings

__all__ = ["MarkovModel", "PracticeSettings", "create_app"]
