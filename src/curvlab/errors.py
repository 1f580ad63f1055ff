"""The one exception family for bad input to curvlab.

Everything curvlab raises where it validates what a user gave it — an argument, a config entry, a path — is an
:class:`InputError`. Each subclass also derives from the built-in exception a caller would expect (``ValueError``,
``TypeError``, ``FileNotFoundError``, ``ImportError``), so ``except ValueError`` keeps working. The command line turns
an ``InputError`` into a one-line message and exit code 2; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A bad value; the message names the argument or config key and what was expected."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type; the message names it and the type expected."""


class MissingInputFile(InputError, FileNotFoundError):
    """A path the user gave that holds no such file or folder."""
