"""The examples gallery (docs/gallery.md) shows every example, with figures from a run of the command it shows, and
is exactly what scripts/gallery.py renders from its stored entries (no hand edits)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gallery  # noqa: E402


def test_every_example_has_a_gallery_entry():
    shown = [f for entry in gallery.ENTRIES.values() for f in entry.files]
    assert sorted(shown) == sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_file()), (
        "each file in examples/ belongs to exactly one entry of scripts/gallery.py's ENTRIES"
    )


def test_every_entry_has_its_figures_and_its_time():
    for name, entry in gallery.ENTRIES.items():
        numbers = json.loads((gallery.STORE / f"{name}.json").read_text())
        assert len(numbers["figures"]) == len(entry.figures)
        for figure in numbers["figures"]:
            assert (gallery.STORE / figure).stat().st_size > 5000, f"{figure}: missing or empty"
        assert numbers["seconds"] is None or numbers["seconds"] > 0


def test_the_page_is_its_rendering():
    assert gallery.PAGE.read_text() == gallery.render(), (
        "docs/gallery.md differs from its rendering: run `python scripts/gallery.py` (after `--run NAME`)"
    )
    nav = (ROOT / "mkdocs.yml").read_text()
    assert "gallery.md" in nav
