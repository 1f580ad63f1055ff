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


def test_the_reproductions_page_is_what_its_stored_runs_make_it():
    """docs/reproductions.md, notes included, is rendered from docs/reproductions/*.json by
    scripts/reproductions_doc.py: every figure in it comes from a stored run."""
    import reproductions_doc

    assert (ROOT / "docs" / "reproductions.md").read_text() == reproductions_doc.render(), (
        "docs/reproductions.md is stale: run `python scripts/reproductions_doc.py`"
    )


def test_reproduction_notes_quote_no_typed_result():
    """A note's figures are placeholders filled from the stored runs; what remains typed are settings (η, steps,
    sizes) and dates. A measured-looking number (any decimal, a decimal range, a ratio with ×, a percentage) typed
    into a note fails here, unless listed below as a setting or the paper's own figure."""
    import reproductions_doc

    typed = []
    for name, note in {**reproductions_doc.NOTES, **reproductions_doc.AFTER_RUN}.items():
        for pattern in (r"\d\.\d+–\d", r"\d+(?:\.\d+)?×", r"\d+%", r"≈ ?\d", r"\d+\.\d+"):
            typed += [f"{name}: {m}" for m in re.findall(pattern, note)]
    allowed = {"warmup: 5×", "optimization-assumptions: 1×", "cdat: 2×"}  # a setting's ratio, check thresholds
    allowed |= {  # decimals that are settings or the paper's own figures, not results of a run
        "adam-preconditioned-edge: 0.9",  # β1
        "adam-preconditioned-edge: 0.99",  # 1 − β1^(t+1) from step 43 on, a closed form
        "cdat: 1.9375",  # a σ of the registered grid
        "directional-sharpness: 0.31",  # the paper's largest ratio (Tables 3–6)
    }
    assert not [t for t in typed if t not in allowed], typed


def test_definitions_state_the_edge_thresholds_the_code_uses():
    """docs/definitions.md types the edge verdict's thresholds; they must be the constants its one owner holds."""
    from curvlab.experiments import edge

    text = (ROOT / "docs" / "definitions.md").read_text()
    stated = [
        f"first r ≤ {edge.BELOW:g}",
        f"r ≥ {edge.REACHED:g}",
        f"within [{edge.BAND[0]:g}, {edge.BAND[1]:g}]",
        "below\n  half its start" if edge.LOSS_FALLS_TO == 0.5 else f"{edge.LOSS_FALLS_TO:g}",
        "at least one rise" if edge.LOSS_RISES == 1 else f"{edge.LOSS_RISES} rises",
        f"first r < {edge.LATE_BELOW:g}",
        f"within [{edge.LATE_BAND[0]:g}, {edge.LATE_BAND[1]:g}]",
    ]
    missing = [s for s in stated if s not in text]
    assert not missing, f"docs/definitions.md does not state the code's thresholds: {missing}"
