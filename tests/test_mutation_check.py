"""The mutation check (scripts/mutation_check.py) stays applicable: each mutation's piece is in its source file
exactly once, so no mutation can silently stop applying; and the page it writes states each result."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import mutation_check  # noqa: E402


def test_every_mutation_applies_to_the_current_source(tmp_path):
    for mutation in mutation_check.MUTATIONS:
        text = (ROOT / mutation.file).read_text()
        assert text.count(mutation.old) == 1, mutation.name
        assert mutation.new != mutation.old and all((ROOT / t).exists() for t in mutation.tests if t.endswith(".py"))


def test_the_page_says_which_survived():
    first, second = mutation_check.MUTATIONS[:2]
    text = mutation_check.page([(first, True, 1.0), (second, False, 2.0)])
    assert "1 of 2 caught" in text and "**survived**" in text and first.name in text
