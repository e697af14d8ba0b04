"""Text safe for one line of a log, a store row or an `error:` message: errors on one line, URLs without their
secrets; the standard library only."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

ELLIPSIS = "…"
MASK = "***"
# A query (or fragment) parameter whose name holds one of these is a secret: `password`, `api_key`, `access_token`,
# `X-Amz-Signature`, `sig`, `auth`... Names such as `keyframes` are masked too: showing less is the safe mistake.
SECRET_NAME = re.compile(r"pass|pwd|token|key|secret|auth|sig|credential", re.IGNORECASE)


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """`error`'s text with every run of whitespace (newlines included) made one space; an exception without text
    gives its type's name. Longer than `limit` characters, it is cut to `limit`, ending in "…"."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 character or None, got {limit}")
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + ELLIPSIS
    return text


def redact_url(url: str) -> str:
    """`url` safe to show or store: `user:password@` becomes `***@` and the value of every query or fragment
    parameter whose name looks secret (SECRET_NAME) becomes `***`; other parameters are kept. A URL too malformed
    to split keeps only its scheme."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.partition('://')[0]}://{MASK}"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query, fragment = _redact_parameters(parts.query), _redact_parameters(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _redact_parameters(text: str) -> str:
    pairs = text.split("&")
    for index, pair in enumerate(pairs):
        name, equals, value = pair.partition("=")
        if equals and value and SECRET_NAME.search(unquote_plus(name)):
            pairs[index] = f"{name}={MASK}"
    return "&".join(pairs)
