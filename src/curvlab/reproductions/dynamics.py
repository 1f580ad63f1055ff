"""Reproduction 10: the dynamical models of Roulet et al. 2024 (§2.3, §3.2; Fig. 4, 9, 10, 11; definitions §8).

Self-stabilization model: x_{t+1} = (1 − η_t λ_t) x_t, λ_{t+1} = λ_t + η_t (a − b x_t²), with p = x²
and y = ηλ − 2. CDAT two-eigenvalue model (eqs. 9–10): g_{t+1} = (1 − η_t ν)² g_t and
η_{t+1} = σ (λ_t² p_t + ν² g_t) / (λ_t³ p_t + ν³ g_t), with λ and p as above.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from statistics import median

from curvlab.reproductions.base import Check, Reproduction, pyplot, register, save_figure
from curvlab.reproductions.training import seed_colors


def self_stabilization(
    a: float, b: float, eta0: float, lam0: float, x0: float, steps: int, rule: str, eps: float = 0.05
) -> dict:
    """rule "constant" (η fixed) or "edge" (η = 2(1−ε)/λ_t, eq. 6)."""
    eta, lam, x = eta0, lam0, x0
    out = {"eta": [], "lam": [], "p": [], "y": []}
    for _ in range(steps):
        if rule == "edge":
            eta = 2 * (1 - eps) / lam
        out["eta"].append(eta), out["lam"].append(lam), out["p"].append(x * x), out["y"].append(eta * lam - 2)
        x, lam = (1 - eta * lam) * x, lam + eta * (a - b * x * x)
    return out


def cdat_model(
    a: float, b: float, nu: float, lam0: float, eta0: float, g0: float, p0: float, sigma: float, steps: int
) -> dict:
    eta, lam, g, p = eta0, lam0, g0, p0
    out = {"eta": [], "lam": [], "p": [], "g": [], "y": []}
    for _ in range(steps):
        y = eta * lam - 2
        out["eta"].append(eta), out["lam"].append(lam), out["p"].append(p), out["g"].append(g), out["y"].append(y)
        next_eta = sigma * (lam**2 * p + nu**2 * g) / (lam**3 * p + nu**3 * g)
        p, g, lam = (1 + y) ** 2 * p, (1 - eta * nu) ** 2 * g, lam + eta * (a - b * p)
        eta = next_eta
    return out


def steps_to_divergence(traj: dict) -> int | None:
    return next((i for i, p in enumerate(traj["p"]) if not math.isfinite(p) or p > 1e6), None)


A = 3e-2  # App. C.5: the self-stabilization model's a and b for constant η
B = 3e-1
HORIZONS = (100, 150, 200)  # Fig. 4 shows ≈10² steps; the longer ones test whether the oscillation lasts


def start_point(seed: int) -> dict:
    """Seed 0: near the model's equilibrium p* = a/b with λ0 = 1.9 (App. C.5 gives no start); other seeds: a
    seeded start with λ0 ∈ [1.7, 2.0] and p0 ∈ [0.5, 2]·a/b, so the verdict covers nearby starts too."""
    if seed == 0:
        return {"lam0": 1.9, "x0": math.sqrt(A / B)}
    rng = random.Random(seed)
    return {"lam0": rng.uniform(1.7, 2.0), "x0": math.sqrt(rng.uniform(0.5, 2.0) * A / B)}


def _holds(traj: dict, steps: int) -> tuple[float, float]:
    """(median η·λ over the second half of the first ``steps`` steps, max p over them)."""
    eta_lam = [e * lam for e, lam in zip(traj["eta"][:steps], traj["lam"][:steps])]
    p = traj["p"][:steps]
    return median(eta_lam[steps // 2 :]), max(v if math.isfinite(v) else math.inf for v in p)


def run(out: Path, quick: bool, seed: int) -> dict:
    """The models are cheap and deterministic: quick runs the full variant."""
    start = start_point(seed)
    const = self_stabilization(a=A, b=B, eta0=1.0, steps=max(HORIZONS), rule="constant", **start)
    longer = self_stabilization(a=A, b=B, eta0=1.0, steps=2000, rule="constant", **start)
    edge = self_stabilization(a=1.0, b=0.5, eta0=1.0, lam0=1.5, x0=0.1, steps=100, rule="edge", eps=0.05)
    rng = random.Random(seed)
    jitter = (lambda: 1.0) if seed == 0 else (lambda: rng.uniform(0.8, 1.2))
    cdat_start = {"lam0": 18.0 * jitter(), "g0": 4.0 * jitter(), "p0": 4.0 * jitter()}
    cdat = {s: cdat_model(a=5e-2, b=1e-1, nu=0.1, eta0=0.05, sigma=s, steps=600, **cdat_start) for s in (2.0, 1.9)}
    n_cdat = len(cdat[2.0]["y"]) // 2
    c2, c19 = cdat[2.0], cdat[1.9]
    lam2_tail = c2["lam"][n_cdat:]
    numbers = {"lam0": start["lam0"], "p0": start["x0"] ** 2, **{f"cdat_{k}": v for k, v in cdat_start.items()}}
    for steps in HORIZONS:
        med, max_p = _holds(const, steps)
        numbers[f"constant_median_eta_lambda_h{steps}"] = med
        numbers[f"constant_max_p_h{steps}"] = max_p
    numbers.update(
        {
            "constant_steps_to_divergence_if_run_2000_steps": steps_to_divergence(longer),
            "edge_rule_lambda_growth": edge["lam"][-1] / edge["lam"][0],
            "edge_rule_final_p": edge["p"][-1],
            "cdat2_median_abs_y_last_half": median(abs(v) for v in c2["y"][n_cdat:]),
            "cdat2_lambda_relative_range_last_half": (max(lam2_tail) - min(lam2_tail)) / median(lam2_tail),
            "cdat19_median_y_last_half": median(c19["y"][n_cdat:]),
            "cdat19_lambda_growth_second_half": c19["lam"][-1] / c19["lam"][n_cdat],
            "constant_eta_lambda": [e * lam for e, lam in zip(const["eta"], const["lam"])],
            "edge_eta_lambda": [e * lam for e, lam in zip(edge["eta"], edge["lam"])],
            "edge_lambda": edge["lam"],
            "constant_lambda": const["lam"],
            "cdat2_y": c2["y"],
            "cdat19_y": c19["y"],
        }
    )
    return numbers


def figures(out: Path, per_seed: dict[int, dict]) -> None:
    colors = seed_colors(per_seed)
    fig, axes = pyplot().subplots(1, 3, figsize=(13, 3.6))
    for seed, n in per_seed.items():
        c = colors[seed]
        finite = [v if v is not None and abs(v) < 10 else math.nan for v in n["constant_eta_lambda"]]
        axes[0].plot(finite, color=c, label=f"seed {seed}: constant η")
        axes[0].plot(n["edge_eta_lambda"], color=c, ls=":", label=f"seed {seed}: η = 2(1−ε)/λ")
        axes[1].plot(n["edge_lambda"], color=c, ls=":"), axes[1].plot(n["constant_lambda"][:100], color=c)
        axes[2].plot(n["cdat2_y"], color=c, label=f"seed {seed}: σ = 2")
        axes[2].plot(n["cdat19_y"], color=c, ls="--", label=f"seed {seed}: σ = 1.9")
    for h in HORIZONS:
        axes[0].axvline(h, color="grey", lw=0.5, ls=":")
    axes[0].axhline(2, color="k", ls="--", lw=0.8), axes[0].set_ylim(0, 4), axes[0].set_xlabel("step")
    axes[0].set_title("Self-stabilization (Fig. 4): ηλ"), axes[0].legend(fontsize=6)
    axes[1].set_yscale("log"), axes[1].set_xlabel("step"), axes[1].set_title("λ (dotted: η = 2(1−ε)/λ)")
    axes[2].axhline(0, color="k", lw=0.6), axes[2].set_ylim(-0.6, 0.3), axes[2].set_xlabel("step")
    axes[2].set_title("CDAT model (Fig. 9): y"), axes[2].legend(fontsize=6)
    save_figure(fig, out / "dynamics.png")


def checks(n: dict) -> list[Check]:
    def constant(steps: int) -> Check:
        med, max_p = n[f"constant_median_eta_lambda_h{steps}"], n[f"constant_max_p_h{steps}"]
        return Check(
            f"constant η over {steps} steps: median η·λ over the second half ∈ [1.8, 2.2] (got {med:.4g}) and p "
            f"bounded (max p = {max_p:.3g} < 10)",
            med is not None and 1.8 <= med <= 2.2 and max_p is not None and max_p < 10,
        )

    return [
        *(constant(steps) for steps in HORIZONS),
        Check(
            f"η = 2(1−ε)/λ: runaway sharpening, λ grows ≥ 10× (got {n['edge_rule_lambda_growth']:.3g}×) while p → 0 "
            f"(final p = {n['edge_rule_final_p']:.2g} < 1e-6)",
            n["edge_rule_lambda_growth"] >= 10 and n["edge_rule_final_p"] < 1e-6,
        ),
        Check(
            "CDAT model σ = 2: y held at the edge, median |y| over the last half ≤ 0.05 (got "
            f"{n['cdat2_median_abs_y_last_half']:.3g}) and λ stable within 10% (range "
            f"{n['cdat2_lambda_relative_range_last_half']:.3g})",
            n["cdat2_median_abs_y_last_half"] <= 0.05 and n["cdat2_lambda_relative_range_last_half"] <= 0.1,
        ),
        Check(
            "CDAT model σ = 1.9: −ε ≪ y < 0, median y over the last half ∈ (−0.05, 0) (got "
            f"{n['cdat19_median_y_last_half']:.3g}), and λ still growing "
            f"(×{n['cdat19_lambda_growth_second_half']:.4g} over the second half)",
            -0.05 < n["cdat19_median_y_last_half"] < 0 and n["cdat19_lambda_growth_second_half"] > 1.0,
        ),
    ]


register(
    Reproduction(
        name="dynamical-models",
        claim="In the self-stabilization model, constant η keeps ηλ oscillating around 2 while η = 2(1−ε)/λ lets "
        "sharpness run away; "
        "in CDAT's two-eigenvalue model σ = 2 holds y ≈ 0 with λ stable, while σ = 1.9 settles at a small negative y "
        "with λ slowly growing.",
        source="Roulet et al. 2024 §2.3, §3.2, Fig. 4, 9–11; parameters from App. C.5",
        setting="exact simulations of definitions §8's models with the paper's parameters (App. C.5). Constant η: "
        "seed 0 starts at λ0 = 1.9, p0 = a/b, seeds 1–2 at seeded starts λ0 ∈ [1.7, 2.0], p0 ∈ [0.5, 2]·a/b; checked "
        "over 100 (Fig. 4's horizon), 150 and 200 steps. The CDAT model 600 steps (Fig. 9) from the paper's start "
        "(seed 0) or one within ±20% (seeds 1–2).",
        run=run,
        checks=checks,
        figures=figures,
        chosen_after_first_look=True,
    )
)
