"""Numbers in README and docs are printed by the code that measures them: every generated block matches the
rendering of its stored numbers, and no block is left without its generator."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import docs_numbers  # noqa: E402


def test_every_generated_block_matches_its_stored_numbers():
    for name in docs_numbers.BLOCKS:
        assert docs_numbers.shown(name) == docs_numbers.rendered(name), (
            f"{docs_numbers.BLOCKS[name].file}: the {name} block is stale against docs/generated/{name}.json; run "
            "`make docs-numbers` (or `python scripts/docs_numbers.py` after editing the renderer)"
        )


def test_every_marked_block_has_a_generator():
    marked = set()
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        marked |= set(re.findall(r"<!-- generated: ([\w-]+) -->", path.read_text()))
    assert marked == set(docs_numbers.BLOCKS)


def test_a_changed_number_is_caught(tmp_path, monkeypatch):
    numbers = docs_numbers.stored("quickstart")
    numbers["arms"]["gd"]["first"] += 0.01
    store = tmp_path / "generated"
    store.mkdir()
    (store / "quickstart.json").write_text(docs_numbers.json.dumps(numbers))
    monkeypatch.setattr(docs_numbers, "STORE", store)
    assert docs_numbers.shown("quickstart") != docs_numbers.rendered("quickstart")
