"""Regenerate docs/reproductions.md from the stored runs.

The headline and the sections come from the pre-registered reproductions' runs on their fresh seeds,
docs/reproductions/NAME.json (`scripts/run_reproductions.sh NAME` runs one, copies its summary and figures there and
calls this). A stored run is refused — this script stops — when it ran under a claims file other than the current one
(its hash differs), under an uncommitted claims file or one committed after the run started, on seeds other than the
claims file's, at a scale other than full, or when the checks in the code now score it differently. The earlier
settings' runs (seeds 0–2, checks partly set after a look) are kept in docs/reproductions/history/ and rendered, as
they were stored, in the page's History section.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from curvlab.monitor.windows import windowed
from curvlab.reproductions import REGISTRY
from curvlab.reproductions.assumptions import statistics as assumptions_statistics
from curvlab.reproductions.batch_size import statistics as batch_size_statistics
from curvlab.reproductions.cdat import statistics as cdat_statistics
from curvlab.reproductions.claims import load_claims, thresholds
from curvlab.reproductions.directional import statistics as directional_statistics
from curvlab.reproductions.tuners import last_over_first, late_effective

DOCS = Path(__file__).resolve().parent.parent / "docs"
STORED = DOCS / "reproductions"
HISTORY = STORED / "history"
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
    "overshot and diverged within the paper's horizon, so seed 0 starts near the model's equilibrium p* = a/b (λ0 = "
    "1.9). The checks also cover two seeded nearby starts and horizons of 150 and 200 steps besides Fig. 4's 100. "
    "*Cause of the miss:* the model itself: eq. (4) with constant a and b is not self-stabilizing in the long run. "
    "From every start tried, the oscillation of ηλ around 2 grows until p blows up (at step {dyn_divergence_steps} "
    "for seeds {dyn_seeds}); at Fig. 4's horizon it holds from {dyn_h100_held} starts. The paper shows 100 steps. The "
    "runaway sharpening under η = 2(1−ε)/λ and both CDAT models hold on every seed. No setting closer to the paper "
    "exists to try: it gives no start.",
    "edge-of-stability": "The first setting tried (η = 0.3, squared loss) started above the edge and failed the first "
    "check. An earlier probe with cross-entropy reached the edge, but λ1 fell once the 1,000-image subset was fit. "
    "η = 0.1 was the one alternative tried; it ships. The checks were not changed. {eos_seeds}",
    "adam-preconditioned-edge": "Cross-entropy was probed first: the preconditioned sharpness collapsed as the loss "
    "went to 0, since CE curvature vanishes there. Squared loss on one-hot targets, as Cohen et al. use, was then "
    "probed at η = 0.01 and 0.003; both hovered at the edge. 0.01 ships.",
    "noise-histograms": "The first run used character-level text (73 symbols); its noise looked as Gaussian as the "
    "image model's, so it failed. The paper's language models are word-level (PTB, WikiText-2); word level "
    "(vocabulary 5,000) ships.",
    "optimization-assumptions": "The setting (†) and the checks changed after a first look. The earlier version "
    "tested GD on least squares, where a non-positive convexity gap and a smoothness bounded by λ_max are identities, "
    "so those checks could fail only by rounding; the deep network replaced it, with checks set after seeing that "
    "run's numbers. On 2026-12-04 the update correlation, its random-scaling variant and the loss difference moved to "
    "the paper's pairing (the batch of the next step, which the update did not see, instead of the update's own "
    "batch), the EMAs restart with each window as the authors' code does, and the checks were written anew before "
    "the run they score, each one a check that a convex quadratic or a stationary sequence would fail: positive "
    "convexity gaps beyond rounding at a share of the steps that a convex function cannot have, the local "
    "smoothness's median doubling from the first to the last quarter of training (a stationary sequence stays at "
    "1×), and the random-scaling sums agreeing (the thresholds are in the checks above). The result is the table "
    "above, reported as it came out. *Cause of the misses (likely):* scale. The run is 400 steps of a small MLP "
    "against the paper's tens of thousands of steps of ResNets and transformers: positive gaps are rarer here, the "
    "smoothness's median does not double for SGDM, and with the independent batch the random-scaling sums, equal "
    "only in expectation, are still dominated by per-step noise after 400 steps (with the update's own batch they "
    "had agreed, but that pairing is not the paper's).",
    "classical-tuners": "First run, shipped as is, except the baseline (†): constant-η GD was first tuned on a "
    "three-value grid that favoured the tuners; the grid now starts wider and is doubled at an end until the best is "
    "interior. Against that baseline the claim holds in part and differently per seed (the checks above). *Cause of "
    "the miss (likely):* horizon: 500 steps against the paper's thousands, so η has not finished falling. Linesearch "
    "rides the edge rather than undershooting it, which the check (median η·λ1 < 2) barely separates. The one closer "
    "setting, written down before it ran: 2,000 steps, everything else unchanged (below); it reproduced on "
    "{classical_closer_reproduced} seeds, so the first setting stays shipped. Rerun on 2026-12-04 after the "
    "full-batch linesearch lost its cap of 30 reductions (Roulet et al. cap only minibatch mode): the same verdicts, "
    "the cap had never been reached. The closer setting was rerun after that change too (2026-12-04): the same "
    "verdicts on every seed, every run's learning rates and losses unchanged; only the measured sharpness moved, "
    "far below its solver's tolerance.",
    "cdat": "First run, shipped as is, except the baseline (the same widened grid as classical-tuners). The "
    "warmup-like rise of η the paper shows is at most {cdat_rise_max}× over the first quarter here, against the "
    "check's 2×. *Cause of the miss (likely):* on the edge, CDAT's η is ≈ σ/λ1, so η rises only where the sharpness "
    "falls. In the paper's networks it falls early in training; in this MLP λ1 rises from initialisation "
    "(progressive sharpening, see edge-of-stability), so η falls from the first step. The one closer setting, "
    "written down before it ran: init_scale = 2, where λ1 starts {warmup_sharpness_ratio}× higher (see warmup) and "
    "first falls; everything else unchanged. It ran (below) and confirms the cause: η now rises early "
    "({cdat_closer_rise}× over the first quarter). Where the minibatch σ shift does not appear, the best σ is the "
    "largest σ tried at both batch sizes, so this grid cannot show a shift above it. Reproduced on "
    "{cdat_closer_reproduced} seeds{cdat_closer_outcome}.",
    "warmup": "First run, shipped as is. On all seeds warmup rescues the peak η that diverges without it (final loss "
    "{warmup_final_loss}), and a ×2 initialisation raises the initial λ1 {warmup_sharpness_ratio}× and lowers the "
    "maximal stable η ({warmup_stable_lr_scale2} against {warmup_stable_lr_scale1}). The miss on every seed: during "
    "warmup η_t·λ1 settles around {warmup_eta_lambda}, not 2. *Cause (likely):* the warmup rate. η rises by 0.0025 a "
    "step over 200 steps, faster than the loss spikes bring λ1 back to 2/η_t; Gilmer et al.'s warmups span "
    "thousands of steps. The one closer setting, written down before it ran: warmup over 1,000 of 1,300 steps (5× "
    "slower), everything else unchanged. It brought the median η_t·λ1 during warmup to {warmup_closer_eta_lambda} "
    "(below), closer to 2 but outside the check's band, so the first setting stays shipped.",
    "directional-sharpness": "The first run (both SGD variants tuned on η ∈ {{0.1, 0.3, 1}}) missed the same two "
    "checks on all 3 seeds, and its baselines were not tuned: both variants' best η was 1, the grid's top. The one "
    "closer setting, written down before it ran: both SGD grids widened by ×3 steps until the best η is interior, "
    "as the tuner baselines are. It is shipped (†), because a comparison against an untuned baseline says nothing; "
    "the best η is now interior on every seed (SGD {dir_sgd_lr}, clipped SGD {dir_clip_lr}). The misses stand: "
    "SGD's update is the sharpest on both trajectories, and Adam ({dir_adam}×) and clipping ({dir_clip}×) reduce it "
    "by large factors, but normalized SGD only to {dir_normalized}× (the check asks < 0.5); and clipped SGD, at a "
    "larger best η, ends slightly above SGD (final loss {dir_clip_vs_sgd} on seeds {dir_seeds}). *Cause:* "
    "not established. At 300 steps of a 2-layer model the paper's setting (larger transformers trained for many "
    "epochs) is far away, and the first check shows the direction-wise effect itself. The four independent runs of "
    "each seed (two trajectories, two tuned grids) run in two single-thread processes at once.",
    "batch-size-sign-descent": "The first completed full run (128 sequences; batch 16, 32, 64 and full) took longer "
    "than the 10-minute limit for 3 seeds and missed 'sign descent is worst at small batch' on every seed (SGD was "
    "worst). To fit the limit the data was halved after that first look (†): 64 sequences with batch 8, 16, 32 and "
    "full, the same fractions of the data (two earlier attempts, vocabulary 2,000 with 512 and then 256 sequences, "
    "had been stopped before any verdict for the same reason). The search itself is unchanged; it now scores the "
    "final loss from one forward pass and runs every batch size's first phase as one batch, which changes no number "
    "(a rerun gave identical losses). Checks unchanged. *Cause of the remaining miss:* the check is stricter than "
    "the paper's words. In full batch sign descent closes {bs_gap_closed}% of the SGD–Adam gap (the paper: 'closes "
    "most of the gap', 'competitive with Adam') but ends at {bs_sign_over_adam} Adam's loss on seeds {bs_seeds}; the "
    "check stays as written. Scale may add to it: 60 steps, against the paper's hundreds of full-batch iterations. "
    "The one closer setting, written down before it ran: 120 steps per run. It ran (below) and passed "
    "{bs_closer_checks}: at 120 steps every optimizer with momentum nearly fits the 64 sequences in full batch "
    "(final losses {bs_closer_full_losses}), so the full-batch gaps the claim is about collapse (SGD/Adam "
    "{bs_closer_sgd_over_adam}× against {bs_sgd_over_adam}× at 60 steps). Longer training needs more data than a "
    "10-minute budget allows here. The first setting stays shipped.",
}


def _span(values: list[float], decimals: int | None = None) -> str:
    """'0.10–0.11': the range of a figure over seeds, to two significant digits of its largest value."""
    top = max(abs(v) for v in values)
    if decimals is None:
        decimals = max(0, 1 - math.floor(math.log10(top))) if top > 0 else 0
    low, high = (f"{v:.{decimals}f}" for v in (min(values), max(values)))
    return low if low == high else f"{low}–{high}"


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _numbers(summary: dict, key: str) -> list:
    return [r["numbers"][key] for r in summary["per_seed"]]


def _seed_count(summary: dict) -> str:
    return f"{summary['reproduced_seeds']} of {len(summary['per_seed'])}"


def _closer(name: str) -> dict | None:
    """The stored summary of the reproduction's one closer setting (history/closer/NAME.json), if it ran."""
    saved = HISTORY / "closer" / f"{name}.json"
    return json.loads(saved.read_text()) if saved.exists() else None


def note_figures(summaries: dict[str, dict]) -> dict[str, str]:
    """Every figure the notes quote, computed from the stored runs (shipped and closer settings), so that no number
    in them is typed by hand: a stored run that changes changes the note with it."""
    out: dict[str, str] = {}
    dyn = summaries.get("dynamical-models")
    if dyn:
        out["dyn_divergence_steps"] = _listed(
            [f"{s:.0f}" for s in _numbers(dyn, "constant_steps_to_divergence_if_run_2000_steps")]
        )
        out["dyn_seeds"] = _listed([str(r["seed"]) for r in dyn["per_seed"]])
        held = sum(r["checks"][0]["passed"] for r in dyn["per_seed"])
        out["dyn_h100_held"] = f"{held} of {len(dyn['per_seed'])}"
    eos = summaries.get("edge-of-stability")
    if eos:
        out["eos_seeds"] = _edge_seeds(eos)
    warm, warm_closer = summaries.get("warmup"), _closer("warmup")
    if warm:
        ratios = [
            a / b
            for a, b in zip(_numbers(warm, "initial_sharpness_scale2"), _numbers(warm, "initial_sharpness_scale1"))
        ]
        out |= {
            "warmup_final_loss": _span(_numbers(warm, "warmup_final_loss")),
            "warmup_sharpness_ratio": _span(ratios),
            "warmup_stable_lr_scale2": _span(_numbers(warm, "max_stable_lr_scale2")),
            "warmup_stable_lr_scale1": _span(_numbers(warm, "max_stable_lr_scale1")),
            "warmup_eta_lambda": _span(_numbers(warm, "median_eta_lambda_during_warmup_after_edge")),
        }
    if warm_closer:
        out["warmup_closer_eta_lambda"] = _span(_numbers(warm_closer, "median_eta_lambda_during_warmup_after_edge"))
    classical = _closer("classical-tuners")
    if classical:
        out["classical_closer_reproduced"] = _seed_count(classical)
    cdat, cdat_closer = summaries.get("cdat"), _closer("cdat")
    if cdat:
        out["cdat_rise_max"] = _span([max(_numbers(cdat, "sigma2_early_lr_rise"))])
    if cdat_closer:
        out["cdat_closer_rise"] = _span(_numbers(cdat_closer, "sigma2_early_lr_rise"))
        out["cdat_closer_reproduced"] = _seed_count(cdat_closer)
        every = cdat_closer["reproduced_seeds"] == len(cdat_closer["per_seed"])
        out["cdat_closer_outcome"] = "" if every else ", not every seed, so the first setting stays shipped"
    directional = summaries.get("directional-sharpness")
    if directional:
        both = lambda opt: [  # noqa: E731
            v for traj in ("sgd", "adam") for v in _numbers(directional, f"{traj}_trajectory_mean_ratio_{opt}")
        ]
        out |= {
            "dir_sgd_lr": _span(_numbers(directional, "best_sgd_lr")),
            "dir_clip_lr": _span(_numbers(directional, "best_sgd_clip_lr")),
            "dir_adam": _span(both("adam")),
            "dir_clip": _span(both("sgd_clip")),
            "dir_normalized": _span(both("normalized_sgd")),
            "dir_clip_vs_sgd": _listed(
                [
                    f"{c:.2f} against {s:.2f}"
                    for c, s in zip(
                        _numbers(directional, "best_sgd_clip_final_loss"), _numbers(directional, "best_sgd_final_loss")
                    )
                ]
            ),
            "dir_seeds": _listed([str(r["seed"]) for r in directional["per_seed"]]),
        }
    ladder, ladder_closer = summaries.get("batch-size-sign-descent"), _closer("batch-size-sign-descent")
    if ladder:
        sgd, sign, adam = (_numbers(ladder, k) for k in ("sgd+m_Full", "sign+m_Full", "adam_Full"))
        out |= {
            "bs_gap_closed": _span([100 * (s - g) / (s - a) for s, g, a in zip(sgd, sign, adam)]),
            "bs_sign_over_adam": _listed([f"{g / a:.2f}×" for g, a in zip(sign, adam)]),
            "bs_seeds": _listed([str(r["seed"]) for r in ladder["per_seed"]]),
            "bs_sgd_over_adam": _span([s / a for s, a in zip(sgd, adam)]),
        }
    if ladder_closer:
        keys = ("sgd+m_Full", "sign+m_Full", "normalized+m_Full", "adam_Full")
        sgd, adam = _numbers(ladder_closer, "sgd+m_Full"), _numbers(ladder_closer, "adam_Full")
        passed = {f"{sum(c['passed'] for c in r['checks'])} of {len(r['checks'])}" for r in ladder_closer["per_seed"]}
        out |= {
            "bs_closer_checks": f"{passed.pop()} checks on every seed" if len(passed) == 1 else "fewer checks",
            "bs_closer_full_losses": _span([v for k in keys for v in _numbers(ladder_closer, k)]),
            "bs_closer_sgd_over_adam": _span([s / a for s, a in zip(sgd, adam)]),
        }
    return out


def _edge_seeds(summary: dict) -> str:
    """Which seeds hover at the edge, and for each that does not, the checks it misses."""
    total = len(summary["per_seed"])
    if summary["reproduced_seeds"] == total:
        return f"On all {total} seeds λ1 sharpens to the edge and hovers there while the loss falls with spikes."
    misses = []
    for r in summary["per_seed"]:
        failed = [i for i, c in enumerate(r["checks"]) if not c["passed"]]
        if failed == [0]:
            start = r["numbers"]["first_value"]
            misses.append(
                f"seed {r['seed']} fails only the first check, its initialisation starting it at η·λ1 = {start:.2f}"
            )
        elif failed:
            misses.append(f"seed {r['seed']} fails checks {_listed([str(i + 1) for i in failed])}")
    return (
        f"On {summary['reproduced_seeds']} of {total} seeds λ1 sharpens to the edge and hovers there while the loss "
        f"falls with spikes (figure); {_listed(misses)}."
    )


def closer_summary(names: list[str]) -> str:
    """One sentence: each closer setting that ran and on how many seeds it reproduced."""
    ran = []
    for name in names:
        s = _closer(name)
        if s is not None:
            ran.append(f"{name} ({_seed_count(s)} seeds)")
    if not ran:
        return ""
    return (
        " **One setting closer to the paper**, written down before it ran, was tried for a partial reproduction "
        f"(its section shows it; the table counts the shipped settings); it reproduced on: {', '.join(ran)}."
    )


def closer_section(name: str) -> list[str]:
    """The one closer setting's result, when it ran: its verdict and failed checks."""
    s = _closer(name)
    if s is None:
        return []
    count, total = s["reproduced_seeds"], len(s["per_seed"])
    lines = [
        f"**The one closer setting** (written down before it ran, by the `scripts/closer_settings.py` of its time): "
        f"{s['closer_setting']}. **Result: reproduced on {count} of {total} seeds** ({s['seconds_run']:.0f} s for all "
        f"seeds){'; the first setting stays shipped' if count < total else ''}.",
        "",
    ]
    for r in s["per_seed"]:
        passed = sum(c["passed"] for c in r["checks"])
        failed = [c["description"] for c in r["checks"] if not c["passed"]]
        lines.append(f"- seed {r['seed']}: {passed}/{len(r['checks'])} checks" + "".join(f"; ✘ {d}" for d in failed))
    lines.append("")
    figures = sorted((HISTORY / "closer").glob(f"{name}__*.png"))
    return lines + [f"![{name}, closer setting](reproductions/history/closer/{fig.name})\n" for fig in figures]


def history_section() -> list[str]:
    """The earlier settings' runs as they were stored (seeds 0–2; their checks as the code then scored them)."""
    done = [n for n in ORDER if (HISTORY / f"{n}.json").exists()]
    summaries = {n: json.loads((HISTORY / f"{n}.json").read_text()) for n in done}
    figures = note_figures(summaries)
    lines = [
        "## History: the earlier settings",
        "",
        "The settings run before the pre-registration above, on seeds 0–2, with checks some of which were written "
        "or changed after a look at the numbers they score (‡) and settings chosen after a first look (†). They are "
        "kept as they were stored, scored by the checks of their time; they count in no headline. Their seeds are "
        "the pilot seeds of the pre-registered settings.",
        "",
        "| reproduction | seeds reproduced | checks passed, per seed | time (all seeds) |",
        "|---|---|---|---|",
    ]
    for n in done:
        s = summaries[n]
        per_seed = ", ".join(f"{sum(c['passed'] for c in r['checks'])}/{len(r['checks'])}" for r in s["per_seed"])
        mark = (" †" if s["chosen_after_first_look"] else "") + (" ‡" if s["checks_after_first_look"] else "")
        lines.append(
            f"| [{n}](#{n}-earlier-setting){mark} | {_seed_count(s)} | {per_seed} | {s['seconds_run']:.0f} s |"
        )
    lines.append("")
    for n in done:
        s = summaries[n]
        lines += [f"### {n}, earlier setting", ""]
        for r in s["per_seed"]:
            lines.append(f"Seed {r['seed']} ({'reproduced' if r['reproduced'] else 'not reproduced'}):")
            lines.append("")
            lines += [f"- {'✔' if c['passed'] else '✘'} {c['description']}" for c in r["checks"]]
            lines.append("")
        chosen = "Setting chosen after a first look (disclosed). " if s["chosen_after_first_look"] else ""
        lines += [f"*How the setting was chosen.* {chosen}{NOTES[n].format_map(figures)}", ""]
        lines += [f"![{n}](reproductions/history/{fig.name})\n" for fig in sorted(HISTORY.glob(f"{n}__*.png"))]
        lines += closer_section(n)
    return lines


AFTER_RUN = {
    "dynamical-models": "The constant-η model blew up (p became non-finite) before the paper's 100 steps from "
    "{dyn_blown} — starts with λ0 = {dyn_blown_lam0}, in the lower part of the registered range — and held from "
    "{dyn_held}. Eq. (4) with constant a and b is linearly unstable about its equilibrium, so how long the "
    "oscillation lasts depends on how far the start sits from it, which the paper does not give; Fig. 4 shows one "
    "trajectory. The tuner model's runaway and both CDAT models held on every fresh seed. *Likely cause:* the start, "
    "not the scale: this is the paper's own setting, and a longer run only blows up sooner relative to its length.",
    "edge-of-stability": "Every check held on every fresh seed: η·λ1 started at {eos_first}, reached 2/η by step "
    "{eos_edge_step} and hovered with medians of {eos_median} over the rest of the run, while the loss rose at "
    "{eos_rises} of the steps after the edge and its 200-step window means fell from each window to the next. The "
    "odd sampling interval reads both parities of GD's period-two oscillation at the edge.",
    "adam-preconditioned-edge": "Both checks held on every fresh seed: the preconditioned λ1 over 38/η started at "
    "{adam_first}, reached the threshold by step {adam_edge_step}, and its late medians were {adam_late}. These seeds "
    "ran after the amendment the claims file discloses: P now carries Adam's first-moment bias factor (1 − β1^t), as "
    "Cohen et al. write Adam. The amendment predicted that the first check would fail, reading its start at step 1 "
    "where the factor is 1 − β1; that prediction was wrong, and so is the claims file's 'first at step 1' (in the "
    "setting and in the first check's statistic): the runs measure every 9 steps from step {adam_first_step}, where "
    "the factor is {adam_factor}, so the start ratios rose by its inverse rather than tenfold, and the check held, "
    "the largest start close to its bound. The earlier seeds 3 to 5, run without the factor, held both checks too "
    "(the amendment names the commit). The checks stay as registered.",
    "warmup": "Every check held on every fresh seed: without warmup the peak η diverged; with it training ended at "
    "{warm_final} of its initial loss while λ1 fell from {warm_first} to {warm_end} by the warmup's end, and η_t·λ1 "
    "sat in the registered band around 2 at {warm_near} of the warmup's measurements. Seed 3's no-warmup status "
    "reads None, not 'diverged': a paper-scale command run in the same folder during the session (since then, other "
    "scales default to their own folder) emptied that sub-run's folder after it had diverged and before its status "
    "was read; its losses had been read, and the check scored it from the final loss, which alone fails it.",
    "classical-tuners": "Every check held on every fresh seed, with two readings to keep in mind. The tuners' η fell "
    "in every 200-step window, but only to {ct_eta} of the first window's over 2,000 steps, not the three orders of "
    "magnitude of the paper's 15,000; λ1 rose {ct_lam}-fold. Read on pairs, both tuners sat at the two-step edge "
    "itself (effective η·λ1 {ct_effective}), not measurably below it, while the tuned constant η sat above it "
    "({ct_constant}): the paper's 'just below' is, at this resolution, 'at and not beyond'. The constant η ended at "
    "{ct_final_ratio} of the tuners' final loss.",
    "cdat": "Three checks held on every fresh seed: the on-edge rule ended at {cdat_greedy} of the "
    "greedy rule's loss, λ1 on edge fell to {cdat_lambda} of its first window, and the "
    "best minibatch σ was {cdat_best_small} at batch 32 against {cdat_best_large} at batch "
    "512. What did not hold: σ = 2 was not on par with the tuned constant η "
    "({cdat_constant_lr}); it ended at {cdat_on_par} times its loss on every seed. η rose "
    "like a warmup by a factor of {cdat_rise} (the largest rise of each σ around the "
    "edge), short of the registered doubling for σ = 1.9375 on one seed; and the effective "
    "η·λ1 of σ = 2 sat at {cdat_effective}, on the registered upper end of 'slightly "
    "above', passing it on one seed and missing it by a hair on two. Whether a longer run "
    "(the paper scale's 5,000 steps) at the paper's full width closes the gap to the "
    "constant η, as Fig. 5's runs do, these 1,000 steps cannot say; the scale, not the "
    "paper's claim, is the first suspect.",
    "directional-sharpness": "Two of the three checks held on every fresh seed, and the third failed on one of its "
    "six ratios only. Adam's direction was far less sharp than SGD's on both trajectories "
    "({dir_adam} of it), Adafactor's {dir_adafactor}; clipping the top 5 per cent of the "
    "coordinates cut SGD's to {dir_clip_sgd} of its own and Adafactor's to "
    "{dir_clip_adafactor}; clipped SGD ended at {dir_final} of SGD's final loss. What did "
    "not hold: normalized SGD's ratio on SGD's trajectory was {dir_nsgd_sgd}, just above "
    "the registered half (on Adam's trajectory {dir_nsgd_adam}), where the paper's tables "
    "give at most 0.31. Normalized SGD (Pan & Li's Alg. 2) normalizes each tensor, and "
    "this model has few, large ones (its embedding and output matrices hold most of its "
    "weights), so the normalization spreads its direction less than on t5-small or "
    "DistilRoBERTa; the model, not the run's length, is the likely cause, which the paper "
    "scale (the tutorial transformer, two layers of width 200) would test. Clipped SGD's "
    "best η was {dir_clip_lr} against SGD's {dir_sgd_lr} ({dir_clip_interior} in the "
    "widened grid).",
    "optimization-assumptions": "The identity check held on every fresh seed (z = {as_z_sgdm} for SGDM and "
    "{as_z_adamw} for AdamW), the convexity check on none, for one optimizer: positive "
    "gaps beyond rounding came at {as_share_sgdm} of SGDM's steps but only "
    "{as_share_adamw} of AdamW's, below the registered twentieth. Along AdamW's trajectory "
    "the loss was convex on the segment of almost every step, which is what the paper's v2 "
    "reports of the convexity identities ('often hold in practice') rather than v1's 'all "
    "of our tested assumptions fail'. The likely cause is the optimizer's small steps (η = "
    "3·10⁻⁴ with weight decay) on this small CNN, not the run's length: the share is read "
    "over all 4,000 steps of each run; the paper's ResNet18 on CIFAR-10 (the paper scale) "
    "would test whether AdamW's steps leave the convex region there.",
    "batch-size-sign-descent": "Four of the five checks held on every fresh seed. The SGD/Adam loss ratio grew "
    "{bs_growth}-fold from batch 8 to the full batch; normalized GD beat sign descent at batch 8 (sign over "
    "normalized {bs_sign_over_normalized_small}) and lost to it in full batch ({bs_sign_over_normalized_full}); in "
    "full batch sign descent closed {bs_closed} of the SGD–Adam gap in log-loss (final losses: SGD {bs_sgd_full}, "
    "sign descent {bs_sign_full}, Adam {bs_adam_full}); normalized GD ended at {bs_normalized} of SGD's loss across "
    "the batch sizes. Of the step-size searches, {bs_interior} ended inside their grid. What did not hold, "
    "for SGD only, on every seed, as the pilot had shown: momentum's gain (the loss without it over the loss with "
    "it) fell from {bs_gain_sgd_small} at batch 8 to {bs_gain_sgd_full} in full batch, while Adam's rose from "
    "{bs_gain_adam_small} to {bs_gain_adam_full}. In full batch SGD ended at {bs_sgd_full} with momentum and "
    "{bs_sgd_without_full} without, after 100 steps, a quarter of the steps its batch-8 runs take. *Likely cause:* "
    "the run's length, which the paper scale (3,200 full-batch steps on the tutorial transformer) would test; "
    "whether SGD's momentum gain grows with the batch size at this model's size over longer runs, these runs "
    "cannot say.",
    "noise-histograms": "Both checks held on every fresh seed: α̂ was {noise_alpha_image} for the image model and "
    "{noise_alpha_language} for the language model, and the QQ correlations {noise_r_image} against "
    "{noise_r_language}. The text is the King James Bible, not PTB; the paper's WikiText-2 and SQuAD rows are not "
    "reproduced here.",
}


def after_run_figures(name: str, summary: dict) -> dict[str, str]:
    """The figures an after-run note quotes, from the stored fresh-seed run (no typed result)."""
    runs = summary["per_seed"]
    if name == "dynamical-models":
        blown = [r for r in runs if not r["checks"][0]["passed"]]
        held = [r for r in runs if r["checks"][0]["passed"]]
        steps = lambda r: r["numbers"]["constant_steps_to_divergence_if_run_2000_steps"]  # noqa: E731
        return {
            "dyn_blown": _listed([f"step {steps(r)} on seed {r['seed']}" for r in blown]) or "no start",
            "dyn_blown_lam0": _listed([f"{r['numbers']['lam0']:.2f}" for r in blown]) or "none",
            "dyn_held": _listed([f"seed {r['seed']} (blow-up at step {steps(r)})" for r in held]) or "none",
        }
    if name == "edge-of-stability":
        rises = [100 * r["numbers"]["loss_rise_fraction_after_edge"] for r in runs]
        return {
            "eos_first": _span([r["numbers"]["first_value"] for r in runs]),
            "eos_edge_step": _listed([str(r["numbers"]["first_step_at_edge"]) for r in runs]),
            "eos_median": _span([r["numbers"]["median_after_edge"] for r in runs]),
            "eos_rises": _span(rises, 0) + " per cent",
        }
    if name == "adam-preconditioned-edge":
        first_step, beta1 = runs[0]["numbers"]["steps"][0], 0.9  # the claims file's Adam: torch's default β1
        return {
            "adam_late": _span([r["numbers"]["median_last_half"] for r in runs]),
            "adam_first": _span([r["numbers"]["first_value"] for r in runs]),
            "adam_edge_step": _listed([str(r["numbers"]["first_step_at_edge"]) for r in runs]),
            "adam_first_step": str(first_step),
            "adam_factor": f"{1 - beta1**first_step:.2f}",
        }
    if name == "warmup":
        band = thresholds(name)["tracks-2-over-eta"]
        fraction = []
        for r in runs:
            during = r["numbers"]["eta_lambda_during_warmup"]
            fraction.append(100 * sum(band["low"] <= v <= band["high"] for v in during) / len(during))
        n = [r["numbers"] for r in runs]
        return {
            "warm_final": _span([x["warmup_final_loss"] / x["warmup_initial_loss"] for x in n]),
            "warm_first": _span([r["numbers"]["sharpness_first"] for r in runs], 0),
            "warm_end": _span([r["numbers"]["sharpness_end_of_warmup"] for r in runs], 0),
            "warm_near": _span(fraction, 0) + " per cent",
        }
    if name == "classical-tuners":
        return classical_figures(runs)
    if name == "cdat":
        return cdat_figures(runs)
    if name == "directional-sharpness":
        return directional_figures(runs)
    if name == "optimization-assumptions":
        return assumptions_figures(runs)
    if name == "batch-size-sign-descent":
        return batch_size_figures(runs)
    if name == "noise-histograms":
        return {
            f"noise_{key}_{arm}": _span([r["numbers"][f"{stat}_{arm}"] for r in runs], digits)
            for key, stat, digits in (("alpha", "tail_index", 2), ("r", "qq_correlation", 3))
            for arm in ("image", "language")
        }
    return {}


def classical_figures(runs: list[dict]) -> dict[str, str]:
    """The classical tuners' after-run figures, computed with the checks' own statistics from the stored series."""
    t = thresholds("classical-tuners")
    eta, lam, effective, constant, final = [], [], [], [], []
    for r in runs:
        n = r["numbers"]
        baseline = n["series"][f"constant η = {n['best_constant_lr']:g}"]
        constant.append(late_effective(baseline))
        for k in n["tuners"]:
            run = n["series"][k]
            window = t["eta-falls"]["window_steps"]
            eta.append(last_over_first(windowed(run["loss_steps"], run["lr"], window, "geometric_mean")))
            lam.append(last_over_first(windowed(run["steps"], run["lambda"], t["sharpness-rises"]["window_steps"])))
            effective.append(late_effective(run))
            final.append(n["best_constant_final_loss"] / n[f"{k}_final_loss"])
    return {
        "ct_eta": _span(eta),
        "ct_lam": _span(lam),
        "ct_effective": _span(effective, 2),
        "ct_constant": _span(constant, 2),
        "ct_final_ratio": _span(final),
    }


def cdat_figures(runs: list[dict]) -> dict[str, str]:
    """CDAT's after-run figures, with the checks' own statistics (curvlab.reproductions.cdat.statistics)."""
    numbers = [r["numbers"] for r in runs]
    stats = [cdat_statistics(n) for n in numbers]
    rises = [rise for s in stats for rise, _ in s["rise"].values()]
    return {
        "cdat_greedy": _span([n["edge_final_loss"] / n["greedy_final_loss"] for n in numbers], 2),
        "cdat_on_par": _span([n["edge_final_loss"] / n["best_constant_final_loss"] for n in numbers], 1),
        "cdat_constant_lr": _listed(sorted({f"{n['best_constant_lr']:g}" for n in numbers})),
        "cdat_rise": _span(rises, 1),
        "cdat_lambda": _span([s["lambda_ratio"] for s in stats], 2),
        "cdat_effective": _span([s["effective"] for s in stats], 2),
        "cdat_best_small": _listed([f"{next(iter(n['best_sigma_by_batch'].values())):g}" for n in numbers]),
        "cdat_best_large": _listed([f"{list(n['best_sigma_by_batch'].values())[-1]:g}" for n in numbers]),
    }


TRAJECTORIES = ("sgd_trajectory", "adam_trajectory")  # the directional reproduction's, in its setting's order


def directional_figures(runs: list[dict]) -> dict[str, str]:
    """The directional reproduction's after-run figures, with the checks' own statistics
    (curvlab.reproductions.directional.statistics), and the tuned final losses."""
    numbers = [r["numbers"] for r in runs]
    stats = [directional_statistics(n) for n in numbers]
    of = lambda key, optimizer, trajectories=TRAJECTORIES: [  # noqa: E731
        s[key][(t, optimizer)] for s in stats for t in trajectories
    ]
    return {
        "dir_nsgd_sgd": _span(of("adaptive", "normalized_sgd", ["sgd_trajectory"]), 2),
        "dir_nsgd_adam": _span(of("adaptive", "normalized_sgd", ["adam_trajectory"]), 2),
        "dir_adam": _span(of("adaptive", "adam"), 3),
        "dir_adafactor": _span(of("adaptive", "adafactor"), 2),
        "dir_clip_sgd": _span(of("clipped", "sgd"), 2),
        "dir_clip_adafactor": _span(of("clipped", "adafactor"), 2),
        "dir_final": _span([n["best_sgd_clip_final_loss"] / n["best_sgd_final_loss"] for n in numbers], 2),
        "dir_clip_lr": _listed(sorted({f"{n['best_sgd_clip_lr']:g}" for n in numbers})),
        "dir_sgd_lr": _listed(sorted({f"{n['best_sgd_lr']:g}" for n in numbers})),
        "dir_clip_interior": "interior" if all(n["best_sgd_clip_lr_is_interior"] for n in numbers) else "not interior",
    }


def assumptions_figures(runs: list[dict]) -> dict[str, str]:
    """The assumption tests' after-run figures, with the checks' own statistics
    (curvlab.reproductions.assumptions.statistics)."""
    stats = [assumptions_statistics(r["numbers"]) for r in runs]
    names = runs[0]["numbers"]["optimizers"]
    return {
        **{f"as_share_{o}": _span([100 * s["positive"][o] for s in stats], 1) + " per cent" for o in names},
        **{f"as_z_{o}": _span([s["z"][o] for s in stats], 2) for o in names},
    }


def batch_size_figures(runs: list[dict]) -> dict[str, str]:
    """The batch-size reproduction's after-run figures, with the checks' own statistics
    (curvlab.reproductions.batch_size.statistics), and how many step-size searches ended inside their grid."""
    numbers = [r["numbers"] for r in runs]
    stats = [batch_size_statistics(n) for n in numbers]
    sizes = list(numbers[0]["best"]["sgd+m"])
    interior = [v for n in numbers for by_size in n["interior"].values() for v in by_size.values()]
    full = lambda key: _span([n[key] for n in numbers], 2)  # noqa: E731
    return {
        "bs_growth": _span([s["gap_growth"] for s in stats], 1),
        "bs_sign_over_normalized_small": _span([s["sign_over_normalized_S"] for s in stats], 2),
        "bs_sign_over_normalized_full": _span([s["sign_over_normalized_Full"] for s in stats], 2),
        "bs_closed": _span([s["gap_closed"] for s in stats], 2),
        "bs_normalized": _span([s[f"normalized_over_sgd_{k}"] for s in stats for k in sizes], 2),
        **{f"bs_{o.removesuffix('+m')}_full": full(f"{o}_Full") for o in ("sgd+m", "sign+m", "normalized+m", "adam")},
        **{
            f"bs_gain_{o.removesuffix('+m')}_{k}": _span([s[f"momentum_gain_{o}_{size}"] for s in stats], 2)
            for o in ("sgd+m", "adam")
            for k, size in (("small", sizes[0]), ("full", "Full"))
        },
        "bs_sgd_without_full": full("sgd-m_Full"),
        "bs_interior": f"{sum(interior)} of {len(interior)}",
    }


class Refused(SystemExit):
    """A stored run that cannot be reported under the current claims file."""


def validated(name: str) -> dict:
    """The stored fresh-seed run of pre-registered reproduction ``name``, re-scored by the checks in the code, after
    checking that it ran under the current, committed claims file, on its seeds, at the full scale."""
    claims = load_claims(name)
    summary = json.loads((STORED / f"{name}.json").read_text())
    where = f"docs/reproductions/{name}.json"
    if summary.get("claims_sha256") != claims.sha256:
        raise Refused(
            f"{where}: ran under another claims file than {claims.path.name} (the checks or the setting "
            "changed after the run): rerun it on fresh seeds (scripts/run_reproductions.sh)"
        )
    if summary.get("claims_uncommitted", True) or not summary.get("claims_commit"):
        raise Refused(f"{where}: its claims file was not committed when it ran: commit the claims, then rerun")
    if summary["claims_committed_at"] > summary["started"]:
        raise Refused(f"{where}: its claims file was committed after the run started")
    if summary["seeds"] != list(claims.seeds) or summary.get("scale") != "full":
        raise Refused(
            f"{where}: ran on seeds {summary['seeds']} at scale {summary.get('scale')!r}; the claims "
            f"file registers seeds {list(claims.seeds)} at the full scale"
        )
    rep = REGISTRY[name]
    for r in summary["per_seed"]:
        checks = [vars(c) for c in rep.checks(r["numbers"])]
        if [(c["id"], c["passed"]) for c in checks] != [(c.get("id"), c["passed"]) for c in r["checks"]]:
            raise Refused(
                f"{where}, seed {r['seed']}: the checks in the code now score it differently from the "
                "run; checks may not change after their run: rerun on fresh seeds"
            )
        r["checks"] = checks
    return summary


def _preregistered() -> list[str]:
    return [n for n in ORDER if REGISTRY[n].preregistered]


def headline(summaries: dict[str, dict]) -> list[str]:
    """The counts: pre-registered reproductions that reproduce on every fresh seed, on some, on none, not yet run,
    and those not yet pre-registered."""
    ran = list(summaries)
    everywhere = [n for n in ran if summaries[n]["reproduced"]]
    somewhere = [n for n in ran if not summaries[n]["reproduced"] and summaries[n]["reproduced_seeds"]]
    waiting = [n for n in _preregistered() if n not in summaries]
    pending = [n for n in ORDER if not REGISTRY[n].preregistered]
    lines = [
        f"**Of the {len(ran)} pre-registered reproductions run on fresh seeds, {len(everywhere)} reproduce on every "
        f"fresh seed** ({', '.join(everywhere) or 'none'}); {len(somewhere)} on some seeds only "
        f"({', '.join(somewhere) or 'none'}); the others on none."
    ]
    if waiting:
        lines.append(f"Pre-registered, not yet run on their fresh seeds: {', '.join(waiting)}.")
    if pending:
        lines.append(
            f"Not yet pre-registered (their earlier results are in the [History](#history-the-earlier-settings) "
            f"section, where no headline counts them): {', '.join(pending)}."
        )
    return [" ".join(lines), ""]


def table(summaries: dict[str, dict]) -> list[str]:
    lines = [
        "| reproduction | pre-registered in | fresh seeds reproduced | checks passed, per seed | time (all seeds) |",
        "|---|---|---|---|---|",
    ]
    for n in _preregistered():
        s = summaries.get(n)
        if s is None:
            lines.append(f"| [{n}](#{n}) | not yet committed with a run | not run | | |")
            continue
        per_seed = ", ".join(f"{sum(c['passed'] for c in r['checks'])}/{len(r['checks'])}" for r in s["per_seed"])
        lines.append(
            f"| [{n}](#{n}) | `{s['claims_commit'][:10]}` | {_seed_count(s)} | {per_seed} | {s['seconds_run']:.0f} s |"
        )
    return lines + [""]


def section(name: str, summary: dict | None) -> list[str]:
    """One pre-registered reproduction: the claim, both settings, the pre-registration, each check with what it tests
    and why, each fresh seed's verdict, the figures."""
    claims = load_claims(name)
    lines = [
        f"## {name}",
        "",
        f"**Claim.** {claims.claim}",
        "",
        f"**Paper.** {claims.paper}",
        "",
        f"**The paper's smallest setting.** {claims.paper_setting}",
        "",
        f"**Ours.** {claims.our_setting}",
        "",
    ]
    if claims.disclosure:
        lines += [f"**Disclosed.** {claims.disclosure}", ""]
    relative = claims.path.relative_to(DOCS.parent)
    if summary is None:
        return lines + [f"**Pre-registration.** `{relative}`, registered {claims.registered}; not yet run.", ""]
    count, total = summary["reproduced_seeds"], len(summary["per_seed"])
    lines += [
        f"**Pre-registration.** `{relative}` (SHA-256 `{claims.sha256[:12]}`), committed in "
        f"`{summary['claims_commit'][:10]}` at {summary['claims_committed_at']}, before the run started at "
        f"{summary['started']} on the fresh seeds {_listed([str(s) for s in summary['seeds']])}.",
        "",
        f"**Verdict: reproduced on {count} of {total} fresh seeds** ({summary['seconds_run']:.0f} s for all seeds).",
        "",
    ]
    for spec in claims.checks:
        lines += [
            f"- **{spec.id}.** *“{spec.quote}”* ({spec.where}). **Statistic:** {spec.statistic} **Threshold, and "
            f"why:** {spec.why} **Contrast** (the check must fail on it; tested): {spec.contrast} **Power:** "
            f"{spec.power}",
        ]
        for r in summary["per_seed"]:
            check = next(c for c in r["checks"] if c["id"] == spec.id)
            lines.append(f"    - seed {r['seed']}: {'✔' if check['passed'] else '✘'} {check['description']}")
    lines.append("")
    missed = [(r["seed"], c) for r in summary["per_seed"] for c in r["checks"] if not c["passed"]]
    if missed:
        lines += ["**What did not hold.**", ""]
        lines += [f"- seed {seed}: {c['description']}" for seed, c in missed]
        lines.append("")
    if name in AFTER_RUN:
        note = AFTER_RUN[name].format_map(after_run_figures(name, summary))
        lines += [f"*Read after the run* (the checks above are as registered): {note}", ""]
    lines += [f"![{name}](reproductions/{fig.name})\n" for fig in sorted(STORED.glob(f"{name}__*.png"))]
    return lines


def render() -> str:
    """docs/reproductions.md as the stored runs, the claims files and the checks in the code make it."""
    summaries = {n: validated(n) for n in _preregistered() if (STORED / f"{n}.json").exists()}
    lines = [
        "# Reproductions",
        "",
        "`curvlab reproduce --list` lists them; `curvlab reproduce NAME [--scale quick|full|paper] [--seeds ...]` "
        "runs one on each seed and writes each seed's `numbers.json`, then `numbers.json`, `verdict.txt`, figures "
        "with every seed and `report.html`; a rerun resumes after the last finished seed.",
        "",
        "Each reproduction is a small pre-registered study. Its claims file (`src/curvlab/reproductions/claims/`) "
        "quotes the paper's sentence each check tests, fixes the statistic and its threshold (and says why that "
        "threshold is what the paper shows), names a *contrast* — a run without the phenomenon, on which the check "
        "must fail (`tests/test_preregistration.py` runs each) — and states the check's *power* at the run's "
        "length, from a calculation or a pilot on seeds 0–2. The file, with the setting and the fresh seeds the "
        "verdict is computed on, is committed before those seeds run; each stored run records the file's hash and "
        "the commit, and this page refuses a run whose claims file has changed since. `--scale quick` (one pilot "
        "seed, small) is CI's smoke test and no claim; `--scale paper` is the paper's own setting for a GPU "
        "(`bench/paper_scale.sh`), not run here. Regenerate this page with `python scripts/reproductions_doc.py`.",
        "",
        *headline(summaries),
        *table(summaries),
    ]
    for n in _preregistered():
        lines += section(n, summaries.get(n))
    lines += history_section()
    return "\n".join(lines)


def main() -> None:
    (DOCS / "reproductions.md").write_text(render())
    print(f"wrote {DOCS / 'reproductions.md'}")


if __name__ == "__main__":
    main()
