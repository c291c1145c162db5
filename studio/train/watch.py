"""What a run watches while it trains: the base model's validation grid before the first step (kept across runs,
basegrid.py), grids when the validation plan says (schedule.py: by budget, or every N epochs or steps) and at
asked-for steps (sim-scores against the dataset's faces, CLIP scores with the prompts), the weights kept at those
steps, the steps' losses (read every few steps, losses.py) and the collapse guard (guard.py) judging them and the
pictures at every validation. Scoring pictures against faces and writing checkpoints happen beside the next steps
(background.py); their events reach the log from the training thread.

When the guard fires, the checkpoints written after the last good moment are set aside (renamed, never resumed
from), so the run keeps its last good checkpoint, and the run stops naming the signal. The pictures never stop a run
that has no such checkpoint yet (nothing would be left of it): until one is written after a validation that passed,
pictures that look collapsed are said in the log and the run goes on (the loss signal and the NaN check still
stop it).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from studio.train import basegrid, checkpoints, sampling
from studio.train.background import Background
from studio.train.guard import CollapseDetected, LossWatch, guard_notes, image_verdict, references, strayed
from studio.train.losses import PendingLosses
from studio.train.schedule import ValidationPlan
from studio.train.setup import TrainingDiverged, diverged, main_says, mean_over_processes

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


class _Said:
    """A log that keeps its events, for work on the background's thread (the run's log has one writer)."""

    def __init__(self):
        self.events = []

    def event(self, kind: str, **fields) -> None:
        self.events.append((kind, fields))


class RunWatch:
    def __init__(self, *, store, parts, config, run_dir: Path, method, accelerator, log, history: dict, reference,
                 facts, device: str, pictures: list[Path], total: int, per_epoch: int, cache_dir: Path):
        """`reference(log)`: makes what validation images are scored against (sampling.subject_references), called
        by the background at the first scoring; `pictures`: the dataset's pictures, which the collapse guard holds
        validation images against; `total`, `per_epoch`: the run's steps; `cache_dir`: where base grids are kept
        across runs."""
        self.store, self.parts, self.config, self.run_dir = store, parts, config, Path(run_dir)
        self.method, self.accelerator, self.log, self.history = method, accelerator, log, history
        self.facts, self.device = facts, device
        self._make_reference, self.reference = reference, None
        self.pictures, self.total, self.cache_dir = pictures, total, Path(cache_dir)
        self._refs = None  # guard.References, made at the first verdict
        history.setdefault("step_validations", [])
        self.loss = LossWatch(config.guard_loss_factor, config.guard_loss_steps, **history.get("loss_watch", {}))
        self.good_step = history.get("good_step", 0)  # the last step whose pictures passed (0: the base's)
        self.milestones = set(config.validate_at_steps)
        self.plan = ValidationPlan.of(config, total, per_epoch, history.get("validation_plan"))
        self.validating = bool(config.prompts()) and bool(self.plan.on or config.validate_at_steps)
        self.last: tuple[int, sampling.EpochValidation | None] | None = None  # the step validated last, its result
        self.background = Background()
        self.losses = PendingLosses(accelerator)
        self.epoch_losses: dict[int, list[float]] = {}
        self._clip = None
        self._skipping = None  # the streak whose skipped checkpoints were said
        self._elapsed_before = history.get("elapsed_s", 0.0)
        self._started = time.perf_counter()
        self._rate_from: tuple[float, int] | None = None  # (time, step) the it/s of the log counts from
        self._validated_epoch = False  # whether the last epoch_end validated

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def elapsed(self) -> float:
        """Seconds of training and validation so far, across resumes (up to the checkpoint resumed from)."""
        return self._elapsed_before + time.perf_counter() - self._started

    def training_s(self) -> float:
        """Seconds of training so far (validation's share taken out), across resumes."""
        return max(0.0, self.elapsed() - self.plan.spent_s)

    def clip(self):
        """The run's CLIP for validation scores, loaded at the first validation (None without `clip_model`)."""
        if self._clip is None and self.config.clip_model:
            self._clip = self.store.load_clip(self.config.clip_model, device=self.device)
        return self._clip

    # ---- before the first step -------------------------------------------------------------------------------

    def begin(self, step: int, base_loss) -> None:
        """A fresh run: the base model's loss (`base_loss()`: the loss signal's first level, so a run that jumps at
        its second step is caught too) and its validation grid (the pictures' reference; a sweep's first row)."""
        self._rate_from = (time.time(), step)
        if step:
            self._started = time.perf_counter()
            return
        if self.loss.on and self.loss.level is None:
            self.loss.start(mean_over_processes(self.accelerator, base_loss()))
            self.log.event("message", text=f"base model's loss {self.loss.level:.4g}: the collapse guard's first level")
        if self.validating and "base_validation" not in self.history and self.main:
            base, images, kept = self._base_grid()
            self.history["base_validation"] = base.__dict__
            self._score(base, images, [("validation", dict(stage="base", **base.__dict__, elapsed_s=0.0, passed=True,
                                                           guard=None))])
            if kept:
                self.log.event("message", text=f"the base model's validation grid came from the cache (drawn in "
                                               f"{self.plan.cost_s:.2f} s by an earlier run)")
            for note in guard_notes(self.config, len(base.images), self._clip.ref.meaningful if self._clip else None):
                self.log.event("message", text=note)
        self._started = time.perf_counter()  # a run's time is its training's, not the base's grid
        self._rate_from = (time.time(), step)

    # ---- every step ------------------------------------------------------------------------------------------

    def step_done(self, step: int, epoch: int, loss, lr: float) -> None:
        """Step `step` ended with `loss` (a device tensor): kept, and read with the steps before it every few steps
        (flush); what the background finished is logged."""
        if self.losses.add(step, epoch, loss, lr):
            self.flush()
        self._say(self.background.poll())

    def flush(self) -> None:
        """Read the pending losses: stop on a NaN or infinite one (the last checkpoint, written before it, is
        kept), judge them by the loss signal, log their step events."""
        for entry in self.losses.read():
            if not math.isfinite(entry.loss):
                self.settle()
                raise TrainingDiverged(diverged(f"the loss became {entry.loss} at step {entry.step}", self.run_dir,
                                                self.config))
            reason = self.loss.update(entry.step, entry.loss)
            if reason:
                self._stop("loss", entry.step, reason, good_after=self.loss.since - 1)
            self.epoch_losses.setdefault(entry.epoch, []).append(entry.loss)
            started, first = self._rate_from
            rate = (entry.step - first) / (entry.at - started) if entry.at > started else 0.0
            self.log.event("step", time=round(entry.at, 3), step=entry.step, total=self.total, epoch=entry.epoch,
                           loss=entry.loss, lr=entry.lr, it_s=rate, eta_s=(self.total - entry.step) / rate if rate
                           else None)

    def epoch_loss(self, epoch: int) -> float | None:
        """The mean loss of epoch `epoch`'s steps (of this session: a resume starts its epoch's list again)."""
        self.flush()
        losses = self.epoch_losses.get(epoch, [])
        return sum(losses) / len(losses) if losses else None

    def at_step(self, step: int, epoch: int) -> None:
        """At a step of `validate_at_steps` (the weights kept) or, by steps, of the plan's: validate and judge."""
        if step in self.milestones or self.plan.at_step(step):
            self.validate(step, epoch, f"step-{step:07d}", kind="step", keep=step in self.milestones)

    # ---- an epoch's end -------------------------------------------------------------------------------------

    def epoch_end(self, epoch: int, step: int) -> sampling.EpochValidation | None:
        """Validate at epoch `epoch`'s end when the plan says so (the run's last epoch always); None otherwise (and
        on the processes of a multi-GPU run but the main one, which validates). The main process's timings decide
        for all of them."""
        due = self.validating and self.plan.at_epoch_end(epoch, step, self.training_s())
        self._validated_epoch = main_says(self.accelerator, due)
        return self.validate(step, epoch, f"epoch-{epoch:03d}") if self._validated_epoch else None

    def saves(self, epoch: int) -> bool:
        """Whether epoch `epoch`'s end (after epoch_end) writes a checkpoint and epoch weights, on every process
        alike (see ValidationPlan.saves)."""
        return self.plan.saves(epoch, self._validated_epoch)

    def epoch_done(self, epoch: int, step: int, loss: float | None, result) -> None:
        """Epoch `epoch`'s event (its loss, and its validation's grid and scores once they are scored), and the
        validation into the history a checkpoint keeps."""
        if result is None:
            self.log.event("epoch", epoch=epoch, loss=loss)
        else:
            self.history["validations"].append(result.__dict__)

            def event():  # after the scoring handed over before it
                per_subject = dict(subjects=result.subjects, worst_score=result.worst_score) if result.subjects else {}
                return [("epoch", dict(epoch=epoch, grid=result.grid, scores=result.scores,
                                       mean_score=result.mean_score, clip_scores=result.clip_scores,
                                       mean_clip=result.mean_clip, step=step, loss=loss, **per_subject))]

            self.background.submit(event)
        if self.main:
            said = self.plan.words(step, self.training_s())
            if said:
                self.log.event("message", text=said)

    # ---- validation ------------------------------------------------------------------------------------------

    def validate(self, step: int, epoch: int, label: str, kind: str = "epoch",
                 keep: bool = False) -> sampling.EpochValidation | None:
        """Validate at `step` (once: an epoch's end at a validated step takes that result), judge the pictures
        against the base's, hand the faces' scoring to the background, and with `keep` keep the weights. None on the
        other processes of a multi-GPU run (only the main one validates)."""
        if self.last is not None and self.last[0] == step:
            return self.last[1]
        started = time.perf_counter()
        result, images = self._draw(step, epoch, label) if self.main else (None, None)
        verdict = self._verdict(result) if result is not None else None
        if verdict is not None:
            self.settle()  # the checkpoints handed over are on disk: what a stop would fall back to
        # the pictures stop a run only when it keeps something: a checkpoint no later than the last passed validation
        waits = verdict is not None and not checkpoints.kept_at_or_before(self.run_dir, self.good_step)
        if result is not None:
            said = None if verdict is None else verdict[1] + (
                "; not stopped: the run has no checkpoint to fall back to yet, so it goes on and the next validation "
                "is judged again" if waits else "")
            fields = dict(**result.__dict__, elapsed_s=round(self.elapsed(), 3), passed=verdict is None, guard=said)
            if kind == "step":
                self.history["step_validations"].append(fields)
            self._score(result, images, [("validation", dict(stage=kind, **fields))], fields)
            if waits:
                self.log.event("message", text=f"step {step}: {said}")
        if main_says(self.accelerator, verdict is not None and not waits):
            signal, reason = verdict or ("images", "the main process's validation pictures collapsed")
            self._stop(signal, step, reason, good_after=self.good_step)
        if not main_says(self.accelerator, waits):
            self.good_step = step
        self.last = (step, result)
        self.plan.took(step, time.perf_counter() - started)
        if keep and self.main:
            with self.method.averaged():
                weights = self.method.model_state() if self.config.whole_model else self.method.state()
            header = self.facts.header(step, epoch)
            self.write(lambda w: checkpoints.save_step_weights(self.run_dir, step, w, header,
                                                               half=self.config.whole_model), weights)
        return result

    def validated_at(self, step: int) -> bool:
        """Whether `step` was validated and its pictures passed (a checkpoint written now holds sound weights)."""
        return self.last is not None and self.last[0] == step and self.good_step == step

    # ---- checkpoints -----------------------------------------------------------------------------------------

    def may_checkpoint(self, step: int, forced: bool) -> bool:
        """No checkpoint while the loss stands above the guard's threshold (it might hold a collapse and would
        replace the good one), unless the run ends or is cancelled now. The losses are read first: a NaN stops the
        run before anything is written."""
        self.flush()
        if self.loss.watching and not forced:
            if self._skipping != self.loss.since:  # said once per stretch of high loss
                self._skipping = self.loss.since
                self.log.event("message", text=f"no checkpoints while the loss stands above {self.loss.factor:g}x its "
                                               f"running level (since step {self.loss.since}; the collapse guard is "
                                               f"watching)")
            return False
        return True

    def history_now(self) -> dict:
        """The history a checkpoint keeps, as it is now: the loss signal's state, the time so far, the last good
        step, the validation plan's timings. Its lists are copies; the validations in them are the ones the
        background is scoring, written after their scores (the background keeps the order)."""
        self.history.update(loss_watch=self.loss.to_json(), elapsed_s=self.elapsed(), good_step=self.good_step,
                            validation_plan=self.plan.to_json())
        return {**self.history, "epoch_loss": dict(self.history["epoch_loss"]),
                "validations": list(self.history["validations"]),
                "step_validations": list(self.history["step_validations"])}

    def write(self, write, *trees, private: int = 1) -> None:
        """`write(*trees)` beside the next steps, from copies, where they fit in memory; now otherwise (after what
        was handed over before it, whose order it keeps). The first `private` trees are copies of their own
        (method.state() makes them)."""
        if not checkpoints.save_later(self.background, write, *trees, private=private):
            self.settle()
            write(*trees)

    # ---- the end -----------------------------------------------------------------------------------------------

    def settle(self) -> None:
        """Wait for the work handed to the background (raising what it raised) and log what it said."""
        self._say(self.background.drain())

    def finish(self) -> None:
        """Everything handed over done and said, and what validation took."""
        self.flush()
        self.settle()
        self.background.close()
        if self.main and self.plan.validated:
            self.log.event("message", text=self.plan.summary(self.training_s()))

    # ---- inside ------------------------------------------------------------------------------------------------

    def _say(self, events: list) -> None:
        for kind, fields in events:
            self.log.event(kind, **fields)


    def _score(self, result, images, events: list, *also: dict) -> None:
        """Score `result`'s pictures against the dataset's faces in the background, then log `events` (built now,
        their scores filled in then; `also`: further copies of the result's fields to fill in)."""

        def work():
            said = self._reference_made()
            sampling.score(result, images, self.reference, self.config)
            scored = {k: getattr(result, k) for k in ("scores", "mean_score", "subjects", "worst_score")}
            for fields in [f for _, f in events] + list(also):
                fields.update(scored)
            return said + events

        self.background.submit(work)

    def _reference_made(self) -> list:
        """Make the reference the first time (on the background's thread): the events it has to say."""
        if self._make_reference is None:
            return []
        log = _Said()
        self.reference, self._make_reference = self._make_reference(log), None
        return log.events

    def _base_grid(self):
        """The base's grid, from the cache when an earlier run drew it with the same settings: (result, pictures,
        whether it came from the cache). Its time is the validation plan's first estimate of a validation's."""
        key = None if self.config.continue_from else basegrid.grid_key(self.parts, self.config, self.method.caption,
                                                                       self.device)
        folder = self.cache_dir / "base_grids" / key if key else None
        kept = basegrid.find(folder, len(self.config.prompts())) if folder else None
        started = time.perf_counter()
        result, images = self._draw(0, 0, "base", pictures=kept.pictures if kept else None)
        if kept is None:
            seconds = time.perf_counter() - started
            if folder is not None:
                basegrid.keep(folder, images, seconds)
        self.plan.cost_s = kept.seconds if kept else seconds
        return result, images, kept is not None

    def _draw(self, step: int, epoch: int, label: str, pictures: list | None = None):
        with self.method.averaged():
            return sampling.draw(self.parts, self.config, epoch, self.run_dir, self.method.caption, step=step,
                                 label=label, clip=self.clip(), pictures=pictures)

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
        self.settle()  # the checkpoints handed over are on disk before any is set aside
        moved = checkpoints.set_aside(self.run_dir, good_after) if self.main else []
        self.log.event("guard", step=step, signal=signal, reason=reason, set_aside=[str(p) for p in moved])
        message = diverged(f"stopped by the collapse guard ({signal} signal) at step {step}: {reason}", self.run_dir,
                           self.config, why_good="written before the collapse")
        raise CollapseDetected(message, signal, step, reason)
