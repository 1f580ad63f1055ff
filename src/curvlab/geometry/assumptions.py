"""Tests of optimization assumptions along a trajectory (definitions §4; Tran, Zhang & Cutkosky 2024).

Convexity and smoothness at step t, on the step's own minibatch z = z_{t−1} at both points (the same-minibatch
rule): f_old = f(x_{t−1}, z), f_new = f(x_t, z), g_old = ∇f(x_{t−1}, z), g_new = ∇f(x_t, z), Δ = x_t − x_{t−1}.

    inst_gap        = f_new − f_old − ⟨g_new, Δ⟩               (≤ 0 where f is convex on the segment)
    inst_smooth     = ‖g_new − g_old‖ / ‖Δ‖
    convexity_ratio = Σ⟨g_new, Δ⟩ / Σ(f_new − f_old)            over the window
    smoothness_ratio= Σ[f_old − f_new + ⟨g_new, Δ⟩] / (½ Σ‖Δ‖²) over the window

The update-correlation family pairs the update with a batch *independent* of it: the batch z_t of the next
step, which was not drawn when x_t − x_{t−1} was made. With g = ∇f(x_t, z_t), u = x_t − x_{t−1} and s the
random-scaling factor of the step that made u (1 when off):

    update_corr     = ⟨g, u⟩
    update_corr_rs  = ⟨g, u/s⟩,  loss_diff = f(x_t, z_t) − f(x_{t−1}, z_t)

For s ~ Exp(1) the sums of update_corr_rs and loss_diff agree in expectation (E[F(x+sΔ) − F(x)] =
E[⟨∇F(x+sΔ), Δ⟩], integration by parts). With the update's own batch instead, update_corr would be biased by
the update's correlation with its own gradient noise (about −η·tr Σ/B for SGD).

Every running quantity — avg_gap, max_smooth, the ratios, the sums and the EMAs exp_gap_β and exp_smooth_β
(restarted at 0), as the authors' code does — restarts when :meth:`reset_window` is called (every epoch by
default in the Monitor).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

BETAS = (0.99, 0.9999)


class AssumptionTracker:
    """Streams the per-step quantities of definitions §4 and their running sums over a window."""

    def __init__(self, betas: tuple[float, ...] = BETAS):
        self.betas = tuple(betas)
        self.reset_window()

    def reset_window(self) -> None:
        """Start a new window: zero the running sums, the maximum smoothness and the EMAs (at each epoch end, as the
        authors' code does)."""
        self.n = 0
        self.sum_gap = self.sum_inner = self.sum_diff = self.sum_sq = 0.0
        self.max_smooth = 0.0
        self.sum_update_corr = self.sum_update_corr_rs = self.sum_loss_diff = 0.0
        self.exp_gap = {b: 0.0 for b in self.betas}
        self.exp_smooth = {b: 0.0 for b in self.betas}

    def update(self, f_old: float, f_new: float, g_old: Tensor, g_new: Tensor, delta: Tensor) -> dict[str, float]:
        """Feed one step's convexity and smoothness evaluations (both points on the step's own batch)."""
        inner = float(torch.dot(g_new, delta))
        diff = f_new - f_old
        step_sq = float(torch.dot(delta, delta))
        gap = diff - inner
        smooth = float(torch.linalg.vector_norm(g_new - g_old)) / math.sqrt(step_sq) if step_sq > 0 else float("nan")
        self.n += 1
        self.sum_gap += gap
        self.sum_inner += inner
        self.sum_diff += diff
        self.sum_sq += step_sq
        if math.isfinite(smooth):
            self.max_smooth = max(self.max_smooth, smooth)
        out = {
            "inst_gap": gap,
            "avg_gap": self.sum_gap / self.n,
            "inst_smooth": smooth,
            "max_smooth": self.max_smooth,
            "convexity_ratio": self.sum_inner / self.sum_diff if self.sum_diff != 0 else float("nan"),
            "smoothness_ratio": -self.sum_gap / (0.5 * self.sum_sq) if self.sum_sq > 0 else float("nan"),
            "update_norm": math.sqrt(step_sq),
        }
        for b in self.betas:
            self.exp_gap[b] = b * self.exp_gap[b] + (1 - b) * gap
            out[f"exp_gap_{b}"] = self.exp_gap[b]
            if math.isfinite(smooth):
                self.exp_smooth[b] = b * self.exp_smooth[b] + (1 - b) * smooth
            out[f"exp_smooth_{b}"] = self.exp_smooth[b]
        return out

    def correlate(self, f_new: float, f_old: float, g_new: Tensor, update: Tensor, scale: float) -> dict[str, float]:
        """Feed one update u = x_t − x_{t−1} with f and ∇f on a batch independent of it (the next step's):
        f_new = f(x_t, z_t), f_old = f(x_{t−1}, z_t), g_new = ∇f(x_t, z_t); ``scale`` the random-scaling factor
        of the step that made u."""
        inner = float(torch.dot(g_new, update))
        diff = f_new - f_old
        self.sum_update_corr += inner
        self.sum_update_corr_rs += inner / scale
        self.sum_loss_diff += diff
        return {
            "update_corr": inner,
            "update_corr_sum": self.sum_update_corr,
            "update_corr_rs": inner / scale,
            "update_corr_rs_sum": self.sum_update_corr_rs,
            "loss_diff": diff,
            "loss_diff_sum": self.sum_loss_diff,
        }

    def state_dict(self) -> dict[str, Any]:
        """The running sums and EMAs, for a checkpoint."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        vars(self).update(state)


def norms(g: Tensor, prefix: str) -> dict[str, float]:
    """L1 and L2 norms of a flat vector."""
    return {f"{prefix}_l1": float(g.abs().sum()), f"{prefix}_l2": float(torch.linalg.vector_norm(g))}


def pl_ratio(full_loss: float, full_grad: Tensor, f_star: float = 0.0) -> float:
    """½‖∇F‖² / (F − F*) (definitions §4), F* given or 0."""
    gap = full_loss - f_star
    return 0.5 * float(torch.dot(full_grad, full_grad)) / gap if gap > 0 else float("nan")


class L0L1Fit:
    """Least-squares fit of inst_smooth ≈ L0 + L1 ‖∇F‖ from streamed pairs, with R² (definitions §4)."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.sxy = self.syy = 0.0

    def add(self, grad_norm: float, smooth: float) -> None:
        """Add one (‖∇f‖, smoothness) sample to the running least-squares sums; non-finite samples are ignored."""
        if not (math.isfinite(grad_norm) and math.isfinite(smooth)):
            return
        self.n += 1
        self.sx += grad_norm
        self.sy += smooth
        self.sxx += grad_norm**2
        self.sxy += grad_norm * smooth
        self.syy += smooth**2

    def result(self) -> dict[str, float]:
        """The least-squares fit smoothness ≈ L0 + L1‖∇f‖: ``{'l0', 'l1', 'l0l1_r2'}`` (NaN with fewer than two
        samples)."""
        nan = float("nan")
        if self.n < 2:
            return {"l0": nan, "l1": nan, "l0l1_r2": nan}
        var_x = self.sxx - self.sx**2 / self.n
        var_y = self.syy - self.sy**2 / self.n
        cov = self.sxy - self.sx * self.sy / self.n
        if var_x <= 0:
            return {"l0": self.sy / self.n, "l1": nan, "l0l1_r2": nan}
        l1 = cov / var_x
        l0 = (self.sy - l1 * self.sx) / self.n
        r2 = cov**2 / (var_x * var_y) if var_y > 0 else 1.0
        return {"l0": l0, "l1": l1, "l0l1_r2": r2}
