"""The README and the docs/ pages show commands that work, flags that exist and links that lead somewhere.

Every command the pages show (in code blocks, and in inline code that starts with the program) is found:
`run_stream.py`, `deepfake-stream` (the console script of `run_stream:main`, so it is checked as run_stream.py),
`python -m MODULE` and `python bench/SCRIPT.py`. The README's own `run_stream.py` commands that need no camera,
display, remote host, GPU, Ray cluster, PostgreSQL server or network (the `demo` source, `--model-info`) are run
for real, with `--duration 2` on a detector run, the engine pinned (tests/helpers.py PIN_ENGINE) and `--db` in a
temp dir, and must exit 0. Every other command has each of its flags looked up in its tool's `--help` output, so a
page that shows a flag the tool does not have fails here. The `--help` texts come from one child process that runs
each tool as `__main__` with `--help` (runpy), so torch is imported once, not once per tool.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from model.labels import UNCALIBRATED_WARNING
from tests.helpers import PIN_ENGINE

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # the project's hook checks the same
SHELL_FENCES = {"", "sh", "bash", "shell", "console"}
PYTHONS = re.compile(r"python(3(\.\d+)?)?")
# A line or inline span that may hold a command: worth splitting into words.
COMMAND_HINT = re.compile(r"(^|\s)(\S*/)?(python(3(\.\d+)?)?|run_stream\.py|deepfake-stream|bench/\w+\.py)(\s|$)")
FLAG = re.compile(r"^--?[A-Za-z][\w-]*$")
HELP_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
# A path the pages name, inside backticks or a code block (not `deepfake-stream/1`, a schema name).
PATH = re.compile(r"(?<![\w/.-])((?:stream|model|dashboard|bench|tests|configs)/[\w./*-]*[\w*/])")
# The README's commands that reach past this machine's CPU and a temp dir are never run, only checked.
NOT_RUN_FLAGS = {
    "--dashboard": "serves a web page",
    "--dashboard-only": "serves a web page",
    "--serve": "a network service",
    "--webhook": "posts to a network receiver",
}


@dataclass(frozen=True)
class Command:
    """One command a page shows: the tool it runs and the words after it."""

    page: str
    line: int
    text: str
    tool: tuple[str, str]  # ("script", "run_stream.py") | ("module", "model.train")
    args: tuple[str, ...]
    in_code_block: bool

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"

    @property
    def flags(self) -> list[str]:
        words = (word.strip("[]") for word in self.args)
        return [word.split("=", 1)[0] for word in words if FLAG.match(word.split("=", 1)[0])]


def code_lines(text: str) -> list[tuple[int, str, bool]]:
    """(line number, text, inside a shell code block) for every line, code block continuations joined."""
    lines, fence, pending = [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            continue
        shell = fence is not None and fence in SHELL_FENCES
        if pending is not None:
            start, joined = pending
            line, number = joined + " " + stripped, start
        if shell and line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1])
            continue
        pending = None
        lines.append((number, line, fence is not None and shell))
    return lines


def command_in(words: list[str], anywhere: bool) -> tuple[tuple[str, str], tuple[str, ...]] | None:
    """The tool and its arguments, when `words` run one (after `sudo` and VAR=value words)."""
    for index, word in enumerate(words):
        name = word.rsplit("/", 1)[-1]
        if PYTHONS.fullmatch(name):
            rest = words[index + 1 :]
            if len(rest) >= 2 and rest[0] == "-m":
                return ("module", rest[1]), tuple(rest[2:])
            if rest and rest[0].endswith(".py"):
                return ("script", rest[0]), tuple(rest[1:])
            return None
        if name in ("run_stream.py", "deepfake-stream"):
            return ("script", "run_stream.py"), tuple(words[index + 1 :])
        if re.fullmatch(r"bench/\w+\.py", word):
            return ("script", word), tuple(words[index + 1 :])
        if not (anywhere and (word == "sudo" or re.fullmatch(r"[A-Z_]+=\S*", word))):
            return None
    return None


def shown_commands(page: Path) -> list[Command]:
    found = []
    relative = page.relative_to(ROOT).as_posix()
    for number, line, in_block in code_lines(page.read_text()):
        pieces = [line] if in_block else re.findall(r"`([^`]+)`", line)
        for piece in pieces:
            if not COMMAND_HINT.search(piece):
                continue
            try:
                words = shlex.split(piece, comments=in_block)
            except ValueError as error:
                pytest.fail(f"{relative}:{number}: cannot split {piece!r} into words: {error}")
            command = command_in(words, anywhere=True)
            if command:
                found.append(Command(relative, number, piece.strip(), command[0], command[1], in_block))
    return found


def all_commands() -> list[Command]:
    return [command for page in PAGES for command in shown_commands(page)]


def run_for_real(command: Command) -> bool:
    """A README run_stream.py command that needs nothing but this machine's CPU and a temp dir."""
    if command.page != "README.md" or not command.in_code_block or command.tool != ("script", "run_stream.py"):
        return False
    import run_stream  # the standard library only, until main()

    try:
        args = run_stream.parse_args(list(command.args))
    except SystemExit:
        pytest.fail(f"run_stream.py refuses the README's command: {command.where}")
    if any(flag in NOT_RUN_FLAGS for flag in command.flags) or (args.device or "auto").startswith("cuda"):
        return False
    if args.db and "://" in args.db:
        return False
    return (args.sources and set(args.sources) == {"demo"}) or (not args.sources and args.model_info)


HELP_RUNNER = """
import contextlib, io, json, runpy, sys
texts = {}
for kind, name in json.loads(sys.argv[1]):
    sys.argv = [name, "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            if kind == "module":
                runpy.run_module(name, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(name, run_name="__main__")
    except SystemExit:
        pass
    except BaseException as error:
        out.write(f"HELP FAILED: {type(error).__name__}: {error}")
    texts[f"{kind}:{name}"] = out.getvalue()
print("HELP-TEXTS " + json.dumps(texts))
"""


def help_texts(tools: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    done = subprocess.run(
        [sys.executable, "-c", HELP_RUNNER, json.dumps(tools)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,  # the checkout's packages first on the path, as run_stream.py run from here has them
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    marker = [line for line in done.stdout.splitlines() if line.startswith("HELP-TEXTS ")]
    assert done.returncode == 0 and marker, done.stdout[-2000:] + done.stderr[-2000:]
    texts = json.loads(marker[-1].removeprefix("HELP-TEXTS "))
    return {tuple(key.split(":", 1)): text for key, text in texts.items()}


def tool_exists(tool: tuple[str, str]) -> bool:
    kind, name = tool
    if kind == "script":
        return (ROOT / name).is_file()
    return importlib.util.find_spec(name) is not None


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make run" in text and "make test" in text
    assert text.index("make run") < text.index("## Sources")
    assert UNCALIBRATED_WARNING in text  # the README quotes what an uncalibrated run says, word for word


def test_a_bare_streamlit_run_is_shown_only_with_usage_statistics_off() -> None:
    shown = any(re.search(r"(^|[\s`])streamlit run\b", page.read_text(), re.MULTILINE) for page in PAGES)
    if shown:
        config = (ROOT / ".streamlit" / "config.toml").read_text()
        assert re.search(r"^gatherUsageStats\s*=\s*false", config, re.MULTILINE)


def test_the_readme_commands_that_need_only_this_machine_run(tmp_path) -> None:
    runnable = [command for command in all_commands() if run_for_real(command)]
    assert {command.args[:1] for command in runnable} >= {("demo",), ("--model-info",)}, runnable
    for index, command in enumerate(runnable):
        extra = [*PIN_ENGINE, "--db", str(tmp_path / f"run{index}.db")]
        if "--model-info" not in command.args:
            extra += ["--duration", "2"]
        if "--report" in command.flags:
            extra += ["--report", str(tmp_path / f"report{index}.json")]
        done = subprocess.run(
            [sys.executable, str(ROOT / "run_stream.py"), *command.args, *extra],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert done.returncode == 0, f"{command.where}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, command.where


def test_every_flag_the_pages_show_is_in_its_tools_help() -> None:
    commands = all_commands()
    assert any(c.page == "README.md" for c in commands) and any(c.page != "README.md" for c in commands)
    for command in commands:
        assert tool_exists(command.tool), f"no such tool: {command.where}"
    tools = sorted({command.tool for command in commands if command.flags})
    texts = help_texts(tools)
    missing = []
    for command in (c for c in commands if c.flags):
        text = texts.get(command.tool, "")
        assert "usage:" in text, f"no --help from {command.tool}: {text[-500:]}"
        known = set(HELP_FLAG.findall(text))
        missing += [f"{flag} in {command.where}" for flag in command.flags if flag not in known]
    assert not missing, "flags the tool's --help does not know:\n" + "\n".join(missing)


def test_every_run_stream_flag_is_in_the_flag_table() -> None:
    import run_stream

    table = (ROOT / "docs" / "cli-and-config.md").read_text().split("## Flags", 1)[1].split("\n## ", 1)[0]
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        run_stream.parse_args(["--help"])
    flags = set(HELP_FLAG.findall(help_text.getvalue())) - {"-h", "--help"}
    assert "--window" in flags, help_text.getvalue()
    assert not flags - set(HELP_FLAG.findall(table)), (
        f"not in docs/cli-and-config.md: {flags - set(HELP_FLAG.findall(table))}"
    )


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    lines = code_lines(page.read_text())
    return {slug(line.lstrip("#")) for _, line, in_block in lines if line.startswith("#") and not in_block}


def test_links_between_the_pages_lead_to_a_page_and_a_heading() -> None:
    broken = []
    for page in PAGES:
        for _, line, in_block in code_lines(page.read_text()):
            if in_block:
                continue
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if "://" in target:
                    continue
                path, _, anchor = target.partition("#")
                linked = (page.parent / path).resolve() if path else page
                if not linked.is_file() or (anchor and anchor not in anchors(linked)):
                    broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_files_the_pages_name_exist() -> None:
    missing = []
    for page in PAGES:
        for number, line, in_block in code_lines(page.read_text()):
            pieces = [line] if in_block else re.findall(r"`([^`]+)`", line)
            for path in (p for piece in pieces for p in PATH.findall(piece)):
                if any(ROOT.glob(path)) or (ROOT / path).exists():
                    continue
                missing.append(f"{page.relative_to(ROOT)}:{number}: {path}")
    assert not missing, missing
