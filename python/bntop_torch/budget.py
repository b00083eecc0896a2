"""How often the optional passes run: a budget in time, as a sampling profiler keeps its rate.

The BatchNorm numbers cost almost nothing (autograd saved them) and are measured every step. The
feeding layers' weight geometry (|w|, w·g, |g| before the step, |Δw|, w·Δw after it) and the ReLU
passes read every weight and activation once more, about 3% of a CPU training step. They run on
every step whose snapshot keeps per-channel arrays, and on other steps while their measured cost
stays within `fraction` of the run's wall time; the snapshots of the others say `partial`.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator, Optional

DEFAULT_FRACTION = 0.02


class MeasureBudget:
    """A token bucket in seconds: each step earns `fraction` of its wall time, each measured step
    spends what its optional passes took, and a step is measured while the balance is not
    negative. At most one measured step's cost is banked, so a pause or an evaluation does not
    buy a burst of measured steps."""

    def __init__(self, fraction: Optional[float] = DEFAULT_FRACTION):
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise ValueError(f"measure_budget must be in (0, 1] or None, not {fraction}")
        self.fraction = fraction
        self.steps = 0
        self.measured_steps = 0
        self._credit = 0.0
        self._banked_at_most = 0.0
        self._spent = 0.0
        self._last_step_end: Optional[float] = None

    def due(self) -> bool:
        """Whether the step starting now may run the optional passes."""
        return self.fraction is None or self._credit >= 0.0

    @contextlib.contextmanager
    def spending(self) -> Iterator[None]:
        """Times an optional pass and charges it to the current step."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._spent += time.perf_counter() - start

    def step_done(self, measured: bool, now: Optional[float] = None) -> None:
        """Settles the step that just ended (`measured`: whether its optional passes ran)."""
        now = time.perf_counter() if now is None else now
        self.steps += 1
        self.measured_steps += int(measured)
        if measured:
            self._banked_at_most = self._spent
        if self._last_step_end is not None and self.fraction is not None:
            earned = self.fraction * (now - self._last_step_end)
            self._credit = min(self._credit + earned - self._spent, self._banked_at_most)
        self._last_step_end = now
        self._spent = 0.0

    @property
    def measured_share(self) -> float:
        """The share of steps so far whose optional passes ran."""
        return self.measured_steps / self.steps if self.steps else 1.0
