"""Regenerate docs/reproductions.md from the full runs' summaries in docs/reproductions/*.json.

After a full run by hand (`curvlab reproduce NAME --out runs/reproduce/NAME`, every seed), copy its numbers.json to
docs/reproductions/NAME.json and its figures to docs/reproductions/NAME__FIGURE.png, then run this
(`scripts/run_reproductions.sh` does all of it).
"""

from __future__ import annotations

import json
from pathlib import Path

from curvlab.reproductions import REGISTRY

DOCS = Path(__file__).resolve().parent.parent / "docs"
ORDER = [
    "edge-of-stability",
    "warmup",
    "classical-tuners",
    "cdat",
    "batch-size-sign-descent",
    "noise-histograms",
    "directional-sharpness",
    "optimization-assumptions",
    "adam-preconditioned-edge",
    "dynamical-models",
]
NOTES = {
    "dynamical-models": "App. C.5 gives a, b, η but no initial state. From λ0 = 1.5, x0 = 0.1 the constant-η model "
    "overshot and diverged by step ~60, so seed 0 starts near the model's equilibrium p* = a/b (λ0 = 1.9). The checks "
    "now also cover two seeded nearby starts and horizons of 150 and 200 steps besides Fig. 4's 100. *Cause of the "
    "miss:* the model itself: eq. (4) with constant a and b is not self-stabilizing in the long run. From every start "
    "tried, the oscillation of ηλ around 2 grows until p blows up (at step 115, 109 and 127 for seeds 0–2); at Fig. "
    "4's horizon it holds from 2 of 3 starts. The paper shows 100 steps. The runaway sharpening under η = 2(1−ε)/λ "
    "and both CDAT models hold on every seed. No setting closer to the paper exists to try: it gives no start.",
    "edge-of-stability": "The first setting tried (η = 0.3, squared loss) started above the edge (η·λ1 = 2.95 at step "
    "10) and failed the first check. An earlier probe with cross-entropy reached the edge, but λ1 fell once the "
    "1,000-image subset was fit. η = 0.1 was the one alternative tried; it ships. The checks were not changed. On 3 "
    "seeds, all three sharpen to the edge and hover there while the loss falls with spikes (figure); seed 2 fails "
    "only the first check, starting at η·λ1 = 1.41 (its initialisation) against the ≤ 1.2 allowed.",
    "adam-preconditioned-edge": "Cross-entropy was probed first: the preconditioned sharpness collapsed as the loss "
    "went to 0, since CE curvature vanishes there. Squared loss on one-hot targets, as Cohen et al. use, was then "
    "probed at η = 0.01 and 0.003; both hovered at the edge. 0.01 ships. It holds on all 3 seeds.",
    "noise-histograms": "The first run used character-level text (73 symbols); its noise was as Gaussian as the image "
    "model's (α̂ ≈ 2.0 for both), so it failed. The paper's language models are word-level (PTB, WikiText-2); word "
    "level (vocabulary 5,000) ships. It holds on all 3 seeds.",
    "optimization-assumptions": "The setting (†) and the checks changed after a first look. The earlier version "
    "tested GD on least squares, where a non-positive convexity gap and a smoothness bounded by λ_max are identities, "
    "so those checks could fail only by rounding; the deep network replaced it, with checks set after seeing that "
    "run's numbers. On 2026-12-04 the update correlation, its random-scaling variant and the loss difference moved to "
    "the paper's pairing (the batch of the next step, which the update did not see, instead of the update's own "
    "batch), the EMAs restart with each window as the authors' code does, and the checks were written anew before "
    "the run they score, each one a check that a convex quadratic or a stationary sequence would fail: positive "
    "convexity gaps beyond rounding at ≥ 5% of the steps (a convex function has none), the local smoothness's median "
    "doubling from the first to the last quarter of training (a stationary sequence stays at 1×), and the "
    "random-scaling sums within 25%. The result is the table above, reported as it came out. *Cause of the misses "
    "(likely):* scale. The run is 400 steps of a small MLP against the paper's tens of thousands of steps of ResNets "
    "and transformers: positive gaps are rarer than 5% here, the smoothness's median does not double for SGDM on any "
    "seed, and with the independent batch the random-scaling sums, equal only in expectation, are still "
    "dominated by per-step noise after 400 steps (with the update's own batch they had agreed within 25%, but that "
    "pairing is not the paper's).",
    "classical-tuners": "First run, shipped as is, except the baseline (†): constant-η GD was first tuned on a "
    "three-value grid that favoured the tuners; the grid now starts wider and is doubled at an end until the best is "
    "interior. Against that baseline the claim holds in part and differently per seed (the checks above). *Cause of "
    "the miss (likely):* horizon: 500 steps against the paper's thousands, so η has not finished falling. Linesearch "
    "rides the edge rather than undershooting it, which the check (median η·λ1 < 2) barely separates. The one closer "
    "setting, written down before it ran: 2,000 steps, everything else unchanged (below). It did not reproduce on any "
    "seed either, so the first setting stays shipped. Rerun on 2026-12-04 after the full-batch linesearch lost its "
    "cap of 30 reductions (Roulet et al. cap only minibatch mode): the same verdicts, the cap had never been reached; "
    "the closer setting's run predates that change.",
    "cdat": "First run, shipped as is, except the baseline (the same widened grid as classical-tuners). σ = 2 matches "
    "or beats the tuned constant on every seed and beats σ = 1 on seeds 0 and 2. The warmup-like rise of η does not "
    "appear on any seed: at most 1.5× over the first quarter, against ≥ 2×. The minibatch σ shift appears on seed 0 "
    "only. *Cause of the miss (likely):* on the edge, CDAT's η is ≈ σ/λ1, so η rises only where the sharpness falls. "
    "In the paper's networks it falls early in training; in this MLP λ1 rises from initialisation (progressive "
    "sharpening, see edge-of-stability), so η falls from the first step. The one closer setting, written down before "
    "it runs: init_scale = 2, where λ1 starts ≈ 9× higher (see warmup) and first falls; everything else unchanged. "
    "It ran (below) and confirms the cause: η now rises early on every seed (2.1–3.2× over the first quarter), and "
    "σ = 2 beats σ = 1 and the tuned constant on every seed. The minibatch shift still appears on seed 0 only; on "
    "seeds 1–2 the best σ is 2 at both batch sizes, the largest σ tried, so this grid cannot show a shift above 2. "
    "Reproduced on 1 of 3 seeds, not every seed, so the first setting stays shipped.",
    "warmup": "First run, shipped as is. On all 3 seeds warmup rescues the peak η that diverges without it (final "
    "loss 0.10–0.11), and a ×2 initialisation raises the initial λ1 8–9× and lowers the maximal stable η (0.05 "
    "against 0.2–0.4). The miss on every seed: during warmup η_t·λ1 settles around 2.8–3.0, not 2. *Cause "
    "(likely):* the warmup rate. η rises by 0.0025 a step over 200 steps, faster than the loss spikes bring λ1 back to "
    "2/η_t; Gilmer et al.'s warmups span thousands of steps. The one closer setting, written down before it runs: "
    "warmup over 1,000 of 1,300 steps (5× slower), everything else unchanged. It brought the median η_t·λ1 during "
    "warmup closer to 2 but not into [1.6, 2.4] (below), so the first setting stays shipped.",
    "directional-sharpness": "The first run (both SGD variants tuned on η ∈ {0.1, 0.3, 1}) missed the same two "
    "checks on all 3 seeds, and its baselines were not tuned: both variants' best η was 1, the grid's top. The one "
    "closer setting, written down before it ran: both SGD grids widened by ×3 steps until the best η is interior, "
    "as the tuner baselines are. It is shipped (†), because a comparison against an untuned baseline says nothing; "
    "the best η is now interior on every seed (SGD 3, clipped SGD 9). The misses stand: SGD's update is the "
    "sharpest on both trajectories, and Adam (0.03–0.10×) and clipping (0.14–0.28×) reduce it by large factors, but "
    "normalized SGD only ≈2× (0.51–0.59, against < 0.5); and clipped SGD, at a 3× larger best η, ends slightly above "
    "SGD (e.g. 4.00 against 3.93 on seed 0). *Cause:* not established. At 300 steps of a 2-layer model the paper's "
    "setting (larger transformers trained for many epochs) is far away, and the first check shows the "
    "direction-wise effect itself. The four independent runs of each seed (two trajectories, two tuned grids) run in "
    "two single-thread processes at once: 510 s for 3 seeds (the first setting took 588 s sequentially with fewer "
    "runs).",
    "batch-size-sign-descent": "The first completed full run (128 sequences; batch 16, 32, 64 and full) took 1,173 s "
    "for 3 seeds, over the 10-minute limit, and passed 3 or 4 of 5 checks per seed, missing 'sign descent is worst "
    "at small batch' on every seed (SGD was worst). To fit the limit the data was halved after that first look (†): "
    "64 sequences with batch 8, 16, 32 and full, the same fractions of the data (two earlier attempts, vocabulary "
    "2,000 with 512 and then 256 sequences, had been stopped before any verdict for the same reason). The search "
    "itself is unchanged; it now scores the final loss from one forward pass and runs every batch size's first phase "
    "as one batch, which changes no number (a rerun gave identical losses). Checks unchanged. *Cause of the "
    "remaining miss:* the check is stricter than the paper's words. In full batch sign descent closes 98–99% of the "
    "SGD–Adam gap on every seed (the paper: 'closes most of the gap', 'competitive with Adam') but ends at 1.45×, "
    "1.11× and 1.41× Adam's loss, against ≤ 1.1×; the check stays as written. Scale may add to it: 60 steps, "
    "against the paper's hundreds of full-batch iterations. The one closer setting, written down before it ran: "
    "120 steps per run. It ran (below) and did worse, 2 of 5 checks on every seed: at 120 steps every optimizer "
    "with momentum nearly fits the 64 sequences in full batch (final losses 0.03–0.07), so the full-batch gaps the "
    "claim is about collapse (SGD/Adam 1.4–1.5× against 22–31× at 60 steps). Longer training needs more data than "
    "a 10-minute budget allows here. The first setting stays shipped.",
}


def closer_summary(names: list[str]) -> str:
    """One sentence: each closer setting that ran and on how many seeds it reproduced."""
    ran = []
    for name in names:
        saved = DOCS / "reproductions" / "closer" / f"{name}.json"
        if saved.exists():
            s = json.loads(saved.read_text())
            ran.append(f"{name} ({s['reproduced_seeds']} of {len(s['per_seed'])} seeds)")
    if not ran:
        return ""
    return (
        " **One setting closer to the paper**, written down before it ran, was tried for a partial reproduction "
        f"(its section shows it; the table counts the shipped settings); it reproduced on: {', '.join(ran)}."
    )


def closer_section(name: str) -> list[str]:
    """The one closer setting's result (scripts/closer_settings.py), when it ran: its verdict and failed checks."""
    saved = DOCS / "reproductions" / "closer" / f"{name}.json"
    if not saved.exists():
        return []
    s = json.loads(saved.read_text())
    count, total = s["reproduced_seeds"], len(s["per_seed"])
    lines = [
        f"**The one closer setting** (`python scripts/closer_settings.py {name}`, written down before it ran): "
        f"{s['closer_setting']}. **Result: reproduced on {count} of {total} seeds** ({s['seconds_run']:.0f} s for all "
        f"seeds){'; the first setting stays shipped' if count < total else ''}.",
        "",
    ]
    for r in s["per_seed"]:
        passed = sum(c["passed"] for c in r["checks"])
        failed = [c["description"] for c in r["checks"] if not c["passed"]]
        lines.append(f"- seed {r['seed']}: {passed}/{len(r['checks'])} checks" + "".join(f"; ✘ {d}" for d in failed))
    lines.append("")
    figures = sorted((DOCS / "reproductions" / "closer").glob(f"{name}__*.png"))
    return lines + [f"![{name}, closer setting](reproductions/closer/{fig.name})\n" for fig in figures]


def rescored(name: str, summary: dict) -> dict:
    """The stored runs scored by the checks in the code now, so that each check's text follows the code. A pass or
    fail that differs from the stored one stops the script, unless the reproduction declares checks written after a
    look: a check changed after its run must be rerun or declared."""
    rep = REGISTRY[name]
    for r in summary["per_seed"]:
        checks = [vars(c) for c in rep.checks(r["numbers"])]
        if [c["passed"] for c in checks] != [c["passed"] for c in r["checks"]] and not rep.checks_after_first_look:
            raise SystemExit(
                f"{name}, seed {r['seed']}: the current checks change the stored verdict; rerun the reproduction "
                "(scripts/run_reproductions.sh) or declare checks_after_first_look"
            )
        r["checks"], r["reproduced"] = checks, all(c["passed"] for c in checks)
    summary["reproduced_seeds"] = sum(r["reproduced"] for r in summary["per_seed"])
    summary["reproduced"] = summary["reproduced_seeds"] == len(summary["per_seed"])
    summary["chosen_after_first_look"] = rep.chosen_after_first_look
    summary["checks_after_first_look"] = rep.checks_after_first_look
    return summary


def main() -> None:
    done = [n for n in ORDER if (DOCS / "reproductions" / f"{n}.json").exists()]
    summaries = {n: rescored(n, json.loads((DOCS / "reproductions" / f"{n}.json").read_text())) for n in done}
    after_look = [n for n in done if summaries[n]["checks_after_first_look"]]
    before = [n for n in done if n not in after_look]
    everywhere = [n for n in before if summaries[n]["reproduced"]]
    somewhere = [n for n in before if not summaries[n]["reproduced"] and summaries[n]["reproduced_seeds"] > 0]
    chosen = [n for n in done if summaries[n]["chosen_after_first_look"]]
    seeds = sorted({len(summaries[n]["seeds"]) for n in done})
    lines = [
        "# Reproductions",
        "",
        "`curvlab reproduce --list` lists them; `curvlab reproduce NAME [--quick] [--seeds 0 1 2]` runs one on each "
        "seed (its data subset and initialisation) and writes each seed's `numbers.json`, then `numbers.json`, "
        "`verdict.txt`, figures with every seed and `report.html`; a rerun resumes after the last finished seed. Each "
        "verdict is computed from one seed's numbers by checks written in `src/curvlab/reproductions/` *before* the "
        "run (‡ marks checks set after a look at the numbers they score), and this page re-scores the stored numbers "
        "with the checks in the code each time it is regenerated. The `--quick` variants (one seed, small scale) "
        "run in CI as smoke tests: they exercise the pipeline, and "
        "their verdicts at that scale are not claims. The full runs below were made by hand on the 2-core CPU; their "
        "numbers and figures are in `docs/reproductions/` (regenerate this page with "
        "`python scripts/reproductions_doc.py`).",
        "",
        f"**Summary of the {len(before)} claims whose checks were written before the run they score: "
        f"{len(everywhere)} reproduced on every seed** ({', '.join(everywhere) or 'none'}); "
        f"{len(somewhere)} on some seeds only ({', '.join(somewhere) or 'none'}); the others on none. "
        + (
            f"**Checks set after a look** at the numbers they score (not counted above): {', '.join(after_look)}. "
            if after_look
            else ""
        )
        + "Seeds per "
        f"reproduction: {', '.join(map(str, seeds))}. **Settings chosen after a first look at a run** (marked † below; "
        f"each section says what was changed and why): {', '.join(chosen) or 'none'}. The other settings are the "
        "first ones run." + closer_summary(done),
        "",
        "| reproduction | seeds reproduced | checks passed, per seed | time (all seeds) |",
        "|---|---|---|---|",
    ]
    for n in done:
        s = summaries[n]
        per_seed = ", ".join(f"{sum(c['passed'] for c in r['checks'])}/{len(r['checks'])}" for r in s["per_seed"])
        mark = (" †" if s["chosen_after_first_look"] else "") + (" ‡" if s["checks_after_first_look"] else "")
        lines.append(
            f"| [{n}](#{n}){mark} | {s['reproduced_seeds']} of {len(s['per_seed'])} | {per_seed} | "
            f"{s['seconds_run']:.0f} s |"
        )
    lines.append("")
    for n in done:
        rep, s = REGISTRY[n], summaries[n]
        count, total = s["reproduced_seeds"], len(s["per_seed"])
        verdict = f"reproduced on {count} of {total} seeds" if count else f"did not reproduce on any of {total} seeds"
        lines += [
            f"## {n}",
            "",
            f"**Claim.** {rep.claim}",
            "",
            f"**Paper.** {rep.source}",
            "",
            f"**Our setting.** {rep.setting}",
            "",
            f"**Verdict: {verdict}** ({s['seconds_run']:.0f} s for all seeds).",
            "",
        ]
        for r in s["per_seed"]:
            lines.append(f"Seed {r['seed']} ({'reproduced' if r['reproduced'] else 'not reproduced'}):")
            lines.append("")
            lines += [f"- {'✔' if c['passed'] else '✘'} {c['description']}" for c in r["checks"]]
            lines.append("")
        chosen_note = "Setting chosen after a first look (disclosed). " if s["chosen_after_first_look"] else ""
        if s["checks_after_first_look"]:
            chosen_note += "Checks set after a look at the numbers they score (‡; not counted in the summary). "
        lines += [f"*How the setting was chosen.* {chosen_note}{NOTES[n]}", ""]
        lines += [f"![{n}](reproductions/{fig.name})\n" for fig in sorted((DOCS / "reproductions").glob(f"{n}__*.png"))]
        lines += closer_section(n)
    (DOCS / "reproductions.md").write_text("\n".join(lines))
    print(f"wrote {DOCS / 'reproductions.md'}: {len(done)} reproductions")


if __name__ == "__main__":
    main()
