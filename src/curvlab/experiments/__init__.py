"""Experiments: validated configs, runs with resumable run directories, and (later) sweeps and reports."""

from curvlab.experiments.config import ConfigError, load_config, validate
from curvlab.experiments.run import RunResult, resume_run, start_run

__all__ = ["ConfigError", "RunResult", "load_config", "resume_run", "start_run", "validate"]
