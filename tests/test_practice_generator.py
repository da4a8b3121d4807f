"""The practice model's text generator, settings and faults: pure code, no servers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tlc_widgets.practice
from tlc_widgets.practice import MarkovModel, PracticeSettings
from tlc_widgets.practice.faults import Faults
from tlc_widgets.practice.generator import (
    _normal,
    count_prompt_tokens,
    default_model,
    prompt_text,
)

PROMPTS = [
    "What is a queue?",
    "Tell me about the White Rabbit",
    "Why must I wait for my turn?",
    "What did the fox say about the grapes?",
    "Tell me about the wolf and the seven little kids",
]


def texts(messages_or_prompt: object, **kwargs: object) -> list[str]:
    return [t.text for t in default_model().generate(messages_or_prompt, **kwargs)]  # type: ignore[arg-type]


def test_public_api() -> None:
    assert tlc_widgets.practice.__all__ == ["MarkovModel", "PracticeSettings", "create_app"]


def test_same_prompt_same_answer() -> None:
    for prompt in PROMPTS:
        assert texts(prompt) == texts(prompt)
        assert texts(prompt, seed=7) == texts(prompt, seed=7)


def test_seed_temperature_and_prompt_change_the_answer() -> None:
    base = texts(PROMPTS[0])
    assert texts(PROMPTS[0], seed=1) != base
    assert texts(PROMPTS[0], temperature=0.2) != base
    assert texts(PROMPTS[0] + " Please.") != base


def test_answer_is_stable_across_processes() -> None:
    # Python's own str hash changes with PYTHONHASHSEED; the answer must not.
    code = (
        "from tlc_widgets.practice.generator import default_model;"
        "print(''.join(t.text for t in default_model().generate('What is a queue?')))"
    )
    answers = {
        subprocess.run(
            [sys.executable, "-c", code],
            env=os.environ | {"PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert answers == {"".join(texts("What is a queue?")) + "\n"}


def test_answer_is_about_the_prompt() -> None:
    model = default_model()
    for prompt in PROMPTS:
        keywords = set(model.keywords(prompt))
        assert keywords
        answer = texts(prompt)
        # It starts at a word of the prompt, or just before it ("The White Rabbit…").
        assert {_normal(w) for w in answer[:3]} & keywords


def test_tokens_are_words_with_their_leading_space() -> None:
    answer = texts(PROMPTS[1])
    assert not answer[0][0].isspace()
    assert answer[0][0].isupper()
    for token in answer[1:]:
        assert token.startswith((" ", "\n\n"))
        assert len(token.split()) == 1


def test_natural_end_is_stop_at_a_sentence_end() -> None:
    for prompt in PROMPTS:
        gen = default_model().generate(prompt)
        answer = [t.text for t in gen]
        assert gen.finish_reason == "stop"
        assert answer[-1].rstrip("'\")").endswith((".", "!", "?"))
        assert 30 <= len(answer) <= 120 + 60


def test_max_tokens_gives_length() -> None:
    gen = default_model().generate(PROMPTS[0], max_tokens=5)
    assert gen.finish_reason is None
    answer = [t.text for t in gen]
    assert len(answer) == 5
    assert gen.finish_reason == "length"
    # The first tokens are the same as without a limit: the limit only cuts.
    assert answer == texts(PROMPTS[0])[:5]


@pytest.mark.parametrize("no_limit", [None, 0, -1])
def test_no_limit(no_limit: int | None) -> None:
    gen = default_model().generate(PROMPTS[0], max_tokens=no_limit)
    assert [t.text for t in gen] == texts(PROMPTS[0])
    assert gen.finish_reason == "stop"


def test_reasoning_comes_first_then_the_answer() -> None:
    gen = default_model().generate(PROMPTS[0], reasoning=True)
    tokens = list(gen)
    flags = [t.reasoning for t in tokens]
    first_answer = flags.index(False)
    assert first_answer > 5
    assert all(flags[:first_answer]) and not any(flags[first_answer:])
    thinking = "".join(t.text for t in tokens[:first_answer])
    assert thinking.startswith("Okay, the user asks about queue.")
    assert not tokens[first_answer].text[0].isspace()
    assert gen.finish_reason == "stop"


def test_reasoning_tokens_count_towards_max_tokens() -> None:
    gen = default_model().generate(PROMPTS[0], reasoning=True, max_tokens=3)
    tokens = list(gen)
    assert [t.reasoning for t in tokens] == [True, True, True]
    assert gen.finish_reason == "length"


def test_chat_messages_and_text_parts() -> None:
    messages = [
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": [{"type": "text", "text": "What is a queue?"}]},
    ]
    whole, last_user = prompt_text(messages)
    assert last_user == "What is a queue?"
    assert whole == "system: You are kind.\nuser: What is a queue?"
    assert default_model().keywords(last_user) == ["queue"]
    assert texts(messages) == texts(messages)
    assert count_prompt_tokens(messages) == len(whole.split()) + 8


def test_unknown_words_still_get_an_answer() -> None:
    gen = default_model().generate("zzz qqq")
    assert len(list(gen)) >= 30
    assert gen.finish_reason == "stop"


def test_a_tiny_model() -> None:
    model = MarkovModel("The cat sat. The dog sat. The cat ran.")
    assert model.vocabulary == {"the", "cat", "sat", "dog", "ran"}
    gen = model.generate("cat", max_tokens=10)
    assert len(list(gen)) == 10
    with pytest.raises(ValueError, match="three words"):
        MarkovModel("too short")


def test_corpus_files_say_where_they_come_from() -> None:
    from importlib import resources

    corpus = resources.files("tlc_widgets.practice").joinpath("corpus")
    files = [f for f in corpus.iterdir() if f.name.endswith(".txt")]
    assert len(files) >= 4
    total = 0
    for f in files:
        text = f.read_text(encoding="utf-8")
        header = text.partition("\n")[0]
        assert header.startswith("Source:") and "public domain" in header.lower()
        total += len(text.encode())
    assert 40_000 <= total <= 120_000


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLC_PRACTICE_PARALLEL", "2")
    monkeypatch.setenv("TLC_PRACTICE_MODELS", '["practice-small"]')
    monkeypatch.setenv("TLC_PRACTICE_TOKENS_PER_SECOND", "0")
    settings = PracticeSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.parallel == 2
    assert settings.tokens_per_second == 0
    assert [m.id for m in settings.offered_models()] == ["practice-small"]
    with pytest.raises(ValueError, match="unknown practice models"):
        PracticeSettings(_env_file=None, models=["gpt-5"]).offered_models()  # type: ignore[call-arg]


def test_faults_update_and_validate() -> None:
    faults = Faults.from_settings(PracticeSettings(_env_file=None, fail_after_tokens=3))  # type: ignore[call-arg]
    assert faults.fail_after_tokens == 3
    changed = faults.updated({"fail_after_tokens": None, "drop_after_tokens": 4})
    assert changed.as_dict() == {
        "fail_after_tokens": None,
        "stall_after_tokens": None,
        "drop_after_tokens": 4,
        "truncate_after_tokens": None,
        "no_models_loaded": False,
        "load_failure": None,
        "load_time_s": None,
    }
    assert changed.first_stream_fault() == ("drop_after_tokens", 4)
    assert Faults().first_stream_fault() is None
    for bad in ({"explode": 1}, {"fail_after_tokens": -1}, {"stall_after_tokens": "3"}):
        with pytest.raises(ValueError):
            faults.updated(bad)
    with pytest.raises(ValueError):
        faults.updated({"no_models_loaded": 1})
