import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from zoo import CASES, explicit_hessian, make_case  # noqa: E402


@pytest.fixture(params=CASES)
def case(request):
    return make_case(request.param)


_HESSIANS: dict = {}


def cached_hessian(name: str) -> torch.Tensor:
    if name not in _HESSIANS:
        _HESSIANS[name] = explicit_hessian(make_case(name))
    return _HESSIANS[name]


def rel_err(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-300))
