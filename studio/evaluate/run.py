"""Runs an evaluation: every variant x prompt x seed made with the same settings, scored, gridded, charted, saved."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from dataclasses import replace

from studio.evaluate.charts import write_charts
from studio.scorers import find_checker
from studio.evaluate.defaults import lora_facts, model_hints
from studio.evaluate.grid import make_grid
from studio.evaluate.report import EvaluationReport, evaluations_dir, write_report
from studio.evaluate.request import EvaluationRequest
from studio.evaluate.scoring import ImageScore, clip_scores, face_scores, load_reference
from studio.fileio import atomic_path, temp_dir
from studio.generate.parameters import save_png
from studio.generate.run import generate
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress

GRID = "grid.png"
GENERATION_SHARE = 0.9  # of the progress bar; the checker, CLIP, the grid and the charts take the rest


class EvaluationCancelled(Cancelled):
    """The user stopped the run; `report` holds the images finished before, saved like a complete run."""

    def __init__(self, report: EvaluationReport):
        super().__init__(f"evaluation {report.name!r} cancelled after {len(report.rows)} image(s)")
        self.report = report


def evaluate(studio, request: EvaluationRequest, *, progress: ProgressFn = no_progress,
             should_stop: StopFn = never_stop) -> EvaluationReport:
    """Generate, score and save the evaluation `request.name`; raise EvaluationCancelled (with the partial report,
    also saved) when `should_stop()` turns true. What is scored follows the run: likeness when the reference has
    faces, CLIP score when a CLIP model is chosen, the pocket checker when every variant's base ships one."""
    started, created = time.perf_counter(), dt.datetime.now().isoformat(timespec="seconds")
    # 1. Check everything that can be checked before an hour of generation: names, files, the reference faces
    request = request.check()
    root = evaluations_dir(studio.settings)
    final = root / request.name
    if final.exists():
        raise ValueError(f"`name` {request.name!r} is taken: {final} exists (choose another name or delete it)")
    bases = []
    for variant in request.variants:
        bases.append(studio.store.resolve(variant.model or studio.store.default_model))
        for lora in variant.loras:
            studio.store.lora_file(lora.name)
        for embedding in variant.embeddings:
            studio.store.embedding_file(embedding)
    if request.clip_model:
        from studio.models.clip import resolve_clip

        clip_ref = resolve_clip(studio.settings, request.clip_model)
    if request.reference:
        progress(0.0, "reading the reference faces")
    reference = load_reference(studio.settings, request.reference)
    notes = [reference.note] if reference.note else []
    others = {name: load_reference(studio.settings, name) for name in request.also_against}
    notes += [f"also against {name}: {o.note}" for name, o in others.items() if o.note]
    others = {name: o for name, o in others.items() if o.scores}
    request, cfg_note = _model_cfg(studio, request)
    notes += [cfg_note] if cfg_note else []
    checkers = {find_checker(ref) for ref in bases}
    checker = checkers.pop() if len(checkers) == 1 else None  # one checker for every variant, or none

    # 2. Work in a hidden folder that becomes workspace/evaluations/<name>/ in one rename at the end
    root.mkdir(parents=True, exist_ok=True)
    work = temp_dir(final)
    try:
        rows, images, cancelled = _generate_all(studio, request, reference, work, progress, should_stop, others)

        # 3. The pocket checker's verdicts (every variant on builtin:pocket), then CLIP, each model loaded once
        asked: dict[str, str] = {}
        label_order: tuple[str, ...] = ()
        if checker is not None:
            progress(GENERATION_SHARE, "what was drawn (the base's checker)")
            asked, checker_notes, label_order = _check_all(studio, checker, request, rows, images)
            notes += checker_notes
        if not request.clip_model:
            clip_note = "No CLIP model chosen: no CLIP score."
        elif cancelled or not rows:
            clip_note = "CLIP score not computed: the run was cancelled."
        else:
            progress(GENERATION_SHARE, f"CLIP scores with {request.clip_model}")
            with studio.cache.borrow("clip", request.clip_model) as clip:
                scores = clip_scores(clip, [images[(r.variant, r.prompt, r.seed)] for r in rows],
                                     [r.prompt for r in rows])
            for row, score in zip(rows, scores):
                row.clip_score = score
            clip_note = (f"CLIP score by {request.clip_model}." if clip_ref.meaningful else
                         f"CLIP score by {request.clip_model}: random weights for tests, the scores mean nothing.")

        # 4. Report, grid and charts, then the rename that makes the evaluation appear
        progress(0.95, "grid and charts")
        report = EvaluationReport(
            name=request.name, folder=final, request=request, rows=rows,
            status="cancelled" if cancelled else "complete", created=created,
            seconds=0.0, reference=reference.source, clip_note=clip_note, notes=notes, asked=asked,
        )
        labels = [v.label for v in request.variants]
        if rows:
            grid = make_grid(rows, images, labels, request.prompts, request.seeds, request.tolerance)
            with atomic_path(work / GRID) as tmp:
                grid.save(tmp, format="PNG")
            report.grid = GRID
        if reference.scores and rows and not any(r.sim_score is not None for r in rows):
            report.notes.append("No generated picture has a face: no sim-score, so no likeness chart.")
        report.charts = write_charts(work, report.by_variant(), report.by_prompt(), request.tolerance,
                                     likeness=report.has_likeness, clip=report.has_clip, checker=report.has_checker,
                                     asked=asked, label_order=label_order)
        report.seconds = time.perf_counter() - started
        report.folder = work
        write_report(report)
        os.rename(work, final)  # fails rather than merge if another run took the name meanwhile
        report.folder = final
    finally:
        if work.exists():
            shutil.rmtree(work)
    progress(1.0, "done")
    if cancelled:
        raise EvaluationCancelled(report)
    return report


def _model_cfg(studio, request: EvaluationRequest) -> tuple[EvaluationRequest, str]:
    """The CFG scale to use when none is given: the base's own where every variant shares a builtin with one
    (builtin:pocket was trained for 4; its family's 7 overshoots), else the family's (left to the generator)."""
    if request.cfg is not None:
        return request, ""
    hints = [model_hints(studio, v.model) for v in request.variants]
    cfg = hints[0].get("cfg")
    if cfg is None or any(h.get("cfg") != cfg for h in hints):
        return request, ""
    return replace(request, cfg=cfg), f"CFG {cfg:g}: the base model's own (no CFG scale was given)."


def _check_all(studio, found, request: EvaluationRequest, rows: list[ImageScore], images: dict):
    """Fill in each row's checker verdict; return what each prompt asks for ("red star"), the labels the checker knows
    and the notes: how the
    trigger words were read."""
    from studio.evaluate.checking import check_images, taught_labels

    loras = [(lc.name, facts.get("trigger", ""), facts.get("dataset", "")) for v in request.variants
             for lc in v.loras for facts in [lora_facts(studio, lc.name)]]
    with studio.cache.borrow("checker", str(found.folder)) as classifier:
        checker = found.kind.wrap(classifier)
        taught = taught_labels(studio, checker, loras)
        meaning = {t.trigger: t.label for t in taught if t.label is not None}
        checks = check_images(checker, [images[(r.variant, r.prompt, r.seed)] for r in rows],
                              [r.prompt for r in rows], meaning)
    for row, check in zip(rows, checks):
        row.drawn, row.drawn_confidence, row.drawn_color = check.drawn, round(check.confidence, 4), check.color
        row.asked_label, row.asked_color = check.asked_label, check.asked_color
        row.label_ok, row.color_ok = check.label_ok, check.color_ok
    asked = {}
    for prompt in request.prompts:
        color, label = checker.asked_for(prompt, meaning)
        if label is not None:
            asked[prompt] = " ".join(w for w in (color, label) if w)
    notes = [found.kind.note]
    notes += [t.note for t in taught]
    unasked = [p for p in request.prompts if p not in asked]
    if unasked:
        notes.append(f"Not scored for shape (no shape, face or known trigger word): {', '.join(map(repr, unasked))}; "
                     f"what is drawn is counted.")
    return asked, notes, checker.labels_known


def _generate_all(studio, request: EvaluationRequest, reference, work, progress: ProgressFn, should_stop: StopFn,
                  others: dict | None = None):
    """Every variant x prompt x seed, variant by variant (so each LoRA set is switched to once), sim-scored as
    made when the reference has faces. Consecutive seeds of small pictures are made in one batch (seed, seed+1, ...
    as Generate's batches are); with `others` (also_against's references with faces), each picture is scored
    against those too. Returns the rows, the pictures by (variant, prompt, seed), and whether the user
    stopped the run."""
    total = len(request.variants) * len(request.prompts) * len(request.seeds)
    rows: list[ImageScore] = []
    images = {}
    others = others or {}
    for vi, variant in enumerate(request.variants):
        batch = _batch_limit(studio, request, variant)
        for pi, prompt in enumerate(request.prompts):
            for seeds in _consecutive_runs(request.seeds, batch):
                done = len(rows)
                where = (f"image {done + 1}/{total}: {variant.label}, prompt {pi + 1}, seed {seeds[0]}" if len(seeds) == 1
                         else f"images {done + 1}-{done + len(seeds)}/{total}: {variant.label}, prompt {pi + 1}, "
                              f"seeds {seeds[0]}-{seeds[-1]}")

                def step(fraction: float, message: str, done=done, n=len(seeds), where=where) -> None:
                    progress(GENERATION_SHARE * (done + n * fraction) / total, f"{where} ({message})")

                if should_stop():
                    return rows, images, True
                generation = replace(request.generation(variant, prompt, seeds[0]), batch_size=len(seeds))
                try:
                    result = generate(studio, generation, progress=step, should_stop=should_stop)
                except Cancelled:
                    return rows, images, True
                for made in result.images:
                    folder = work / "images" / f"{vi}-{_slug(variant.label)}" / f"p{pi}"
                    path = save_png(made.image, made.parameters, folder, made.seed)
                    sim = face_scores([made.image], reference)[0] if reference.scores else None
                    against = {name: face_scores([made.image], o)[0] for name, o in others.items()}
                    rows.append(ImageScore(variant.label, prompt, made.seed, path.relative_to(work).as_posix(), sim,
                                           likeness=reference.scores, sim_against=against))
                    images[(variant.label, prompt, made.seed)] = made.image
    return rows, images, False


BATCH_PIXELS = 4 * 128 * 128  # pictures per call: up to this many pixels (8 of builtin:pocket's 64 px), one at 512 px
MAX_BATCH = 8


def _batch_limit(studio, request: EvaluationRequest, variant) -> int:
    """How many pictures of this variant one call may make: small pictures go in batches (on a CPU a 64 px picture
    costs little more in a batch of 8 than alone), large ones one at a time, as memory wants."""
    from studio.models import families

    if request.width and request.height:
        pixels = request.width * request.height
    else:
        with studio.cache.pipeline(variant.model or studio.store.default_model) as pipe:
            side = families.of(pipe).native_size(pipe)
        pixels = (request.width or side) * (request.height or side)
    return max(1, min(MAX_BATCH, BATCH_PIXELS // pixels))


def _consecutive_runs(seeds: list[int], limit: int) -> list[list[int]]:
    """The seeds in order, cut into runs of consecutive seeds (s, s+1, ...) of at most `limit`."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and len(runs[-1]) < limit and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return runs


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", label)
