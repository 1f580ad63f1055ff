"""Regenerate docs/reproductions.md from the full runs' summaries in docs/reproductions/*.json.

After a full run by hand (`curvlab reproduce NAME --out runs/reproduce/NAME`), copy its numbers.json to
docs/reproductions/NAME.json and its figures to docs/reproductions/NAME__FIGURE.png, then run this.
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
    "dynamical-models": "Setting chosen after a first look (disclosed): App. C.5 gives a, b, η but no initial state. "
    "From λ0 = 1.5, x0 = 0.1 the constant-η model overshot and diverged by step ~60. We start near the model's "
    "equilibrium p* = a/b (λ0 = 1.9) and simulate Fig. 4's horizon of ≈10² steps. Run longer, the oscillation grows "
    "and diverges at step 115 (in the JSON). The checks were not changed.",
    "edge-of-stability": "Setting chosen after a first look (disclosed): the first setting tried (η = 0.3, squared "
    "loss) started above the edge (η·λ1 = 2.95 at step 10) and failed the first check. An earlier probe with "
    "cross-entropy reached the edge, but λ1 fell once the 1,000-image subset was fit. η = 0.1 was the one alternative "
    "tried; it reproduced, and it is what ships. The checks were not changed.",
    "adam-preconditioned-edge": "Cross-entropy was probed first: the preconditioned sharpness collapsed as the loss "
    "went to 0, since CE curvature vanishes there. Squared loss on one-hot targets, as Cohen et al. use, was then "
    "probed at η = 0.01 and 0.003; both hovered at the edge. 0.01 ships.",
    "noise-histograms": "The first run used character-level text (73 symbols); its noise was as Gaussian as the image "
    "model's (α̂ ≈ 2.0 for both), so it failed. The paper's language models are word-level (PTB, WikiText-2); word "
    "level (vocabulary 5,000) ships, and it reproduces clearly.",
    "optimization-assumptions": "The first run (η = 0.5, 400 float32 steps) drove GD on least squares to roundoff, "
    "where f differences are float noise: 8% positive 'gaps', inst_smooth up to 19. Its λ_max also left out the bias "
    "column, a bug. It ships with η = 0.05, 100 steps and the bias included. The random-scaling check passed in both "
    "runs.",
    "classical-tuners": "First run, shipped as is: sharpness rises and η·λ1 stays below 2, as claimed. But within 500 "
    "steps the tuners' η falls only 4.5× (linesearch) and 3× (quadratically greedy), against the ≥ 10× criterion. "
    "Linesearch also ended *below* the best constant η. The paper trains for thousands of steps; a longer horizon is "
    "the obvious next test.",
    "cdat": "First run, shipped as is: σ = 2 beats σ = 1 and the tuned constant, and the best minibatch σ shifts with "
    "batch size (1.5 at batch 32, 2 at 512). But no warmup-like rise appeared: CDAT's η is largest at the first step "
    "here.",
    "warmup": "First run, shipped as is: warmup rescues the peak η that diverges without it, and a ×2 initialisation "
    "raises λ1 about 9× and lowers the maximal stable η 8×. But during warmup η_t·λ1 overshoots to ≈3.5 and settles "
    "around 2.5–3, not 2.",
    "directional-sharpness": "First run, shipped as is: SGD's update is the sharpest on both trajectories; Adam "
    "(0.04–0.07×) and clipping (0.15–0.23×) reduce it by large factors. Normalized SGD reduces it only ≈2× "
    "(0.52–0.59), and clipped SGD did not train faster on the η grid {0.1, 0.3, 1}, which may simply be too narrow "
    "for clipped steps.",
    "batch-size-sign-descent": "Shipped from its first completed full run. Two earlier attempts (vocabulary 2,000, "
    "512 and then 256 sequences) were stopped unfinished because they would have taken 18–30 minutes, against the "
    "15-minute budget, before any verdict existed. The model was made cheaper (vocabulary 500, 128 sequences); the "
    "protocol and checks were not changed. 4 of 5 checks pass. The miss: at batch 16 sign descent was not the worst, "
    "SGD was (3.29 vs 3.15). The quick variant (1 seed, batch 16 and full, 20 steps) is a smoke test.",
}


def main() -> None:
    done = [n for n in ORDER if (DOCS / "reproductions" / f"{n}.json").exists()]
    summaries = {n: json.loads((DOCS / "reproductions" / f"{n}.json").read_text()) for n in done}
    reproduced = [n for n in done if summaries[n]["reproduced"]]
    lines = [
        "# Reproductions",
        "",
        "`curvlab reproduce --list` lists them; `curvlab reproduce NAME [--quick]` runs one and writes "
        "`numbers.json`, `verdict.txt`, "
        "figures and `report.html`. Each verdict is computed from the run's numbers by checks written in "
        "`src/curvlab/reproductions/` "
        "*before* the run. The `--quick` variants run in CI as smoke tests (they exercise the pipeline; their "
        "verdicts at that scale "
        "are not claims). The full runs below were made by hand on the 2-core CPU; their `numbers.json` and figures "
        "are in "
        "`docs/reproductions/` (regenerate this page with `python scripts/reproductions_doc.py`).",
        "",
        f"**Summary: {len(reproduced)} of {len(done)} reproduced at this scale** ({', '.join(reproduced)}); the "
        "others reproduce part "
        "of the claim, and each check below says which part.",
        "",
    ]
    lines += ["| reproduction | verdict | checks passed | time |", "|---|---|---|---|"]
    for n in done:
        s = summaries[n]
        lines.append(
            f"| [{n}](#{n}) | {'reproduced' if s['reproduced'] else 'not at this scale'} | "
            f"{sum(c['passed'] for c in s['checks'])}/{len(s['checks'])} | {s['seconds']:.0f} s |"
        )
    lines.append("")
    for n in done:
        rep, s = REGISTRY[n], summaries[n]
        lines += [
            f"## {n}",
            "",
            f"**Claim.** {rep.claim}",
            "",
            f"**Paper.** {rep.source}",
            "",
            f"**Our setting.** {rep.setting}",
            "",
            f"**Verdict: {'reproduced' if s['reproduced'] else 'did not reproduce at this scale'}** "
            f"({s['seconds']:.0f} s).",
            "",
        ]
        lines += [f"- {'✔' if c['passed'] else '✘'} {c['description']}" for c in s["checks"]]
        lines += ["", f"*How the setting was chosen.* {NOTES[n]}", ""]
        lines += [f"![{n}](reproductions/{fig.name})\n" for fig in sorted((DOCS / "reproductions").glob(f"{n}__*.png"))]
    (DOCS / "reproductions.md").write_text("\n".join(lines))
    print(f"wrote {DOCS / 'reproductions.md'}: {len(done)} reproductions")


if __name__ == "__main__":
    main()
