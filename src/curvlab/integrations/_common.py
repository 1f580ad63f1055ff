"""What both trainer callbacks share: reading the Monitor's new records as named scalars for a trainer's logger."""

from __future__ import annotations

from typing import Any

from curvlab.monitor.records import logger_name


class ScalarCursor:
    """Reads the records a Monitor added since the last call, as ``{"curvlab/<name>": latest value}``."""

    def __init__(self, monitor: Any):
        self.monitor, self.seen = monitor, len(monitor.records)

    def new_scalars(self) -> dict[str, float]:
        rows = self.monitor.records[self.seen :]
        self.seen = len(self.monitor.records)
        return {logger_name(r["metric"], r): r["value"] for r in rows if not r["metric"].startswith("cost_")}
