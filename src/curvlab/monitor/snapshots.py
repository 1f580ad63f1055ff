"""The parameter snapshots the Monitor's metrics read: x_t, x_{t−1} and, when a metric reads the previous update,
x_{t−2}. Each is a flat copy of the parameters, made into a buffer no longer needed (no allocation per step once the
buffers exist).

A Monitor whose metrics all run on the cost budget takes them only when a measurement is due: a measurement due at
step t whose x_{t−1} was not taken is deferred to step t + 1, with x_t taken at t. A training step then costs no copy
of the parameters unless something is measured.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


class Snapshots:
    """x_t (``now``, taken after step ``step``), x_{t−1} (``prev``; None when it was not taken) and x_{t−2}
    (``before``, kept only with ``keep_before``). ``read(out)`` copies the current parameters into ``out`` (a new
    vector when ``out`` is None)."""

    def __init__(self, read: Callable[[Tensor | None], Tensor], step: int, keep_before: bool):
        self._read = read
        self.keep_before = keep_before
        self.now: Tensor = read(None)
        self.prev: Tensor | None = self.now  # before any step: no update yet (x_{t−1} = x_t)
        self.before: Tensor | None = None
        self.step = step
        self._spare: Tensor | None = None  # a buffer no snapshot uses
        self._previous_update: Tensor | None = None  # x_{t−1} − x_{t−2}, made when first asked for

    def fresh(self, step: int) -> bool:
        """Whether ``now`` was taken after step ``step − 1``: advancing at ``step`` then gives x_{t−1} as well."""
        return self.step == step - 1

    def advance(self, step: int) -> None:
        """At ``step``: x_{t−2} ← x_{t−1} (when kept), x_{t−1} ← x_t, and x_t copied from the parameters into a
        buffer no longer needed."""
        old_before, old_prev, old_now = self.before, self.prev, self.now
        self.before = old_prev if self.keep_before else None
        self.prev, self.now = old_now, self._read(self._free_buffer(old_before if self.keep_before else old_prev))
        self.step = step
        self._previous_update = None

    def retake(self, step: int) -> None:
        """At ``step``, with x_{t−1} not taken: x_t from the parameters, no previous point (``prev`` None)."""
        unused = [t for t in (self.prev, self.before) if t is not None and t is not self.now]
        self.prev = self.before = None
        self._spare = self._spare if self._spare is not None else next(iter(unused), None)
        self.now = self._read(self.now)
        self.step = step
        self._previous_update = None

    def previous_update(self) -> Tensor | None:
        """x_{t−1} − x_{t−2} (made once per step), or None when either was not taken."""
        if self._previous_update is None and self.before is not None and self.prev is not None:
            self._previous_update = self.prev - self.before
        return self._previous_update

    def restore(self, now: Tensor, prev: Tensor | None, step: int, previous_update: Tensor | None) -> None:
        """Snapshots saved with a checkpoint: x_t taken after ``step``, x_{t−1}, and the update before (x_{t−2}
        itself is not saved)."""
        self.now, self.prev, self.before, self.step = now, prev, None, step
        self._previous_update = previous_update

    def _free_buffer(self, candidate: Tensor | None) -> Tensor | None:
        """A buffer to overwrite: ``candidate`` unless a snapshot still uses it, else the spare one, else None
        (a new one is made)."""
        if candidate is not None and candidate is not self.now and candidate is not self.before:
            return candidate
        spare, self._spare = self._spare, None
        return spare
