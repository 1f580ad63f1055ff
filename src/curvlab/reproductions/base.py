"""Reproductions of the papers' headline findings: each has a claim, its source, a run at full or
quick scale on each of several seeds (data subset and initialisation), and a verdict per seed computed from
that seed's numbers by a criterion fixed in code *before* the run. "Did not reproduce at this scale" is an
acceptable, reported outcome; so is "on 2 of 3 seeds"."""

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

SEEDS = (0, 1, 2)  # a full reproduction runs on each; --quick on the first only


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
    run: Callable[[Path, bool, int], dict]  # (out_dir, quick, seed) -> one seed's numbers, with the series it plots
    checks: Callable[[dict], list[Check]]  # the criterion, fixed before any run, applied to each seed
    figures: Callable[[Path, dict[int, dict]], None]  # every seed's numbers -> the figures, all seeds in each
    chosen_after_first_look: bool = False  # the shipped setting was changed after a first run (see the docs)
    checks_after_first_look: bool = False  # the checks were (re)written after seeing numbers of the run they score


REGISTRY: Registry[Reproduction] = Registry("reproduction", "name", "curvlab reproduce --list")


def register(reproduction: Reproduction) -> Reproduction:
    """Add a reproduction to the registry (``curvlab reproduce --list`` reads it)."""
    return REGISTRY.add(reproduction.name, reproduction, reproduction.source)


def reproduce(name: str, out_dir: str | Path, quick: bool = False, seeds: tuple[int, ...] | None = None) -> dict:
    """Run one reproduction on each seed (``SEEDS``; the first only with ``quick``), write each seed's
    ``seed<N>/numbers.json``, then ``numbers.json``, ``verdict.txt``, the figures and ``report.html``; return the
    summary. A seed whose numbers are already there (same scale) is not run again, so an interrupted
    reproduction resumes."""
    rep = REGISTRY[name]
    seeds = tuple(seeds) if seeds is not None else SEEDS[:1] if quick else SEEDS
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    per_seed = {seed: _run_seed(rep, out / f"seed{seed}", quick, seed) for seed in seeds}
    rep.figures(out, {seed: run["numbers"] for seed, run in per_seed.items()})
    results = []
    for seed, run in per_seed.items():
        checks = rep.checks(run["numbers"])
        results.append(
            {
                "seed": seed,
                "reproduced": all(c.passed for c in checks),
                "checks": [vars(c) for c in checks],
                "seconds": run["seconds"],
                "numbers": run["numbers"],
            }
        )
    count = sum(r["reproduced"] for r in results)
    summary = {
        "name": name,
        "quick": quick,
        "seeds": list(seeds),
        "seconds": time.perf_counter() - t0,
        "seconds_run": sum(r["seconds"] for r in results),
        "reproduced_seeds": count,
        "reproduced": count == len(results),
        "chosen_after_first_look": rep.chosen_after_first_look,
        "checks_after_first_look": rep.checks_after_first_look,
        "verdict": _verdict(count, results),
        "per_seed": results,
    }
    (out / "numbers.json").write_text(json.dumps(summary, indent=1, default=_jsonable))
    (out / "verdict.txt").write_text(summary["verdict"] + "\n")
    (out / "report.html").write_text(_page(rep, summary, sorted(p.name for p in out.glob("*.png"))))
    return summary


def _run_seed(rep: Reproduction, out: Path, quick: bool, seed: int) -> dict:
    """One seed's numbers, from its folder when a finished run at the same scale left them there."""
    saved = out / "numbers.json"
    if saved.exists():
        done = json.loads(saved.read_text())
        if done.get("quick") == quick:
            return done
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    numbers = rep.run(out, quick, seed)
    run = {"quick": quick, "seed": seed, "seconds": time.perf_counter() - t0, "numbers": numbers}
    saved.write_text(json.dumps(run, indent=1, default=_jsonable))
    return json.loads(saved.read_text())  # as a resumed seed would see it (non-finite values become null)


def _verdict(count: int, results: list[dict]) -> str:
    n = len(results)
    if count == n:
        lines = [f"REPRODUCED on {count} of {n} seeds"]
    else:
        lines = [f"DID NOT REPRODUCE at this scale on every seed: reproduced on {count} of {n}"]
    for r in results:
        lines.append(
            f"seed {r['seed']}: "
            + "; ".join(f"{'ok' if c['passed'] else 'FAILED'} — {c['description']}" for c in r["checks"])
        )
    return "\n".join(lines)


def scalars(numbers: dict) -> dict:
    """The numbers a table shows: everything but the series kept for the figures."""
    return {k: v for k, v in numbers.items() if not isinstance(v, (list, dict))}


def _jsonable(x):
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)


def _page(rep: Reproduction, summary: dict, figure_names: list[str]) -> str:
    results = summary["per_seed"]
    checks = "".join(
        f"<h3>seed {r['seed']}: {'reproduced' if r['reproduced'] else 'did not reproduce'}</h3><ul>"
        + "".join(f"<li>{'✔' if c['passed'] else '✘'} {pages.text(c['description'])}</li>" for c in r["checks"])
        + "</ul>"
        for r in results
    )
    count, n = summary["reproduced_seeds"], len(results)
    verdict = f"Reproduced on {count} of {n} seeds" if count == n else f"Did not reproduce on {n - count} of {n} seeds"
    intro = (
        f"<p><b>Claim.</b> {pages.text(rep.claim)}</p><p><b>Source.</b> {pages.text(rep.source)}</p>"
        f"<p><b>Setting.</b> {pages.text(rep.setting)}{' (quick variant)' if summary['quick'] else ''}</p>"
    )
    table = [
        {"quantity": k, **{f"seed {r['seed']}": scalars(r["numbers"]).get(k) for r in results}}
        for k in scalars(results[0]["numbers"])
    ]
    sections = [
        ("Verdict", f"<p><b>{verdict}</b></p>{checks}"),
        ("Numbers", pages.table(table)),
        ("Figures", pages.figures(figure_names)),
    ]
    return pages.page(rep.name, sections, intro)
