"""What a run watches while it trains: the base model's validation grid before the first step, grids at epochs and
at asked-for steps (sim-scores against the dataset's faces, CLIP scores with the prompts), the weights kept at those
steps, and the collapse guard (guard.py) judging the loss after every step and the pictures at every validation.

When the guard fires, the checkpoints written after the last good moment are set aside (renamed, never resumed
from), so the run keeps its last good checkpoint, and the run stops naming the signal. The pictures never stop a run
that has no such checkpoint yet (nothing would be left of it): until one is written after a validation that passed,
pictures that look collapsed are said in the log and the run goes on (the loss signal and the NaN check still
stop it).
"""

from __future__ import annotations

import time
from pathlib import Path

from studio.train import checkpoints, sampling
from studio.train.guard import CollapseDetected, LossWatch, guard_notes, image_verdict, references, strayed
from studio.train.setup import diverged, main_says, mean_over_processes


REFERENCE_PICTURES = 64  # dataset pictures the collapse guard holds validation images against, at most


def _open(paths, side: int | None = None) -> list:
    """Pictures as RGB, at most `side` pixels a side when given (what the guard sees does not need more)."""
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("RGB")
        if side:
            im.thumbnail((side, side))
        out.append(im)
    return out


class RunWatch:
    def __init__(self, *, store, parts, config, run_dir: Path, method, accelerator, log, history: dict, reference,
                 facts, device: str, pictures: list[Path]):
        """`reference`: what validation images are scored against (sampling.subject_references); `pictures`: the
        dataset's pictures, which the collapse guard holds validation images against."""
        self.store, self.parts, self.config, self.run_dir = store, parts, config, Path(run_dir)
        self.method, self.accelerator, self.log, self.history = method, accelerator, log, history
        self.reference, self.facts, self.device = reference, facts, device
        self.pictures = pictures
        self._refs = None  # guard.References, made at the first verdict
        history.setdefault("step_validations", [])
        self.loss = LossWatch(config.guard_loss_factor, config.guard_loss_steps, **history.get("loss_watch", {}))
        self.good_step = history.get("good_step", 0)  # the last step whose pictures passed (0: the base's)
        self.milestones = set(config.validate_at_steps)
        self.validating = bool(config.prompts()) and bool(config.validation_every or config.validate_at_steps)
        self.last: tuple[int, sampling.EpochValidation | None] | None = None  # the step validated last, its result
        self._clip = None
        self._skipping = None  # the streak whose skipped checkpoints were said
        self._elapsed_before = history.get("elapsed_s", 0.0)
        self._started = time.perf_counter()

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def elapsed(self) -> float:
        """Seconds of training and validation so far, across resumes (up to the checkpoint resumed from)."""
        return self._elapsed_before + time.perf_counter() - self._started

    def clip(self):
        """The run's CLIP for validation scores, loaded at the first validation (None without `clip_model`)."""
        if self._clip is None and self.config.clip_model:
            self._clip = self.store.load_clip(self.config.clip_model, device=self.device)
        return self._clip

    # ---- before the first step -------------------------------------------------------------------------------

    def begin(self, step: int, base_loss) -> None:
        """A fresh run: the base model's loss (`base_loss()`: the loss signal's first level, so a run that jumps at
        its second step is caught too) and its validation grid (the pictures' reference; a sweep's first row)."""
        if step:
            return
        if self.loss.on and self.loss.level is None:
            self.loss.start(mean_over_processes(self.accelerator, base_loss()))
            self.log.event("message", text=f"base model's loss {self.loss.level:.4g}: the collapse guard's first level")
        if self.validating and "base_validation" not in self.history and self.main:
            base = self._generate(0, 0, "base")
            self.history["base_validation"] = base.__dict__
            self.log.event("validation", stage="base", **base.__dict__, elapsed_s=0.0, passed=True, guard=None)
            for note in guard_notes(self.config, len(base.images), self._clip.ref.meaningful if self._clip else None):
                self.log.event("message", text=note)
        self._started = time.perf_counter()  # a run's time is its training's, not the base's grid

    # ---- every step ------------------------------------------------------------------------------------------

    def judge_loss(self, step: int, loss: float) -> float:
        """The step's loss (the mean over processes, returned for the log), judged by the loss signal."""
        loss = mean_over_processes(self.accelerator, loss)
        reason = self.loss.update(step, loss)
        if reason:
            self._stop("loss", step, reason, good_after=self.loss.since - 1)
        return loss

    def at_step(self, step: int, epoch: int) -> None:
        """At a step of `validate_at_steps`: validate, judge and keep the weights."""
        if step in self.milestones:
            self.validate(step, epoch, f"step-{step:07d}", kind="step")

    def validate(self, step: int, epoch: int, label: str, kind: str = "epoch") -> sampling.EpochValidation | None:
        """Validate at `step` (once: an epoch's end at a validated step takes that result), judge the pictures
        against the base's, and at an asked-for step keep the weights. None on the other processes of a multi-GPU
        run (only the main one validates)."""
        if self.last is not None and self.last[0] == step:
            return self.last[1]
        result = self._generate(step, epoch, label) if self.main else None
        verdict = self._verdict(result) if result is not None else None
        # the pictures stop a run only when it keeps something: a checkpoint no later than the last passed validation
        waits = verdict is not None and not checkpoints.kept_at_or_before(self.run_dir, self.good_step)
        if result is not None:
            said = None if verdict is None else verdict[1] + (
                "; not stopped: the run has no checkpoint to fall back to yet, so it goes on and the next validation "
                "is judged again" if waits else "")
            fields = dict(**result.__dict__, elapsed_s=round(self.elapsed(), 3), passed=verdict is None, guard=said)
            if kind == "step":
                self.history["step_validations"].append(fields)
            self.log.event("validation", stage=kind, **fields)
            if waits:
                self.log.event("message", text=f"step {step}: {said}")
        if main_says(self.accelerator, verdict is not None and not waits):
            signal, reason = verdict or ("images", "the main process's validation pictures collapsed")
            self._stop(signal, step, reason, good_after=self.good_step)
        if not main_says(self.accelerator, waits):
            self.good_step = step
        self.last = (step, result)
        if kind == "step" and self.main:
            with self.method.averaged():
                weights = self.method.model_state() if self.config.whole_model else self.method.state()
            checkpoints.save_step_weights(self.run_dir, step, weights, self.facts.header(step, epoch),
                                          half=self.config.whole_model)
        return result

    def validated_at(self, step: int) -> bool:
        """Whether `step` was validated and its pictures passed (a checkpoint written now holds sound weights)."""
        return self.last is not None and self.last[0] == step and self.good_step == step

    def may_checkpoint(self, step: int, forced: bool) -> bool:
        """No checkpoint while the loss stands above the guard's threshold (it might hold a collapse and would
        replace the good one), unless the run ends or is cancelled now."""
        if self.loss.watching and not forced:
            if self._skipping != self.loss.since:  # said once per stretch of high loss
                self._skipping = self.loss.since
                self.log.event("message", text=f"no checkpoints while the loss stands above {self.loss.factor:g}x its "
                                               f"running level (since step {self.loss.since}; the collapse guard is "
                                               f"watching)")
            return False
        return True

    def snapshot(self) -> None:
        """Into the history a checkpoint keeps: the loss signal's state, the time so far, the last good step."""
        self.history.update(loss_watch=self.loss.to_json(), elapsed_s=self.elapsed(), good_step=self.good_step)

    # ---- inside ------------------------------------------------------------------------------------------------

    def _generate(self, step: int, epoch: int, label: str) -> sampling.EpochValidation:
        with self.method.averaged():
            return sampling.validate(self.parts, self.config, epoch, self.run_dir, self.reference, self.method.caption,
                                     step=step, label=label, clip=self.clip())

    def _verdict(self, result: sampling.EpochValidation) -> tuple[str, str] | None:
        """The guard's verdict on `result` (which gets its `strayed` measure), against the base's pictures."""
        base = self.history.get("base_validation")
        if base is None:  # a run resumed from before the studio kept the base's pictures
            return None
        if self.config.guard_image_ratio and self.config.guard_image_left:
            refs = self._references(base["images"])
            result.strayed = strayed(refs, _open(result.images)) if refs is not None else None
        meaningful = self._clip is not None and self._clip.ref.meaningful
        return image_verdict(self.config, result.spread, base.get("spread"), result.strayed,
                             result.clip_scores if meaningful else None,
                             base.get("clip_scores") if meaningful else None)

    def _references(self, base_images: list[str]):
        """The base's pictures and up to REFERENCE_PICTURES of the dataset's, evenly chosen, as the guard sees them."""
        if self._refs is None:
            step = max(1, len(self.pictures) // REFERENCE_PICTURES)
            self._refs = references(_open(base_images), _open(self.pictures[::step][:REFERENCE_PICTURES], 128))
        return self._refs

    def _stop(self, signal: str, step: int, reason: str, good_after: int):
        moved = checkpoints.set_aside(self.run_dir, good_after) if self.main else []
        self.log.event("guard", step=step, signal=signal, reason=reason, set_aside=[str(p) for p in moved])
        message = diverged(f"stopped by the collapse guard ({signal} signal) at step {step}: {reason}", self.run_dir,
                           self.config, why_good="written before the collapse")
        raise CollapseDetected(message, signal, step, reason)
