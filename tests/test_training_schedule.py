"""Learning-rate schedules of lloca_hep.training.schedule."""

import math

import pytest
import torch

from lloca_hep.training.schedule import (
    COSINE_FINAL_FRACTION,
    COSINE_WARMUP_FRACTION,
    ONECYCLE_DIV_START,
    ONECYCLE_PCT_START,
    LRSchedule,
    lr_factor,
)


def test_cosine_warms_up_peaks_and_anneals():
    assert lr_factor("cosine", 0.0) == pytest.approx(COSINE_FINAL_FRACTION)
    assert lr_factor("cosine", COSINE_WARMUP_FRACTION) == pytest.approx(1.0)
    assert lr_factor("cosine", 1.0) == pytest.approx(COSINE_FINAL_FRACTION)
    mid = COSINE_WARMUP_FRACTION + 0.5 * (1 - COSINE_WARMUP_FRACTION)
    assert lr_factor("cosine", mid) == pytest.approx(0.5 * (1 + COSINE_FINAL_FRACTION))
    grid = [COSINE_WARMUP_FRACTION + k / 100 * (1 - COSINE_WARMUP_FRACTION) for k in range(101)]
    values = [lr_factor("cosine", t) for t in grid]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_onecycle_and_constant():
    assert lr_factor("onecycle", 0.0) == pytest.approx(1 / ONECYCLE_DIV_START)
    assert lr_factor("onecycle", ONECYCLE_PCT_START) == pytest.approx(1.0)
    assert lr_factor("onecycle", 1.0) < 1e-5
    assert lr_factor("constant", 0.7) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("linear", 0.5)


def test_schedule_sets_optimizer_rate_by_steps_or_time():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=123.0)
    sched = LRSchedule(opt, "cosine", 1e-3, total_steps=100)
    for _ in range(50):
        sched.step()
    lr = sched.apply()
    assert opt.param_groups[0]["lr"] == lr
    assert lr == pytest.approx(1e-3 * lr_factor("cosine", 0.5))
    timed = LRSchedule(opt, "cosine", 1e-3, total_steps=100, time_budget_s=10.0)
    assert timed.progress(elapsed_s=9.0) == pytest.approx(0.9)  # time ahead of steps
    assert timed.apply(elapsed_s=20.0) == pytest.approx(1e-3 * COSINE_FINAL_FRACTION)
    restored = LRSchedule(opt, "cosine", 1e-3, total_steps=100)
    restored.load_state_dict(sched.state_dict())
    assert restored.step_count == 50 and not math.isnan(restored.apply())
