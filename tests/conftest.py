import shutil
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


def skip_without_debian_data(error_text: str) -> None:
    """Where there is no apt-get the optional Debian data cannot be fetched, and a test that needs it skips,
    naming the package. Where apt-get exists, its absence stays a failure: ``make install`` fetches it."""
    if "needs the Debian package" in error_text and shutil.which("apt-get") is None:
        pytest.skip("optional Debian data absent and no apt-get here: " + error_text.strip().splitlines()[-1][:200])


def assert_no_placeholders(page: str) -> None:
    """A report says what is known and leaves out what is not: no "?", "None" or "nan" cell, no "…; ." sentence."""
    for placeholder in ("<td>?</td>", "<td>None</td>", "<td>nan</td>", "; ."):
        assert placeholder not in page, f"the report shows a placeholder: {placeholder!r}"
