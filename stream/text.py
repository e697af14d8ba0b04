"""Error text for one line of a log, a store row or an `error:` message; the standard library only."""

from __future__ import annotations

ELLIPSIS = "…"


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
