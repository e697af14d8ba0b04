"""`stream.text.one_line`: error text made one line for logs, store rows and `error:` messages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from stream.text import one_line

pytestmark = pytest.mark.fast  # make test-fast


def test_whitespace_runs_become_one_space() -> None:
    assert one_line(OSError("disk\n  full\tnow ")) == "disk full now"
    assert one_line("  already\r\none line ") == "already one line"


def test_an_exception_without_text_gives_its_type() -> None:
    assert one_line(TimeoutError()) == "TimeoutError"
    assert one_line(ValueError(" \n ")) == "ValueError"
    assert one_line("") == ""  # a string has no type worth naming


def test_a_limit_cuts_with_an_ellipsis() -> None:
    assert one_line("x" * 10, limit=10) == "x" * 10
    cut = one_line("word " * 50, limit=20)
    assert len(cut) == 20 and cut.endswith("…")
    with pytest.raises(ValueError, match="limit must be at least 1"):
        one_line("text", limit=0)


def test_it_imports_nothing_of_the_project() -> None:
    tree = ast.parse((Path(__file__).resolve().parents[1] / "stream" / "text.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    names = [node.module if isinstance(node, ast.ImportFrom) else node.names[0].name for node in imports]
    assert names and all(str(name).split(".")[0] in sys.stdlib_module_names for name in names), names
