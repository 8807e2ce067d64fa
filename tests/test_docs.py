"""The documentation says what the code does: docs/cli.md names every command and every
option that `--help` shows, the README stays a short user's page that points to the
reference, and every link between the pages leads to a file that is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command

from clipsearch.cli import app

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
COMMANDS = get_command(app).commands


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def summaries(text: str) -> dict[str, str]:
    """Each `clipsearch CMD ...` line in a page's code blocks, with the indented lines
    that continue it, by command."""
    out: dict[str, str] = {}
    for block in code_blocks(text):
        for m in re.finditer(r"^clipsearch (\w+)(.*\n(?:[ \t]+.*\n)*)", block, re.MULTILINE):
            out[m[1]] = out.get(m[1], "") + m[2]
    return out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_in_the_commands_summary_in_the_cli_reference(name):
    summary = summaries((DOCS / "cli.md").read_text()).get(name)
    assert summary is not None, f"docs/cli.md has no `clipsearch {name} ...` summary"
    missing = [
        param.opts[0]
        for param in COMMANDS[name].params
        if param.opts[0].startswith("-")
        and not any(re.search(rf"{re.escape(o)}\b", summary) for o in param.opts)
    ]
    assert missing == [], f"`clipsearch {name}` in docs/cli.md lacks {missing}"


def test_the_readme_is_a_short_page_that_leads_to_the_reference():
    readme = README.read_text()
    assert len(readme.splitlines()) <= 220
    pages = sorted(DOCS.glob("*.md"))
    assert len(pages) >= 3
    assert [p.name for p in pages if f"docs/{p.name}" not in readme] == []


def test_the_readmes_test_command_is_what_ci_runs():
    command = "python -m pytest -q"
    assert any(
        line == command for block in code_blocks(README.read_text()) for line in block.splitlines()
    )
    assert command in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_link_leads_to_a_file_that_is_there(page):
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t.split("#")[0]]
    assert [t for t in local if not (page.parent / t).exists()] == []


def test_the_reference_lists_the_commands_in_the_order_help_does():
    sections = re.findall(r"^## clipsearch (\w+)", (DOCS / "cli.md").read_text(), re.MULTILINE)
    assert sections == list(COMMANDS)
