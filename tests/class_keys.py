"""The keys of the class the classroom tests run: two students, a teacher and an admin."""

from __future__ import annotations

ADA_KEY, BOB_KEY = "sk-ada-0001-abcdefgh", "sk-bob-0002-abcdefgh"
TINA_KEY, ROOT_KEY = "sk-tina-003-abcdefgh", "sk-root-04-abcdefgh"

#: `TLC_KEYS` for a queue server: ada and bob are students, tina a teacher, root an admin.
KEYS = f"{ADA_KEY}:ada:student,{BOB_KEY}:bob:student,{TINA_KEY}:tina:teacher,{ROOT_KEY}:root:admin"

ADA, BOB, TINA, ROOT = (
    {"Authorization": f"Bearer {key}"} for key in (ADA_KEY, BOB_KEY, TINA_KEY, ROOT_KEY)
)
