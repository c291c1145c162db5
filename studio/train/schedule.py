"""When a run validates and keeps its weights: by a share of its wall time (the default), every N epochs, or every N
steps (RunConfig.validation_by, validation_every, validation_budget).

By budget, validation takes at most `validation_budget` of the run's wall time. From the seconds a training step and
a validation take, measured as the run goes (a validation's first estimate is the base grid's time, remembered with
the grid when it came from the cache), the plan affords n validations and spreads them over the run's epochs: after
the first epoch, at the last, and evenly between, so the start, the end and the points between are seen. The epochs
validated are the ones whose checkpoint and epoch weights are saved, so the best-epoch pick and the epoch export see
the same epochs. Each decision is made again at every epoch's end with the newest timings, so a machine that slows
down validates less, never more than the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VALIDATION_BY = ("budget", "epochs", "steps")
SAVES_WITHOUT_PLAN = 10  # checkpoints and epoch weights over a run that validates by steps or not at all
PLAN_WORDS = "validation by budget"  # how the run log's line about the budget's choice starts (the Train tab shows it)


@dataclass
class ValidationPlan:
    by: str  # see VALIDATION_BY
    every: int  # epochs or steps between validations (by "epochs", "steps"); 0: never
    budget: float  # the share of the run's wall time validation may take (by "budget")
    total: int  # optimizer steps of the run
    per_epoch: int  # optimizer steps per epoch
    save_every_epochs: int = 0  # RunConfig.save_every_epochs: checkpoints on their own schedule when > 0
    cost_s: float | None = None  # seconds one validation takes (the last one measured)
    spent_s: float = 0.0  # seconds spent validating during the run (not the base grid)
    validated: list[int] = field(default_factory=list)  # steps validated during the run, by this plan
    said: int = 0  # the validations afforded when the log was last told (so it is told again only on a change)

    @classmethod
    def of(cls, config, total: int, per_epoch: int, state: dict | None) -> "ValidationPlan":
        """The run's plan; `state`: what a checkpoint kept of it (a resumed run goes on with its timings)."""
        every = config.validation_every if config.prompts() else 0
        return cls(config.validation_by, every, config.validation_budget, total, per_epoch,
                   config.save_every_epochs, **(state or {}))

    def to_json(self) -> dict:
        return {"cost_s": self.cost_s, "spent_s": self.spent_s, "validated": list(self.validated), "said": self.said}

    @property
    def on(self) -> bool:
        return self.every > 0

    # ---- what to do now ----------------------------------------------------------------------------------------

    def at_step(self, step: int) -> bool:
        """By "steps": validate at this step (an epoch's end that is also one validates as the epoch)."""
        return self.on and self.by == "steps" and step % self.every == 0 and step < self.total

    def at_epoch_end(self, epoch: int, step: int, train_s: float) -> bool:
        """Validate at the end of epoch `epoch` (1-based), after `step` steps and `train_s` seconds of training."""
        if not self.on:
            return False
        if step >= self.total:
            return True  # the end is always seen
        if self.by == "epochs":
            return epoch % self.every == 0
        if self.by == "steps":
            return False
        targets = self.targets(self.afforded(step, train_s))
        last = self.validated[-1] if self.validated else 0
        # and never ahead of the budget: this one and the end's must fit in what the whole run allows
        room = self.allowed(step, train_s) - self.spent_s - 2 * (self.cost_s or 0.0)
        return any(last < t <= step for t in targets) and room >= 0

    def saves(self, epoch: int, validated: bool) -> bool:
        """Whether epoch `epoch`'s end writes a checkpoint and epoch weights (the run's end and a cancel always do)."""
        if self.save_every_epochs:
            return epoch % self.save_every_epochs == 0
        if self.on and self.by == "epochs":
            return epoch % self.every == 0
        if self.on and self.by == "budget":
            return validated
        # no validation to follow, or by steps: ten times over the run (every epoch of a run of ten or fewer). A
        # checkpoint and the epoch's weights at every epoch cost a short epoch's run more than its steps (a tiny
        # run of 4-step epochs: 14% of its time); a cancel and the end still save.
        return epoch % self.spread_epochs == 0

    @property
    def spread_epochs(self) -> int:
        """Epochs between saves without a validation plan to follow: a tenth of the run's epochs, at least 1."""
        epochs = -(-self.total // max(1, self.per_epoch))
        return max(1, -(-epochs // SAVES_WITHOUT_PLAN))

    def took(self, step: int, seconds: float) -> None:
        """A validation at `step` took `seconds` (generation, the guard's verdict; scoring runs beside the steps)."""
        self.cost_s, self.spent_s = seconds, self.spent_s + seconds
        self.validated.append(step)

    # ---- the budget's arithmetic -------------------------------------------------------------------------------

    def afforded(self, step: int, train_s: float) -> int:
        """Validations the budget affords over the whole run, the end included, at the measured speeds: with a
        validation of c seconds and T seconds of training projected for the run, n = budget / (1 - budget) x T / c
        (validation's share of training plus validation is then at most the budget). At least 1: the end."""
        if not step or train_s <= 0:
            return 1
        if not self.cost_s:
            return 2  # no timing yet (a run resumed from before plans were kept): the first epoch and the end
        return max(1, int(self.allowed(step, train_s) // self.cost_s))

    def allowed(self, step: int, train_s: float) -> float:
        """Seconds of validation the whole run may take, projected from `train_s` seconds for `step` steps."""
        return self.budget / (1 - self.budget) * train_s / max(1, step) * self.total

    def targets(self, n: int) -> list[int]:
        """The steps n validations go to, on epoch ends: the first epoch's, the last, and n - 2 evenly between (at
        most one a epoch)."""
        first, epochs = self.per_epoch, -(-self.total // self.per_epoch)
        if n <= 1 or epochs <= 1:
            return [self.total]
        n = min(n, epochs)
        at = {min(self.total, self.per_epoch * round(1 + k * (epochs - 1) / (n - 1))) for k in range(n)}
        return sorted(at | {first, self.total})

    def words(self, step: int, train_s: float) -> str | None:
        """What the budget chose, in words for the run's log, when that changed since it was last said."""
        if not self.on or self.by != "budget" or not self.cost_s or not step:
            return None
        n = self.afforded(step, train_s)
        targets = self.targets(n)
        if len(targets) == self.said:
            return None
        self.said = len(targets)
        per_step = train_s / step
        epochs = [t // self.per_epoch for t in targets]
        where = ", ".join(str(e) for e in epochs[:6]) + (f", ... {epochs[-1]}" if len(epochs) > 6 else "")
        return (f"{PLAN_WORDS} ({self.budget:.0%} of the run's time): a validation takes {self.cost_s:.2f} s and a "
                f"step {per_step:.3f} s, so {self.total} steps afford {len(targets)} validation"
                f"{'s' if len(targets) != 1 else ''}, after epochs {where}")

    def summary(self, train_s: float) -> str:
        """How much validation took, in words for the end of the run."""
        share = self.spent_s / (self.spent_s + train_s) if self.spent_s + train_s > 0 else 0.0
        return (f"validated {len(self.validated)} time{'s' if len(self.validated) != 1 else ''} during the run: "
                f"{self.spent_s:.1f} s of {self.spent_s + train_s:.1f} s ({share:.0%})")
