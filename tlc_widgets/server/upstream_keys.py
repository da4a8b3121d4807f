"""Keys the upstreams require: LM Studio 0.4's "Require Authentication", or any
OpenAI-compatible server behind a token.

    >>> s = Settings(
    ...     upstreams=["http://a:1234/v1", "http://b:1234/v1"],
    ...     upstream_keys="http://b:1234/v1=sk-lm-for-b, sk-lm-for-every-other",
    ... )
    >>> upstream_headers(s, "http://a:1234/v1")
    {'Authorization': 'Bearer sk-lm-for-every-other'}
    >>> upstream_headers(s, "http://b:1234/v1/")
    {'Authorization': 'Bearer sk-lm-for-b'}

`--upstream-key` (repeatable) or `TLC_UPSTREAM_KEYS` (comma-separated) holds entries of two
forms: `URL=KEY` for the upstream whose base URL is `URL` (as given to `--upstream`), and a
bare `KEY` for every upstream without a key of its own. Pairs, not "the same order as
`--upstream`": an order is easy to get wrong silently, a URL is not. LM Studio reads the
key as `Authorization: Bearer KEY`, like OpenAI.
"""

from __future__ import annotations

from ..config import Settings

__all__ = ["upstream_headers", "upstream_keys"]

_WHERE = "TLC_UPSTREAM_KEYS (--upstream-key)"


def upstream_keys(settings: Settings, *, check_urls: bool = True) -> dict[str | None, str]:
    """Base URL → key (`None`: every upstream without one of its own); `{}` without keys.

    Raises `ValueError` naming the entry for what cannot be right: `URL=` with no key, a URL
    that is not an upstream, two keys for one upstream, a key with spaces, or nothing at all.
    """
    if settings.upstream_keys is None:
        return {}
    keys: dict[str | None, str] = {}
    text = settings.upstream_keys.get_secret_value()
    for n, item in enumerate((part.strip() for part in text.split(",")), start=1):
        if not item:
            continue
        url: str | None = None
        key = item
        if item.startswith(("http://", "https://")):
            given, sep, key = item.partition("=")
            url, key = given.strip().rstrip("/"), key.strip()
            if not sep or not key:
                raise ValueError(f"{_WHERE} entry {n}: write URL=KEY, or KEY for every upstream.")
            if check_urls and url not in settings.upstreams:
                upstreams = ", ".join(settings.upstreams)
                raise ValueError(f"{_WHERE} entry {n}: {url} is not an upstream ({upstreams}).")
        if url in keys:
            raise ValueError(f"{_WHERE} entry {n}: a second key for {url or 'every upstream'}.")
        if not key.isprintable() or any(c.isspace() for c in key):
            raise ValueError(f"{_WHERE} entry {n}: a key has no spaces or control characters.")
        keys[url] = key
    if not keys:
        raise ValueError(f"{_WHERE} is set but holds no keys; remove it if no upstream needs one.")
    return keys


def upstream_headers(settings: Settings, url: str) -> dict[str, str]:
    """The headers every call to the upstream at base URL `url` carries (`{}`: none).

    URLs are not checked against `settings.upstreams` here (`tlc serve` checked them at
    start): with `--practice` the upstreams are replaced by the in-process practice model.
    """
    keys = upstream_keys(settings, check_urls=False)
    key = keys.get(url.rstrip("/"), keys.get(None))
    return {"Authorization": f"Bearer {key}"} if key else {}
