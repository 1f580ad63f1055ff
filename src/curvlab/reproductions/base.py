"""Reproductions of the papers' headline findings: each has a claim, its source, a run at full or
quick scale, and a verdict computed from the numbers by a criterion fixed in code *before* the run.
"Did not reproduce at this scale" is an acceptable, reported outcome."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from curvlab import pages
from curvlab.plotting import pyplot, save_figure  # noqa: F401  (re-exported for the reproductions)
from curvlab.registry import Registry


@dataclass
class Check:
    """One named part of a verdict: a fixed criterion and whether the numbers meet it."""

    description: str
    passed: bool


@dataclass
class Reproduction:
    name: str
    claim: str
    source: str
    setting: str
    run: Callable[[Path, bool], dict]  # (out_dir, quick) -> numbers (JSON-able); writes figures in out_dir
    checks: Callable[[dict], list[Check]]  # the criterion, fixed before any run


REGISTRY: Registry[Reproduction] = Registry("reproduction", "name", "curvlab reproduce --list")


def register(reproduction: Reproduction) -> Reproduction:
    """Add a reproduction to the registry (``curvlab reproduce --list`` reads it)."""
    return REGISTRY.add(reproduction.name, reproduction, reproduction.claim)


def reproduce(name: str, out_dir: str | Path, quick: bool = False) -> dict:
    """Run one reproduction, write numbers.json, verdict.txt and report.html; return the summary."""
    rep = REGISTRY[name]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    numbers = rep.run(out, quick)
    checks = rep.checks(numbers)
    reproduced = all(c.passed for c in checks)
    verdict = (
        ("REPRODUCED" if reproduced else "DID NOT REPRODUCE at this scale")
        + ": "
        + "; ".join(f"{'ok' if c.passed else 'FAILED'} — {c.description}" for c in checks)
    )
    summary = {
        "name": name,
        "quick": quick,
        "seconds": time.perf_counter() - t0,
        "reproduced": reproduced,
        "verdict": verdict,
        "numbers": numbers,
        "checks": [vars(c) for c in checks],
    }
    (out / "numbers.json").write_text(json.dumps(summary, indent=1, default=_jsonable))
    (out / "verdict.txt").write_text(verdict + "\n")
    (out / "report.html").write_text(_page(rep, summary, sorted(p.name for p in out.glob("*.png"))))
    return summary


def _jsonable(x):
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)


def _page(rep: Reproduction, summary: dict, figure_names: list[str]) -> str:
    numbers = {k: v for k, v in summary["numbers"].items() if not isinstance(v, (list, dict))}
    checks = "".join(
        f"<li>{'✔' if c['passed'] else '✘'} {pages.text(c['description'])}</li>" for c in summary["checks"]
    )
    verdict = "Reproduced" if summary["reproduced"] else "Did not reproduce at this scale"
    intro = (
        f"<p><b>Claim.</b> {pages.text(rep.claim)}</p><p><b>Source.</b> {pages.text(rep.source)}</p>"
        f"<p><b>Setting.</b> {pages.text(rep.setting)}{' (quick variant)' if summary['quick'] else ''}</p>"
    )
    sections = [
        ("Verdict", f"<p><b>{verdict}</b></p><ul>{checks}</ul>"),
        ("Numbers", pages.table([{"quantity": k, "value": v} for k, v in numbers.items()])),
        ("Figures", pages.figures(figure_names)),
    ]
    return pages.page(rep.name, sections, intro)
