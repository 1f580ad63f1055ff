"""The memory table of docs/scale.md, computed from the solvers' own formulas (curvlab.linalg.lanczos.peak_bytes)
for GPT-2-sized models from 124M to 7B parameters; rewrites the table between its markers.

    python scripts/scale_doc.py          # instant; --check exits 1 when the table in docs/scale.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from curvlab.linalg.lanczos import peak_bytes

DOC = Path(__file__).resolve().parent.parent / "docs" / "scale.md"
BEGIN, END = "<!-- BEGIN scale_doc -->", "<!-- END scale_doc -->"
MODELS = {"GPT-2 small": 124e6, "GPT-2 medium": 355e6, "1B": 1e9, "GPT-2 XL": 1.56e9, "7B": 7e9}
STEPS = 100  # eigs' default max_iter for k = 1


def gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.1f}"


def table() -> str:
    header = [
        "model",
        "parameters (float32)",
        "λ1, basis float64",
        "λ1, basis float32",
        "λ1, basis none + eigenvector",
        "λ1, basis none, vectors=False",
        "finite-difference product",
    ]
    rows = []
    for name, n in MODELS.items():
        n = int(n)
        rows.append(
            [
                name,
                gb(4 * n),
                gb(peak_bytes("float64", n, STEPS, 4)),
                gb(peak_bytes("float32", n, STEPS, 4)),
                gb(peak_bytes("none", n, STEPS, 4, k=1)),
                gb(peak_bytes("none", n, STEPS, 4, k=0)),
                gb(3 * 4 * n),
            ]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    note = (
        f"GB beside the model's own parameters and the product's own work (activations, the kept graph); Lanczos "
        f"columns at {STEPS} steps (eigs' default `max_iter` for k = 1), float32 products; the finite-difference "
        "column is its shifted copy of the parameters and its two gradients."
    )
    return "\n".join([BEGIN, note, "", *lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = DOC.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    fresh = text[:start] + table() + text[stop:]
    if args.check:
        sys.exit(0 if fresh == text else 1)
    DOC.write_text(fresh)
    print(table())


if __name__ == "__main__":
    main()
