"""Matrix-free solvers on any symmetric linear operator v ↦ A v."""

from curvlab.linalg.density import SpectralDensity, spectral_density
from curvlab.linalg.eigs import EigResult, eigs
from curvlab.linalg.operator import LinearOperator, MatrixOperator, as_operator, symmetric_scaling
from curvlab.linalg.trace import TraceResult, trace

__all__ = [
    "EigResult",
    "LinearOperator",
    "MatrixOperator",
    "SpectralDensity",
    "TraceResult",
    "as_operator",
    "symmetric_scaling",
    "eigs",
    "spectral_density",
    "trace",
]
