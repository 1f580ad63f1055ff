"""The figures README and docs/ quote, printed by the code that measures them: each generated block sits between
``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` markers and is rendered from the numbers stored in
docs/generated/NAME.json. tests/test_docs_numbers.py fails when a block differs from its rendering.

    python scripts/docs_numbers.py          # re-render every block from the stored numbers
    python scripts/docs_numbers.py --run    # measure again first (all blocks: a few minutes)
    python scripts/docs_numbers.py --run NAME   # measure one block again
    python scripts/docs_numbers.py --check [NAME ...]   # measure again, compare with the stored numbers, store nothing

Every measurement runs with ``THREADS`` torch threads (a reduction's order, hence the last bits of a sum, depends
on the thread count, and training at the edge of stability amplifies them) and the seeds its generator fixes.
``--check`` exits 1 when a number differs from the stored one by more than its block's ``rtol`` relative (``RTOL``
unless the block says otherwise; integers: exactly).

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
import torch

from curvlab.experiments.quickstart import run_quickstart, summary_paragraph

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "docs" / "generated"
THREADS = 2  # the thread count every block is measured with
RTOL = 1e-6  # --check: the largest relative difference from the stored numbers a measurement may show


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
    rtol: float = RTOL  # --check's tolerance on each number


BLOCKS = {
    "quickstart": Block("README.md", summary_paragraph, _measure_quickstart),
    "stopping-rules": Block("docs/core.md", stopping_rules.paragraph, stopping_rules.measure),
    "curvatures-run": Block("docs/metrics/curvatures.md", curvatures_figure.paragraph, curvatures_figure.measure),
    "critical-sharpness-runs": Block(
        "docs/metrics/critical_sharpness.md", critical_sharpness_figure.paragraph, critical_sharpness_figure.measure
    ),
    # its numbers are rounding errors (differences of near-equal values across gloo reductions): they repeat to
    # about 1e-5 of themselves, and the page shows one significant figure
    "fsdp-errors": Block("docs/distributed.md", fsdp_errors.paragraph, fsdp_errors.measure, rtol=1e-2),
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


def measured(name: str) -> dict:
    """The block's numbers measured again, with ``THREADS`` threads, as JSON would store them."""
    torch.set_num_threads(THREADS)
    return json.loads(json.dumps(BLOCKS[name].measure()))


def differences(stored: object, again: object, where: str = "", rtol: float = RTOL) -> list[str]:
    """Where the numbers measured again differ from the stored ones (beyond ``rtol`` for floats, timings skipped)."""
    if isinstance(stored, dict) and isinstance(again, dict):
        if stored.keys() != again.keys():
            return [f"{where or 'top'}: keys {sorted(stored)} against {sorted(again)}"]
        keys = [k for k in stored if "second" not in k and "time" not in k]  # wall-clock figures are not numbers
        return [d for k in keys for d in differences(stored[k], again[k], f"{where}.{k}" if where else k, rtol)]
    if isinstance(stored, list) and isinstance(again, list):
        if len(stored) != len(again):
            return [f"{where}: {len(stored)} entries against {len(again)}"]
        return [d for i, (a, b) in enumerate(zip(stored, again)) for d in differences(a, b, f"{where}[{i}]", rtol)]
    if isinstance(stored, float) or isinstance(again, float):
        a, b = float(stored), float(again)
        same = a == b or (a != a and b != b) or abs(a - b) <= rtol * max(abs(a), abs(b))
        return [] if same else [f"{where}: stored {a!r}, measured {b!r}"]
    return [] if stored == again else [f"{where}: stored {stored!r}, measured {again!r}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="measure the numbers again before rendering")
    parser.add_argument("--check", action="store_true", help="measure again and compare; store and write nothing")
    parser.add_argument("names", nargs="*", help=f"blocks (default: all of {sorted(BLOCKS)})")
    args = parser.parse_args()
    failed = False
    for name in args.names or BLOCKS:
        if args.check:
            found = differences(stored(name), measured(name), rtol=BLOCKS[name].rtol)
            print(f"{name}: " + ("measures again" if not found else "DIFFERS\n  " + "\n  ".join(found[:20])))
            failed |= bool(found)
            continue
        if args.run:
            (STORE / f"{name}.json").write_text(json.dumps(measured(name), indent=1) + "\n")
        write(name)
        print(f"{BLOCKS[name].file}: {name} block written from docs/generated/{name}.json")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
