"""curvlab's two exception families: bad input, and a numerical failure of a computation.

Everything curvlab raises where it validates what a user gave it — an argument, a config entry, a path — is an
:class:`InputError`. Each subclass also derives from the built-in exception a caller would expect (``ValueError``,
``TypeError``, ``FileNotFoundError``, ``ImportError``), so ``except ValueError`` keeps working. The command line turns
an ``InputError`` into a one-line message and exit code 2; any other exception is a bug and shows its traceback.

A :class:`NonFiniteError` is neither: a loss, gradient or curvature product became NaN or ±inf (a diverged model,
a NaN in the data). It names the quantity and the point; the Monitor records it as a measurement of a diverged run
instead of raising it, and the command line prints it in one line with exit code 1.
"""

from __future__ import annotations

import torch

__all__ = ["InputError", "InputTypeError", "MissingInputFile", "NonFiniteError"]


class InputError(ValueError):
    """A bad value; the message names the argument or config key and what was expected."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type; the message names it and the type expected."""


class MissingInputFile(InputError, FileNotFoundError):
    """A path the user gave that holds no such file or folder."""


class NonFiniteError(FloatingPointError):
    """A quantity became NaN or ±inf during a computation.

    ``quantity`` names it ("Hessian-vector product", "loss"), ``where`` the point ("at the model's current
    parameters, where the loss is nan"), ``values`` what was seen ("(3 NaN and 0 ±inf of 40 entries)") and ``remedy``
    the likely cause; the message reads "non-finite {quantity} {values} {where}: {remedy}".
    """

    def __init__(self, quantity: str, where: str = "", values: str = "", remedy: str = ""):
        self.quantity, self.where, self.values, self.remedy = quantity, where, values, remedy
        message = " ".join(part for part in (f"non-finite {quantity}", values, where) if part)
        super().__init__(f"{message}: {remedy}" if remedy else message)


def nonfinite_detail(values: torch.Tensor | float) -> str:
    """'(3 NaN and 1 ±inf of 1,024 entries)' for a tensor; '(nan)' for a number."""
    if isinstance(values, torch.Tensor) and values.numel() > 1:
        nan = int(torch.isnan(values).sum())
        inf = int(torch.isinf(values).sum())
        return f"({nan:,} NaN and {inf:,} ±inf of {values.numel():,} entries)"
    return f"({float(values)})"
