"""Measuring along training: the Monitor, its metric groups, schedules and tidy records."""

from curvlab.monitor.metrics import (
    DESCRIPTIONS,
    METRICS,
    Assumptions,
    Density,
    Directional,
    FullBatch,
    Histogram,
    Landscape,
    Metric,
    Noise,
    Sharpness,
    Trace,
    make_metric,
)
from curvlab.monitor.monitor import Monitor
from curvlab.monitor.records import load_records, read_records
from curvlab.monitor.schedules import Schedule, at_steps, epoch_end, every, log_spaced

__all__ = [
    "DESCRIPTIONS",
    "METRICS",
    "Assumptions",
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
    "Trace",
    "at_steps",
    "epoch_end",
    "every",
    "load_records",
    "log_spaced",
    "make_metric",
    "read_records",
]
