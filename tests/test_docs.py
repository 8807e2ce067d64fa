"""The README's command summaries say what `--help` says: every command, every option."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command

from clipsearch.cli import app

README = (Path(__file__).parents[1] / "README.md").read_text()
COMMANDS = get_command(app).commands


def summaries() -> dict[str, str]:
    """Each `clipsearch CMD ...` line in the README's code blocks, with the indented lines
    that continue it, by command."""
    out: dict[str, str] = {}
    for block in code_blocks():
        for m in re.finditer(r"^clipsearch (\w+)(.*\n(?:[ \t]+.*\n)*)", block, re.MULTILINE):
            out[m[1]] = out.get(m[1], "") + m[2]
    return out


def code_blocks() -> list[str]:
    blocks, current = [], None
    for line in README.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current = ""
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current += line
    return blocks


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_in_the_commands_readme_summary(name):
    summary = summaries().get(name)
    assert summary is not None, f"README has no `clipsearch {name} ...` summary"
    missing = [
        param.opts[0]
        for param in COMMANDS[name].params
        if param.opts[0].startswith("-")
        and not any(re.search(rf"{re.escape(o)}\b", summary) for o in param.opts)
    ]
    assert missing == [], f"`clipsearch {name}` in README lacks {missing}"
