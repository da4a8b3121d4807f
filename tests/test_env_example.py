"""`.env.example` lists every setting, with its description and default, from the Settings
classes themselves — so a new setting cannot be left out of it.

    python -m tests.test_env_example        # rewrite .env.example after adding a setting
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic_settings import BaseSettings

from tlc_widgets.config import Settings
from tlc_widgets.practice import PracticeSettings

EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"

HEADER = """\
# Every setting of the queue server (TLC_*) and the practice model (TLC_PRACTICE_*).
# Copy to .env and uncomment what you change. Flags of `tlc serve` win over these.
# (Written by `python -m tests.test_env_example` from the Settings classes.)
"""


def _value(default: object) -> str:
    if default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list):
        return ",".join(str(v) for v in default)
    if isinstance(default, (dict, tuple)):
        return json.dumps(default)
    return str(default)


def render() -> str:
    parts = [HEADER]
    classes: list[type[BaseSettings]] = [Settings, PracticeSettings]
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if hasattr(default, "get_secret_value"):
                default = None
            parts.append(
                f"\n# {field.description or name}\n# {prefix}{name.upper()}={_value(default)}"
            )
    return "".join(parts) + "\n"


def test_env_example_lists_every_setting() -> None:
    assert EXAMPLE.read_text() == render(), "run `python -m tests.test_env_example`"


if __name__ == "__main__":
    EXAMPLE.write_text(render())
