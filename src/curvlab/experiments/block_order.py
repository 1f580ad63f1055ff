"""The blockwise sharpness of a transformer against Wang et al. (2025, "The Sharpness Disparity Principle in
Transformers"): at each measurement of ``block_sharpness`` with ``blocks="transformer"``, the blocks in ascending
order of their top eigenvalue and how many pairs of them are ordered as Wang et al. find (Emb ≪ QK < FFN < VO ≪
Norm): a table and a figure for a run's report, one line per run when several are overlaid."""

from __future__ import annotations

from typing import Any

from curvlab.geometry.transformer_blocks import WANG_ORDER, wang_agreement

WANG_SENTENCE = "Wang et al. (2025): " + " < ".join(WANG_ORDER)


def _measurements(df: Any) -> list[tuple[int, dict[str, float]]]:
    """(step, {block: value}) for each step with transformer-split block sharpness rows."""
    if "metric" not in df or "block" not in df:
        return []
    rows = df[(df.metric == "block_sharpness") & df.block.isin(WANG_ORDER)].dropna(subset=["value"])
    return [(int(step), dict(zip(part.block, part.value))) for step, part in rows.groupby("step")]


def has_transformer_blocks(runs: dict[str, Any]) -> bool:
    """Whether any run measured the transformer split (then the report shows this section)."""
    return any(_measurements(df) for df in runs.values())


def order_rows(runs: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run and measurement: the blocks in ascending order of sharpness, and the pairs ordered as
    Wang et al. find them."""
    rows = []
    for name, df in runs.items():
        for step, values in _measurements(df):
            agree, pairs = wang_agreement(values)
            ascending = sorted(values, key=lambda block: values[block])
            rows.append(
                {
                    "run": name,
                    "step": step,
                    "blocks, ascending sharpness": " < ".join(ascending),
                    "pairs in Wang et al.'s order": f"{agree} of {pairs}",
                }
            )
    return rows


def last_agreement(df: Any) -> str | None:
    """'k of n' pairs in Wang et al.'s order at the run's last transformer-split measurement (None: none made)."""
    measured = _measurements(df)
    if not measured:
        return None
    agree, pairs = wang_agreement(measured[-1][1])
    return f"{agree} of {pairs}"


def figure_block_order(runs: dict[str, Any], ax: Any) -> None:
    """The fraction of block pairs ordered as Wang et al. find them, along training (1: their order exactly)."""
    for i, (name, df) in enumerate(runs.items()):
        points = [(step, wang_agreement(values)) for step, values in _measurements(df)]
        steps = [step for step, (_, pairs) in points if pairs]
        fractions = [agree / pairs for _, (agree, pairs) in points if pairs]
        ax.plot(steps, fractions, marker="o", color=f"C{i}", label=name)
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label=WANG_SENTENCE)
    ax.set_ylim(-0.05, 1.05), ax.set_xlabel("step"), ax.set_ylabel("pairs of blocks in Wang et al.'s order")
    ax.set_title("Blockwise sharpness against Wang et al. (2025)")
