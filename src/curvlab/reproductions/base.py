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

from curvlab.errors import InputError
from curvlab.plotting import pyplot, save_figure  # noqa: F401  (re-exported for the reproductions)

REGISTRY: dict[str, Reproduction] = {}


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


def register(reproduction: Reproduction) -> Reproduction:
    REGISTRY[reproduction.name] = reproduction
    return reproduction


def reproduce(name: str, out_dir: str | Path, quick: bool = False) -> dict:
    """Run one reproduction, write numbers.json, verdict.txt and report.html; return the summary."""
    if name not in REGISTRY:
        raise InputError(f"name: unknown reproduction {name!r}; `curvlab reproduce --list` shows them")
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


def _page(rep: Reproduction, summary: dict, figures: list[str]) -> str:
    import html

    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in summary["numbers"].items()
        if not isinstance(v, (list, dict))
    )
    checks = "".join(
        f"<li>{'✔' if c['passed'] else '✘'} {html.escape(c['description'])}</li>" for c in summary["checks"]
    )
    imgs = "".join(
        f'<figure><img src="{html.escape(f)}" alt="{html.escape(f)}" style="max-width:560px"></figure>' for f in figures
    )
    verdict = "Reproduced" if summary["reproduced"] else "Did not reproduce at this scale"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(rep.name)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:1000px;margin:2em auto'><h1>{html.escape(rep.name)}</h1>"
        f"<p><b>Claim.</b> {html.escape(rep.claim)}</p><p><b>Source.</b> {html.escape(rep.source)}</p>"
        f"<p><b>Setting.</b> {html.escape(rep.setting)}{' (quick variant)' if summary['quick'] else ''}</p>"
        f"<h2>Verdict</h2><p><b>{verdict}</b></p><ul>{checks}</ul>"
        f"<h2>Numbers</h2><table border=1 cellpadding=4>{rows}</table>{imgs}</body></html>"
    )


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
