"""The figures README and docs/ quote, printed by the code that measures them: each generated block sits between
``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` markers and is rendered from the numbers stored in
docs/generated/NAME.json. tests/test_docs_numbers.py fails when a block differs from its rendering.

    python scripts/docs_numbers.py          # re-render every block from the stored numbers
    python scripts/docs_numbers.py --run    # measure again first (all blocks: a few minutes)
    python scripts/docs_numbers.py --run NAME   # measure one block again

``make docs-numbers`` runs the second.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import critical_sharpness_figure
import curvatures_figure
import fsdp_errors
import stopping_rules

from curvlab.experiments.quickstart import run_quickstart, summary_paragraph

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "docs" / "generated"


def _measure_quickstart() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_quickstart(tmp, quiet=True)
        return json.loads((Path(tmp) / "summary.json").read_text())


@dataclass
class Block:
    """One generated block: the file that shows it, how to render it from its numbers, how to measure them."""

    file: str
    render: Callable[[dict], str]
    measure: Callable[[], dict]


BLOCKS = {
    "quickstart": Block("README.md", summary_paragraph, _measure_quickstart),
    "stopping-rules": Block("docs/core.md", stopping_rules.paragraph, stopping_rules.measure),
    "curvatures-run": Block("docs/metrics/curvatures.md", curvatures_figure.paragraph, curvatures_figure.measure),
    "critical-sharpness-runs": Block(
        "docs/metrics/critical_sharpness.md", critical_sharpness_figure.paragraph, critical_sharpness_figure.measure
    ),
    "fsdp-errors": Block("docs/distributed.md", fsdp_errors.paragraph, fsdp_errors.measure),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"


def stored(name: str) -> dict:
    return json.loads((STORE / f"{name}.json").read_text())


def rendered(name: str) -> str:
    """The block as its stored numbers render it, markers included."""
    start, end = markers(name)
    return f"{start}\n{BLOCKS[name].render(stored(name))}\n{end}"


def shown(name: str) -> str | None:
    """The block as its file shows it now (None when the markers are missing)."""
    start, end = markers(name)
    text = (ROOT / BLOCKS[name].file).read_text()
    found = re.search(re.escape(start) + ".*?" + re.escape(end), text, flags=re.S)
    return found.group(0) if found else None


def write(name: str) -> None:
    path = ROOT / BLOCKS[name].file
    current = shown(name)
    if current is None:
        raise SystemExit(f"{path}: no {markers(name)[0]} … {markers(name)[1]} block to fill")
    path.write_text(path.read_text().replace(current, rendered(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="measure the numbers again before rendering")
    parser.add_argument("names", nargs="*", help=f"blocks (default: all of {sorted(BLOCKS)})")
    args = parser.parse_args()
    for name in args.names or BLOCKS:
        if args.run:
            (STORE / f"{name}.json").write_text(json.dumps(BLOCKS[name].measure(), indent=1) + "\n")
        write(name)
        print(f"{BLOCKS[name].file}: {name} block written from docs/generated/{name}.json")


if __name__ == "__main__":
    main()
