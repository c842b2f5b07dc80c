"""The README's and docs' real-data claims are generated from the committed benchmark results:
a test fails when the text drifts from benchmarks/results/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import claims  # noqa: E402


@pytest.fixture(scope="module")
def generated() -> str:
    return claims.generate()


@pytest.mark.parametrize("path", claims.TARGETS, ids=lambda p: p.name)
def test_the_claims_block_equals_what_the_results_give(path, generated):
    text = path.read_text(encoding="utf-8")
    start, end = text.index(claims.BEGIN), text.index(claims.END) + len(claims.END)
    assert text[start:end] == generated, "run: python benchmarks/claims.py"


def test_a_hand_edited_number_is_caught(tmp_path, monkeypatch, generated):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + generated.replace("| 0.", "| 0.9", 1) + "\nrest\n")
    monkeypatch.setattr(claims, "TARGETS", (readme,))
    monkeypatch.setattr(claims, "generate", lambda: generated)
    assert claims.main(["--check"]) == 1
    assert claims.main([]) == 0 and claims.main(["--check"]) == 0
    assert readme.read_text() == "intro\n" + generated + "\nrest\n"


@pytest.mark.parametrize("low,high,word", [(0.01, 0.2, "better"), (-0.2, -0.01, "worse"),
                                           (-0.05, 0.1, "no clear difference"),
                                           (0.0, 0.1, "no clear difference"),
                                           (None, None, "no clear difference"),
                                           (float("nan"), 0.1, "no clear difference")])
def test_verdict_words_come_from_the_interval_only(low, high, word):
    from aam.reports.stats import interval_verdict

    assert interval_verdict(low, high) == word
