"""Measuring along training: the Monitor, its metric groups, schedules and tidy records."""

from curvlab.monitor.metrics import (
    METRICS,
    Assumptions,
    BlockSharpness,
    CriticalSharpness,
    Curvatures,
    Density,
    Directional,
    FullBatch,
    Histogram,
    Landscape,
    Metric,
    Noise,
    Sharpness,
    StepStats,
    Trace,
    make_metric,
    register_metric,
)
from curvlab.monitor.monitor import Monitor, default_metrics
from curvlab.monitor.records import load_records, read_records
from curvlab.monitor.schedules import Schedule, at_steps, budget, epoch_end, every, every_pair, log_spaced
from curvlab.monitor.windows import Window, windowed

__all__ = [
    "METRICS",
    "Assumptions",
    "BlockSharpness",
    "CriticalSharpness",
    "Curvatures",
    "Density",
    "Directional",
    "FullBatch",
    "Histogram",
    "Landscape",
    "Metric",
    "Monitor",
    "Noise",
    "Schedule",
    "Sharpness",
    "StepStats",
    "Trace",
    "at_steps",
    "budget",
    "default_metrics",
    "epoch_end",
    "every",
    "every_pair",
    "load_records",
    "log_spaced",
    "make_metric",
    "read_records",
    "register_metric",
    "Window",
    "windowed",
]
