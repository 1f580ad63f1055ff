"""The operator core: data chunks, parameter spaces, HVP engines, the Objective and its curvature operators."""

from curvlab.core.curvature import CurvatureOperator
from curvlab.core.fisher import FisherOperator
from curvlab.core.ggn import GGNOperator
from curvlab.core.hessian import HessianOperator
from curvlab.core.objective import Objective

__all__ = ["CurvatureOperator", "FisherOperator", "GGNOperator", "HessianOperator", "Objective"]
