"""The operator core: data chunks, parameter spaces, HVP engines and the Objective."""

from curvlab.core.objective import HessianOperator, Objective

__all__ = ["HessianOperator", "Objective"]
