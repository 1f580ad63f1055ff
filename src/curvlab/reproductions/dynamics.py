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

from curvlab.reproductions.base import Check, pyplot, register_preregistered, save_figure
from curvlab.reproductions.claims import thresholds
from curvlab.reproductions.training import seed_colors


def self_stabilization(
    a: float, b: float, eta0: float, lam0: float, x0: float, steps: int, rule: str, eps: float = 0.05
) -> dict:
    """rule "constant" (η fixed) or "edge" (η = 2(1−ε)/λ_t, eq. 6)."""
    eta, lam, x = eta0, lam0, x0
    out: dict[str, list[float]] = {"eta": [], "lam": [], "p": [], "y": []}
    for _ in range(steps):
        if rule == "edge":
            eta = 2 * (1 - eps) / lam
        for key, value in (("eta", eta), ("lam", lam), ("p", x * x), ("y", eta * lam - 2)):
            out[key].append(value)
        x, lam = (1 - eta * lam) * x, lam + eta * (a - b * x * x)
    return out


def cdat_model(
    a: float, b: float, nu: float, lam0: float, eta0: float, g0: float, p0: float, sigma: float, steps: int
) -> dict:
    eta, lam, g, p = eta0, lam0, g0, p0
    out: dict[str, list[float]] = {"eta": [], "lam": [], "p": [], "g": [], "y": []}
    for _ in range(steps):
        y = eta * lam - 2
        for key, value in (("eta", eta), ("lam", lam), ("p", p), ("g", g), ("y", y)):
            out[key].append(value)
        curvature = lam**3 * p + nu**3 * g  # 0 only where both components underflowed: η then stays as it was
        next_eta = sigma * (lam**2 * p + nu**2 * g) / curvature if curvature else eta
        p, g, lam = (1 + y) ** 2 * p, (1 - eta * nu) ** 2 * g, lam + eta * (a - b * p)
        eta = next_eta
    return out


def steps_to_divergence(traj: dict) -> int | None:
    return next((i for i, p in enumerate(traj["p"]) if not math.isfinite(p) or p > 1e6), None)


NAME = "dynamical-models"


def start_point(setting: dict, seed: int) -> dict:
    """The constant-η model's start, which the paper does not give: λ0 and p0 drawn from the setting's ranges (p0 in
    units of the equilibrium a/b) by ``seed``."""
    rng = random.Random(seed)
    equilibrium = setting["constant_a"] / setting["constant_b"] if setting["constant_b"] else 0.1
    lam0 = rng.uniform(*setting["constant_lam0_range"])
    return {"lam0": lam0, "x0": math.sqrt(rng.uniform(*setting["constant_p0_range"]) * equilibrium)}


def _sign_changes(values: list[float]) -> int:
    return sum(1 for u, v in zip(values, values[1:]) if u * v < 0)


def run(out: Path, setting: dict, seed: int) -> dict:
    """The three models at the setting's parameters from the seed's starts: cheap, deterministic, every scale alike."""
    s, horizon = setting, setting["horizon"]
    start = start_point(s, seed)
    const = self_stabilization(
        s["constant_a"], s["constant_b"], s["constant_eta"], steps=horizon, rule="constant", **start
    )
    longer = self_stabilization(
        s["constant_a"], s["constant_b"], s["constant_eta"], steps=2000, rule="constant", **start
    )
    tuner = self_stabilization(
        s["tuner_a"], s["tuner_b"], s["tuner_eta0"], s["tuner_lam0"], s["tuner_x0"], horizon, "edge", s["tuner_eps"]
    )
    rng = random.Random(seed)
    cdat_start = {
        k: s[f"cdat_{k}"] * rng.uniform(1 - s["cdat_jitter"], 1 + s["cdat_jitter"]) for k in ("lam0", "g0", "p0")
    }
    model = {k: s[f"cdat_{k}"] for k in ("a", "b", "nu", "eta0")}
    edge, below = (
        cdat_model(**model, sigma=s[key], steps=s["cdat_steps"], **cdat_start)
        for key in ("cdat_sigma_edge", "cdat_sigma_below")
    )
    half = s["cdat_steps"] // 2
    edge_tail = edge["lam"][half:]
    eta_lambda = [e * lam for e, lam in zip(const["eta"], const["lam"])]
    return {
        "lam0": start["lam0"],
        "p0": start["x0"] ** 2,
        **{f"cdat_{k}": v for k, v in cdat_start.items()},
        "constant_sign_changes_of_y": _sign_changes(const["y"]),
        "constant_mean_eta_lambda": _finite_mean(eta_lambda),
        "constant_max_lambda_growth": _finite_max(const["lam"]) / start["lam0"],
        "constant_max_p": _finite_max(const["p"]),
        "constant_steps_to_divergence_if_run_2000_steps": steps_to_divergence(longer),
        "tuner_lambda_growth": tuner["lam"][-1] / tuner["lam"][0],
        "tuner_final_p": tuner["p"][-1],
        "cdat2_median_abs_y_last_half": median(abs(v) for v in edge["y"][half:]),
        "cdat2_lambda_relative_range_last_half": (max(edge_tail) - min(edge_tail)) / median(edge_tail),
        "cdat19_median_y_last_half": median(below["y"][half:]),
        "cdat19_lambda_growth_second_half": below["lam"][-1] / below["lam"][half],
        "constant_eta_lambda": eta_lambda,
        "edge_eta_lambda": [e * lam for e, lam in zip(tuner["eta"], tuner["lam"])],
        "edge_lambda": tuner["lam"],
        "constant_lambda": const["lam"],
        "cdat2_y": edge["y"],
        "cdat19_y": below["y"],
    }


def _finite_max(values: list[float]) -> float:
    """The largest value, +∞ where the model blew up (a non-finite value)."""
    return max(v if math.isfinite(v) else math.inf for v in values)


def _finite_mean(values: list[float]) -> float:
    return sum(values) / len(values) if all(math.isfinite(v) for v in values) else math.inf


def figures(out: Path, per_seed: dict[int, dict]) -> None:
    colors = seed_colors(per_seed)
    fig, axes = pyplot().subplots(1, 3, figsize=(13, 3.6))
    for seed, n in per_seed.items():
        c = colors[seed]
        finite = [v if v is not None and abs(v) < 10 else math.nan for v in n["constant_eta_lambda"]]
        axes[0].plot(finite, color=c, label=f"seed {seed}: constant η")
        axes[0].plot(n["edge_eta_lambda"], color=c, ls=":", label=f"seed {seed}: η = 2(1−ε)/λ")
        axes[1].plot(n["edge_lambda"], color=c, ls=":"), axes[1].plot(n["constant_lambda"], color=c)
        axes[2].plot(n["cdat2_y"], color=c, label=f"seed {seed}: σ = 2")
        axes[2].plot(n["cdat19_y"], color=c, ls="--", label=f"seed {seed}: σ = 1.9")
    axes[0].axhline(2, color="k", ls="--", lw=0.8), axes[0].set_ylim(0, 4), axes[0].set_xlabel("step")
    axes[0].set_title("Self-stabilization (Fig. 4): ηλ"), axes[0].legend(fontsize=6)
    axes[1].set_yscale("log"), axes[1].set_xlabel("step"), axes[1].set_title("λ (dotted: η = 2(1−ε)/λ)")
    axes[2].axhline(0, color="k", lw=0.6), axes[2].set_ylim(-0.6, 0.3), axes[2].set_xlabel("step")
    axes[2].set_title("CDAT model (Fig. 9): y"), axes[2].legend(fontsize=6)
    save_figure(fig, out / "dynamics.png")


def checks(n: dict) -> list[Check]:
    """The pre-registered checks (claims/dynamical-models.toml), thresholds from the claims file."""
    t = thresholds(NAME)
    osc, stable, runaway = t["constant-oscillates"], t["constant-lambda-stable"], t["tuner-runaway"]
    holds, below = t["cdat-sigma-2-holds"], t["cdat-sigma-below-2"]
    changes, mean = n["constant_sign_changes_of_y"], n["constant_mean_eta_lambda"]
    growth, final_p = n["tuner_lambda_growth"], n["tuner_final_p"]
    abs_y, spread = n["cdat2_median_abs_y_last_half"], n["cdat2_lambda_relative_range_last_half"]
    y19, grow19 = n["cdat19_median_y_last_half"], n["cdat19_lambda_growth_second_half"]
    lo, hi = osc["mean_eta_lambda_low"], osc["mean_eta_lambda_high"]
    return [
        Check(
            f"constant η oscillates around the edge: y changes sign ≥ {osc['min_sign_changes']} times ({changes}) "
            f"and mean η·λ ∈ [{lo:g}, {hi:g}] ({_g(mean)}) over the paper's 100 steps",
            changes >= osc["min_sign_changes"] and _finite(mean) and lo <= mean <= hi,
            "constant-oscillates",
        ),
        Check(
            f"and λ stays stable: max λ ≤ {stable['max_growth']:g}× λ0 ({_g(n['constant_max_lambda_growth'])}×)",
            _finite(n["constant_max_lambda_growth"]) and n["constant_max_lambda_growth"] <= stable["max_growth"],
            "constant-lambda-stable",
        ),
        Check(
            f"η = 2(1−ε)/λ: λ runs away, ≥ {runaway['min_lambda_growth']:g}× in 100 steps ({_g(growth)}×), while "
            f"p → 0 (final p {_g(final_p)} < {runaway['max_final_p']:g})",
            _finite(growth)
            and growth >= runaway["min_lambda_growth"]
            and _finite(final_p)
            and final_p < runaway["max_final_p"],
            "tuner-runaway",
        ),
        Check(
            f"CDAT model σ = 2 holds the edge: median |y| over the last half ≤ {holds['max_median_abs_y']:g} "
            f"({_g(abs_y)}) and λ's range ≤ {holds['max_lambda_relative_range']:.0%} of its median ({_g(spread)})",
            abs_y <= holds["max_median_abs_y"] and spread <= holds["max_lambda_relative_range"],
            "cdat-sigma-2-holds",
        ),
        Check(
            f"CDAT model σ = 1.9: median y over the last half ∈ ({below['median_y_low']:g}, "
            f"{below['median_y_high']:g}) ({_g(y19)}) and λ still growing (×{grow19:.4g} over the second half)",
            below["median_y_low"] < y19 < below["median_y_high"] and grow19 > below["min_lambda_growth"],
            "cdat-sigma-below-2",
        ),
    ]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _g(value: float | None) -> str:
    return "non-finite" if not _finite(value) else f"{value:.3g}"


register_preregistered(NAME, run, checks, figures)
