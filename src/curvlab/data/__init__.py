"""Offline data sources (SPEC §11). Each loader says which package to install when it is missing."""

from curvlab.data.digits import load_digits

__all__ = ["load_digits"]
