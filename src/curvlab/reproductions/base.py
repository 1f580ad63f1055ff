"""Reproductions of the papers' headline findings: each has a claim, its source, a run at one of three scales
(``quick``: the CI smoke test; ``full``: the stored runs; ``paper``: the paper's own setting, for a GPU) on each of
several seeds (data subset and initialisation), and a verdict per seed computed from that seed's numbers by checks
fixed *before* the run. A pre-registered reproduction reads its setting, fresh seeds and check thresholds from its
claims file (:mod:`curvlab.reproductions.claims`), and every run records that file's hash. "Did not reproduce at this
scale" is an acceptable, reported outcome; so is "on 2 of 3 seeds"."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from curvlab import pages
from curvlab.errors import InputError
from curvlab.plotting import pyplot, save_figure  # noqa: F401  (re-exported for the reproductions)
from curvlab.registry import Registry
from curvlab.reproductions.claims import committed, has_claims, load_claims, scale_overrides

SEEDS = (0, 1, 2)  # the seeds of a reproduction without a claims file; --quick runs the first only


@dataclass
class Check:
    """One named part of a verdict: a fixed criterion and whether the numbers meet it (``id``: the pre-registered
    check it scores, where there is one)."""

    description: str
    passed: bool
    id: str = ""


@dataclass
class Reproduction:
    name: str
    claim: str
    source: str
    setting: str
    run: Callable[[Path, dict, int], dict]  # (out_dir, setting, seed) -> one seed's numbers, with the series it plots
    checks: Callable[[dict], list[Check]]  # the criterion, fixed before any run, applied to each seed
    figures: Callable[[Path, dict[int, dict]], None]  # every seed's numbers -> the figures, all seeds in each
    chosen_after_first_look: bool = False  # the shipped setting was changed after a first run (see the docs)
    checks_after_first_look: bool = False  # the checks were (re)written after seeing numbers of the run they score

    @property
    def preregistered(self) -> bool:
        """Whether a claims file fixes this reproduction's setting, seeds and checks."""
        return has_claims(self.name)


REGISTRY: Registry[Reproduction] = Registry("reproduction", "name", "curvlab reproduce --list")


def register(reproduction: Reproduction) -> Reproduction:
    """Add a reproduction to the registry (``curvlab reproduce --list`` reads it)."""
    return REGISTRY.add(reproduction.name, reproduction, reproduction.source)


def register_preregistered(
    name: str,
    run: Callable[[Path, dict, int], dict],
    checks: Callable[[dict], list[Check]],
    figures: Callable[[Path, dict[int, dict]], None],
) -> Reproduction:
    """Register a pre-registered reproduction: its claim, paper and setting are its claims file's."""
    claims = load_claims(name)
    reproduction = Reproduction(name, claims.claim, claims.paper, claims.our_setting, run, checks, figures)
    return register(reproduction)


def setting_for(name: str, scale: str = "full") -> dict:
    """The setting a run of reproduction ``name`` at ``scale`` uses: the claims file's full setting with the scale's
    changes from scales.toml (a reproduction not yet pre-registered keeps its full setting in its module, which
    applies these changes to it)."""
    full = load_claims(name).setting if REGISTRY[name].preregistered else {}
    return {**full, **scale_overrides(name, scale), "scale": scale}


def default_seeds(name: str, scale: str = "full") -> tuple[int, ...]:
    """A pre-registered reproduction's full and paper scales run on its fresh seeds; ``quick`` (the smoke test) on
    the first pilot seed, so that no fresh seed is run before its verdict."""
    if scale == "quick":
        return SEEDS[:1]
    return load_claims(name).seeds if REGISTRY[name].preregistered else SEEDS


def reproduce(
    name: str, out_dir: str | Path, quick: bool = False, seeds: tuple[int, ...] | None = None, scale: str | None = None
) -> dict:
    """Run one reproduction on each seed (its claims file's fresh seeds, or ``SEEDS``; the first pilot seed only at
    the ``quick`` scale), write each seed's ``seed<N>/numbers.json``, then ``numbers.json``, ``verdict.txt``, the
    figures and ``report.html``; return the summary. ``scale`` is ``quick``, ``full`` (default) or ``paper``;
    ``quick=True`` is ``scale="quick"``. A seed whose numbers are already there (same scale, same claims file) is
    not run again, so an interrupted reproduction resumes."""
    rep = REGISTRY[name]
    scale = scale or ("quick" if quick else "full")
    setting = setting_for(name, scale)
    seeds = tuple(seeds) if seeds is not None else default_seeds(name, scale)
    registration = _registration(rep)
    fresh = default_seeds(name, "full")
    if registration.get("claims_uncommitted") and scale != "quick" and set(seeds) & set(fresh):
        raise InputError(
            f"seeds: {name}'s claims file has changes not committed; its fresh seeds {list(fresh)} run only under a "
            "committed pre-registration (commit it first; --scale quick and the pilot seeds 0–2 run at any time)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    per_seed = {seed: _run_seed(rep, out / f"seed{seed}", setting, seed, registration) for seed in seeds}
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
        "quick": scale == "quick",
        "scale": scale,
        "setting": setting,
        "seeds": list(seeds),
        "started": min([started, *(run.get("started", started) for run in per_seed.values())]),
        **registration,
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


def _registration(rep: Reproduction) -> dict:
    """What a stored run records of the claims file it ran under: its hash, and the commit that holds it."""
    if not rep.preregistered:
        return {}
    claims = load_claims(rep.name)
    return {"claims_sha256": claims.sha256, **committed(claims.path)}


def _run_seed(rep: Reproduction, out: Path, setting: dict, seed: int, registration: dict) -> dict:
    """One seed's numbers, from its folder when a finished run at the same setting and claims left them there."""
    saved = out / "numbers.json"
    if saved.exists():
        done = json.loads(saved.read_text())
        if done.get("setting") == setting and done.get("claims_sha256") == registration.get("claims_sha256"):
            return done
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    numbers = rep.run(out, setting, seed)
    run = {
        "started": started,
        "scale": setting["scale"],
        "quick": setting["scale"] == "quick",
        "setting": setting,
        "claims_sha256": registration.get("claims_sha256"),
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        "numbers": numbers,
    }
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
        f"<p><b>Setting.</b> {pages.text(rep.setting)} (scale: {summary['scale']})</p>"
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
