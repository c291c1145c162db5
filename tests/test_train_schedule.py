"""When a run validates: the budget's arithmetic on measured timings, every N epochs or steps, and which epochs keep
their weights."""

from __future__ import annotations

import pytest

from tests.train_helpers import tiny_config


def _simulate(plan, step_s: float, validation_s: float):
    """Run `plan` over its epochs with steps of `step_s` seconds and validations of `validation_s`: the epochs it
    validated and the share of the wall time validation took."""
    validated, train_s = [], 0.0
    epochs = -(-plan.total // plan.per_epoch)
    for epoch in range(1, epochs + 1):
        step = min(plan.total, epoch * plan.per_epoch)
        train_s = step * step_s
        if plan.at_epoch_end(epoch, step, train_s):
            plan.took(step, validation_s)
            validated.append(epoch)
    return validated, plan.spent_s / (plan.spent_s + train_s)


def test_the_budget_spreads_what_it_affords_from_the_first_epoch_to_the_last():
    from studio.train.schedule import ValidationPlan

    # pocket's 300 one-step epochs at 0.2 s a step, a validation of 0.6 s: 60 s of training allow 0.1 / 0.9 x 60 =
    # 6.7 s of validation, 11 validations of 0.6 s
    plan = ValidationPlan("budget", 1, 0.1, total=300, per_epoch=1, cost_s=0.6)
    validated, share = _simulate(plan, 0.2, 0.6)
    assert validated[0] == 1 and validated[-1] == 300  # the start and the end are seen
    assert 9 <= len(validated) <= 11 and share <= 0.1
    gaps = [b - a for a, b in zip(validated, validated[1:])]
    assert max(gaps) <= 2 * min(gaps[:-1])  # evenly between, not bunched
    said = ValidationPlan("budget", 1, 0.1, total=300, per_epoch=1, cost_s=0.6).words(300, 60.0)
    assert said.startswith("validation by budget (10% of the run's time)") and "afford 11 validations" in said
    # a validation that costs more than the budget allows: only the end
    validated, _ = _simulate(ValidationPlan("budget", 1, 0.1, total=60, per_epoch=4, cost_s=2.0), 0.1, 2.0)
    assert validated == [15]
    # steps three times as fast make validation three times as dear: a third as many
    fast, _ = _simulate(ValidationPlan("budget", 1, 0.1, total=300, per_epoch=1, cost_s=0.6), 0.066, 0.6)
    assert 2 <= len(fast) <= 4 and fast[-1] == 300


def test_every_n_epochs_or_steps_and_the_epochs_that_keep_their_weights():
    from studio.train.schedule import ValidationPlan

    by_epochs = ValidationPlan("epochs", 3, 0.1, total=40, per_epoch=4)  # 10 epochs
    assert _simulate(by_epochs, 0.1, 5.0)[0] == [3, 6, 9, 10]  # every 3rd and the last, whatever it costs
    by_steps = ValidationPlan("steps", 5, 0.1, total=12, per_epoch=4)
    assert [s for s in range(1, 13) if by_steps.at_step(s)] == [5, 10]  # the last step validates as its epoch
    assert _simulate(by_steps, 0.1, 1.0)[0] == [3]
    never = ValidationPlan("budget", 0, 0.1, total=12, per_epoch=4)
    assert _simulate(never, 0.1, 0.0)[0] == [] and not never.at_step(5)
    budget = ValidationPlan("budget", 1, 0.1, total=12, per_epoch=4)
    assert [budget.saves(e, v) for e, v in ((1, True), (2, False), (3, True))] == [True, False, True]
    assert [by_epochs.saves(e, False) for e in (2, 3)] == [False, True]
    assert ValidationPlan("budget", 1, 0.1, 12, 4, save_every_epochs=2).saves(2, False) is True
    assert never.saves(1, False) is True  # no validation, 3 epochs: every epoch
    # no validation over 50 epochs of 4 steps: ten saves, every 5th epoch (the end and a cancel save as well)
    fifty = ValidationPlan("budget", 0, 0.1, total=200, per_epoch=4)
    assert [e for e in range(1, 51) if fifty.saves(e, False)] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert [e for e in range(1, 8) if ValidationPlan("steps", 5, 0.1, 26, 4).saves(e, False)] == [1, 2, 3, 4, 5, 6, 7]


def test_validation_settings_are_checked_and_old_run_files_keep_their_epochs():
    from studio.train.config import RunConfig

    with pytest.raises(ValueError, match="`validation_by` must be one of budget, epochs, steps but is 'hours'"):
        tiny_config(validation_by="hours").check()
    with pytest.raises(ValueError, match="`validation_budget` must be above 0 and at most 0.5"):
        tiny_config(validation_budget=0.9).check()
    old = {k: v for k, v in tiny_config(validation_every=2).to_json().items() if k != "validation_by"}
    assert RunConfig.from_json(old).validation_by == "epochs"  # a run.json from before budgets
    assert RunConfig(name="x", dataset="x").validation_by == "budget"  # the default now
