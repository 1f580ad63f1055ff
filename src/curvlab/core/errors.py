"""Torch's cryptic second-order failures, turned into errors that say what to do."""

from __future__ import annotations


def explain_error(err: RuntimeError) -> Exception:
    """Turn torch's cryptic second-order failures into errors that say what to do."""
    text = str(err)
    if "ZeroTensors are immutable" in text:
        return RuntimeError(
            "hvp_engine='forward': F.mse_loss breaks inside jvp(grad) in torch (pytorch #123996). "
            "Use hvp_engine='reverse' or write the loss as ((outputs - targets) ** 2).mean() "
            "(curvlab.losses.mse does). Original error: " + text
        )
    if "derivative for" in text and "not implemented" in text and "attention" in text:
        return RuntimeError(
            "The model calls a fused attention kernel that has no second derivative. curvlab runs "
            "F.scaled_dot_product_attention under the MATH backend, so call that function (or write "
            "softmax(QK^T/sqrt(d))V out) instead of the fused op. Original error: " + text
        )
    if "modified by an inplace operation" in text:
        return RuntimeError(
            "The parameters changed in place while a Hessian operator still needed them; "
            "call objective.hessian() again at the new point. Original error: " + text
        )
    return err
