"""curvlab: empirical optimization research on neural networks.

The operator core (:class:`Objective`) gives F, ∇F and Hessian-vector products of a model on a
measurement set; the solvers (:func:`eigs`, :func:`trace`, :func:`spectral_density`) take any
symmetric linear operator. Definitions and formulas: docs/core.md and docs/metrics/.
"""

from curvlab import geometry, losses, models, optim, tuners
from curvlab.core import FisherOperator, GGNOperator, HessianOperator, Objective
from curvlab.geometry import block_eigs, critical_sharpness
from curvlab.linalg import (
    EigResult,
    LinearOperator,
    MatrixOperator,
    SpectralDensity,
    TraceResult,
    as_operator,
    eigs,
    spectral_density,
    trace,
)
from curvlab.monitor import Monitor, load_records

__version__ = "0.2.0"

__all__ = [
    "EigResult",
    "FisherOperator",
    "GGNOperator",
    "HessianOperator",
    "LinearOperator",
    "MatrixOperator",
    "Monitor",
    "Objective",
    "SpectralDensity",
    "TraceResult",
    "__version__",
    "as_operator",
    "block_eigs",
    "critical_sharpness",
    "eigs",
    "geometry",
    "load_records",
    "losses",
    "models",
    "optim",
    "spectral_density",
    "trace",
    "tuners",
]
