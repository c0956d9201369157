"""Every ``ecard`` command and every script README.md and docs/ show exists: a documented command
that does not is a defect (``ecard ledger verify`` was documented and missing from the CLI)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ecard.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCED = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
_INLINE = re.compile(r"`([^`\n]+)`")
#: a command line: optional prompt and environment assignments, then ecard and its words
_COMMAND = re.compile(
    r"^(?:\$ )?(?:[A-Z_]+=\S* )*(?:\.venv/bin/)?ecard((?: [a-z][a-z-]*)+)(?:\s|$)"
)
_SCRIPT = re.compile(r"\bscripts/[A-Za-z0-9_/.-]+\.(?:sh|py)\b")


def _documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        lines = [line.strip() for block in _FENCED.findall(text) for line in block.splitlines()]
        lines += [span.strip() for span in _INLINE.findall(_FENCED.sub("", text))]
        for line in lines:
            if match := _COMMAND.match(line):
                found.append((doc.name, match.group(1).split()))
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = _documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 20
    assert any(words[:2] == ["ledger", "verify"] for _, words in COMMANDS)


@pytest.mark.parametrize(
    ("doc", "words"), COMMANDS, ids=[f"{d}: ecard {' '.join(w)}" for d, w in COMMANDS]
)
def test_every_documented_ecard_command_exists(doc: str, words: list[str]) -> None:
    parser, path = build_parser(), []
    for word in words:  # the subcommands; what follows them is arguments
        choices = _subcommands(parser)
        if word not in choices:
            break
        parser, path = choices[word], [*path, word]
    assert path, f"{doc} shows `ecard {' '.join(words)}`, which `ecard --help` does not list"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*path, "--help"])
    assert exited.value.code == 0 and "usage: ecard " + " ".join(path) in " ".join(
        out.getvalue().split()
    )


def test_every_documented_script_exists() -> None:
    shown = {
        (doc.name, m) for doc in DOCS for m in _SCRIPT.findall(doc.read_text(encoding="utf-8"))
    }
    assert shown
    missing = sorted(f"{doc}: {script}" for doc, script in shown if not (ROOT / script).is_file())
    assert not missing, missing


def _documented_python_scripts() -> list[str]:
    return sorted(
        {
            script
            for doc in DOCS
            for script in _SCRIPT.findall(doc.read_text(encoding="utf-8"))
            if script.endswith(".py") and (ROOT / script).is_file()
        }
    )


@pytest.mark.parametrize("script", _documented_python_scripts())
def test_every_documented_python_script_runs(script: str) -> None:
    """Each Python script the docs show (the benchmarks of docs/PERFORMANCE.md among them) at
    least starts and explains itself: its imports resolve and its options parse."""
    done = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{script} --help: {done.stderr[-2000:]}"
    assert "usage:" in done.stdout, f"{script} --help printed no usage"


#: a contributor check the docs show: ``.venv/bin/<tool> <arguments>`` (comment stripped)
_CHECK = re.compile(r"^(\.venv/bin/(?:ruff|mypy)\b[^#]*?)\s*(?:#.*)?$")


def test_every_documented_contributor_check_is_what_ci_runs() -> None:
    """The lint and type checks the docs tell a contributor to run are, word for word, lines of
    ``.ci/run`` (which runs them before the tests), and each tool is pinned in the test extra."""
    ci_lines = {
        line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    }
    shown = {
        (doc.name, match.group(1))
        for doc in DOCS
        for block in _FENCED.findall(doc.read_text(encoding="utf-8"))
        for line in block.splitlines()
        if (match := _CHECK.match(line.strip()))
    }
    assert {"ruff", "mypy"} <= {command.split()[0].rsplit("/", 1)[1] for _, command in shown}
    missing = sorted(f"{doc}: {command}" for doc, command in shown if command not in ci_lines)
    assert not missing, f"shown in the docs but not run by .ci/run: {missing}"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'"ruff==[0-9.]+"', pyproject) and re.search(r'"mypy==[0-9.]+"', pyproject)
