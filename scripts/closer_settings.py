"""The one setting closer to the paper tried for a reproduction that missed, written down here before it runs.

    python scripts/closer_settings.py NAME      # NAME: one of CLOSER below

Runs the full reproduction on every seed with the one change below (into runs/reproduce/NAME-closer, resuming finished
seeds) and copies its summary to docs/reproductions/history/closer/NAME.json, which scripts/reproductions_doc.py reports
beside the shipped setting. The shipped setting is not changed by this: if the closer setting reproduces, shipping it
is a separate, disclosed decision.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from curvlab.reproductions import batch_size, reproduce

ROOT = Path(__file__).resolve().parent.parent


def _longer_lm_runs() -> None:
    batch_size.FULL["steps"] = 120


CLOSER: dict[str, tuple[str, Callable[[], None]]] = {
    "batch-size-sign-descent": (
        "120 steps per run instead of 60 (twice the training; the paper's full-batch runs take hundreds of steps), "
        "everything else unchanged",
        _longer_lm_runs,
    ),
}


def main(name: str) -> None:
    if name not in CLOSER:
        sys.exit(f"name: expected one of {sorted(CLOSER)}, got {name!r}")
    description, apply = CLOSER[name]
    apply()
    out = ROOT / "runs" / "reproduce" / f"{name}-closer"
    reproduce(name, out)
    summary = {**json.loads((out / "numbers.json").read_text()), "closer_setting": description}
    saved = ROOT / "docs" / "reproductions" / "history" / "closer" / f"{name}.json"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(summary, indent=1))
    for figure in out.glob("*.png"):
        shutil.copy(figure, saved.parent / f"{name}__{figure.name}")
    print(summary["verdict"].splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
