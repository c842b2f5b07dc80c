"""The repository reads like a product: a short README that starts with the set-up commands,
only current results under benchmarks/results/, docs about the software rather than its history,
and no broken relative links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
SETUP = ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" torch==2.13.0'
         " && ")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HISTORY = re.compile(r"\bissue \d+\b|\bsession \d+\b|work period", re.IGNORECASE)


def _first_code_block(text: str) -> list[str]:
    match = re.search(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no code block"
    return match.group(1).splitlines()


def test_readme_is_under_200_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n < 200, f"README.md has {n} lines; move detail into docs/"


def test_readme_starts_with_the_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert text.index("```") < text.index("\n## "), "the commands come before any section"
    first, second = _first_code_block(text)[:2]
    assert first == SETUP + "snakemake --profile profiles/local"
    assert second == SETUP + "pytest -q"


def test_benchmark_results_hold_no_development_folders():
    results = REPO / "benchmarks" / "results"
    dev = sorted(p.name for p in results.iterdir() if p.is_dir() and p.name.startswith("dev-"))
    assert dev == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_describe_the_software_not_its_history(path):
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text("utf-8").splitlines(), 1)
            if HISTORY.search(line)]
    assert hits == []


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(path):
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL, mailto: or an anchor on the same page
        if not (path.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert broken == []


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[here](missing.md) and [there](https://example.org) and [up](#top)\n")
    targets = [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:|#", t)]
    assert targets == ["missing.md"]
    assert not (tmp_path / targets[0]).exists()
