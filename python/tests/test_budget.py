"""The measurement budget (bntop_torch.budget): a token bucket in seconds, with a fake clock."""
from __future__ import annotations

import pytest

from bntop_torch.budget import MeasureBudget


def simulate(budget: MeasureBudget, steps: int, step_s: float, cost_s: float) -> list[bool]:
    """Runs `steps` steps of `step_s` wall time; a measured one spends `cost_s` of it."""
    now = budget._last_step_end or 0.0
    measured = []
    for _ in range(steps):
        due = budget.due()
        if due:
            budget._spent += cost_s  # what spending() adds, without sleeping
        now += step_s
        budget.step_done(due, now)
        measured.append(due)
    return measured


@pytest.mark.parametrize("fraction, step_s, cost_s", [(0.02, 0.65, 0.027), (0.05, 0.1, 0.02), (0.01, 0.5, 0.001)])
def test_the_measured_time_converges_to_the_budget(fraction: float, step_s: float, cost_s: float) -> None:
    budget = MeasureBudget(fraction)
    measured = simulate(budget, 5000, step_s, cost_s)
    spent = sum(measured) * cost_s
    # Every step when the passes fit the budget, else the budget's share of the run's time.
    want = min(1.0, fraction * step_s / cost_s)
    assert sum(measured) / len(measured) == pytest.approx(want, abs=0.01)
    assert spent <= fraction * step_s * len(measured) + cost_s * 2 or want == 1.0


def test_no_budget_measures_every_step() -> None:
    assert all(simulate(MeasureBudget(None), 100, 0.1, 1.0))


def test_a_long_pause_banks_at_most_one_measured_step() -> None:
    budget = MeasureBudget(0.02)
    simulate(budget, 50, 0.65, 0.027)
    # A 10-minute pause (or an evaluation) between two steps earns 12 s of budget ...
    budget.step_done(False, budget._last_step_end + 600.0)
    after = simulate(budget, 10, 0.65, 0.027)
    # ... of which one measured step's cost is kept: one extra measured step, not 400.
    assert after[0] and sum(after) <= 1 + 10 * 0.02 * 0.65 / 0.027 + 1


def test_the_budget_must_be_a_share() -> None:
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="measure_budget"):
            MeasureBudget(bad)
