"""Keys the upstreams require (LM Studio 0.4 "Require Authentication"): one for all, or one
per upstream by URL; anything that cannot be right stops the start, naming the entry."""

from __future__ import annotations

import pytest

from tests.test_keys import _serve
from tlc_widgets.config import Settings
from tlc_widgets.server.upstream_keys import upstream_headers, upstream_keys

A, B = "http://127.0.0.1:1234/v1", "http://127.0.0.1:1235/v1"


def settings(keys: str | None) -> Settings:
    return Settings(_env_file=None, upstreams=[A, B], upstream_keys=keys)  # type: ignore[call-arg]


def test_no_keys_means_no_header() -> None:
    assert upstream_headers(settings(None), A) == {}


def test_one_key_for_every_upstream_and_one_per_url() -> None:
    every = settings("sk-lm-every")
    assert upstream_headers(every, A) == upstream_headers(every, B + "/")
    assert upstream_headers(every, A) == {"Authorization": "Bearer sk-lm-every"}
    # A key with '=' (base64 padding) is a bare key, not a URL=KEY pair.
    assert upstream_headers(settings("c2stbG0=="), B) == {"Authorization": "Bearer c2stbG0=="}
    per = settings(f"{B}/=sk-lm-b")
    assert upstream_headers(per, A) == {}  # only B needs one
    assert upstream_headers(per, B) == {"Authorization": "Bearer sk-lm-b"}
    both = settings(f"{A}=sk-lm-a, sk-lm-rest")
    assert upstream_keys(both) == {A: "sk-lm-a", None: "sk-lm-rest"}
    assert upstream_headers(both, B) == {"Authorization": "Bearer sk-lm-rest"}


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ("http://127.0.0.1:9999/v1=sk-x", "entry 1: http://127.0.0.1:9999/v1 is not an upstream"),
        (f"{A}=", "entry 1: write URL=KEY"),
        (f"{A}=sk-1,{A}=sk-2", f"entry 2: a second key for {A}"),
        ("sk-1, sk-2", "entry 2: a second key for every upstream"),
        ("sk with space", "no spaces or control characters"),
        (" , ", "is set but holds no keys"),
    ],
)
def test_upstream_keys_that_cannot_be_right_are_named(keys: str, named: str) -> None:
    with pytest.raises(ValueError, match=named) as refused:
        upstream_keys(settings(keys))
    assert "sk-1" not in str(refused.value) and "sk-x" not in str(refused.value)


def test_tlc_serve_refuses_an_upstream_key_for_no_upstream() -> None:
    done = _serve("--upstream", A, "--upstream-key", "http://127.0.0.1:9/v1=sk-secret")
    assert done.returncode != 0
    assert "--upstream-key) entry 1: http://127.0.0.1:9/v1 is not an upstream" in done.stderr
    assert "sk-secret" not in done.stderr and "Traceback" not in done.stderr


def test_headers_do_not_recheck_urls_once_started() -> None:
    # With --practice the upstreams are replaced after the start-up check: no error then.
    practice = Settings(
        _env_file=None, upstreams=["http://127.0.0.1:7/v1"], upstream_keys=f"{A}=sk-a"
    )  # type: ignore[call-arg]
    assert upstream_headers(practice, "http://127.0.0.1:7/v1") == {}
    assert upstream_headers(practice, A) == {"Authorization": "Bearer sk-a"}
