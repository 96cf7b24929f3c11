"""Learning-rate schedules as pure functions of training progress.

Progress is the fraction of the run done, in [0, 1]: ``step / total_steps``, or, when the run has
a wall-time budget, ``max(step / total_steps, seconds / budget)`` so that the schedule anneals
fully within the budget. The schedule's state is just the step count and the elapsed seconds,
which makes it trivial to checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import SCHEDULES

__all__ = ["SCHEDULES", "LRSchedule", "lr_factor"]

#: Fraction of the run spent on the linear warm-up of the cosine schedule.
COSINE_WARMUP_FRACTION = 0.03
#: The cosine schedule ends at this fraction of the peak learning rate.
COSINE_FINAL_FRACTION = 0.01
#: One-cycle: fraction of the run spent rising, and start / end divisors of the peak rate
#: (the values of torch.optim.lr_scheduler.OneCycleLR's defaults).
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV_START = 25.0
ONECYCLE_DIV_FINAL = 1.0e4


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the peak learning rate at ``progress`` in [0, 1]."""
    t = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        if t < COSINE_WARMUP_FRACTION:
            return max(t / COSINE_WARMUP_FRACTION, COSINE_FINAL_FRACTION)
        u = (t - COSINE_WARMUP_FRACTION) / (1.0 - COSINE_WARMUP_FRACTION)
        cos = 0.5 * (1.0 + math.cos(math.pi * u))
        return COSINE_FINAL_FRACTION + (1.0 - COSINE_FINAL_FRACTION) * cos
    if schedule == "onecycle":
        start = 1.0 / ONECYCLE_DIV_START
        final = start / ONECYCLE_DIV_FINAL
        if t < ONECYCLE_PCT_START:
            u = t / ONECYCLE_PCT_START
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * u))
        u = (t - ONECYCLE_PCT_START) / (1.0 - ONECYCLE_PCT_START)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * u))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


class LRSchedule:
    """Sets the learning rate of every parameter group of ``optimizer`` before each step.

    ``total_steps``: optimizer steps in the whole run; ``time_budget_s``: optional wall-time
    budget in seconds (progress is then the larger of the step and time fractions).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: str,
        peak_lr: float,
        total_steps: int,
        time_budget_s: float | None = None,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
        self.optimizer = optimizer
        self.schedule = schedule
        self.peak_lr = float(peak_lr)
        self.total_steps = max(int(total_steps), 1)
        self.time_budget_s = time_budget_s
        self.step_count = 0

    def progress(self, elapsed_s: float = 0.0) -> float:
        p = self.step_count / self.total_steps
        if self.time_budget_s:
            p = max(p, elapsed_s / self.time_budget_s)
        return min(p, 1.0)

    def apply(self, elapsed_s: float = 0.0) -> float:
        """Set and return the learning rate for the next optimizer step."""
        lr = self.peak_lr * lr_factor(self.schedule, self.progress(elapsed_s))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
