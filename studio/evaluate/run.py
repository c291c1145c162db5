"""Runs an evaluation: every variant x prompt x seed made with the same settings, scored, gridded, charted, saved."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time

from studio.evaluate.charts import write_charts
from studio.evaluate.grid import make_grid
from studio.evaluate.report import EvaluationReport, evaluations_dir, write_report
from studio.evaluate.request import EvaluationRequest
from studio.evaluate.scoring import ImageScore, clip_scores, face_scores, load_reference
from studio.fileio import atomic_path, temp_dir
from studio.generate.parameters import save_png
from studio.generate.run import generate
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress

GRID = "grid.png"
GENERATION_SHARE = 0.9  # of the progress bar; scoring with CLIP, the grid and the charts take the rest


class EvaluationCancelled(Cancelled):
    """The user stopped the run; `report` holds the images finished before, saved like a complete run."""

    def __init__(self, report: EvaluationReport):
        super().__init__(f"evaluation {report.name!r} cancelled after {len(report.rows)} image(s)")
        self.report = report


def evaluate(studio, request: EvaluationRequest, *, progress: ProgressFn = no_progress,
             should_stop: StopFn = never_stop) -> EvaluationReport:
    """Generate, score and save the evaluation `request.name`; raise EvaluationCancelled (with the partial report,
    also saved) when `should_stop()` turns true."""
    started, created = time.perf_counter(), dt.datetime.now().isoformat(timespec="seconds")
    # 1. Check everything that can be checked before an hour of generation: names, files, the reference faces
    request = request.check()
    root = evaluations_dir(studio.settings)
    final = root / request.name
    if final.exists():
        raise ValueError(f"`name` {request.name!r} is taken: {final} exists (choose another name or delete it)")
    for variant in request.variants:
        studio.store.resolve(variant.model or studio.store.default_model)
        for lora in variant.loras:
            studio.store.lora_file(lora.name)
        for embedding in variant.embeddings:
            studio.store.embedding_file(embedding)
    if request.clip_model:
        from studio.models.clip import resolve_clip

        clip_ref = resolve_clip(studio.settings, request.clip_model)
    progress(0.0, "reading the reference faces")
    reference = load_reference(studio.settings, request.reference)

    # 2. Work in a hidden folder that becomes workspace/evaluations/<name>/ in one rename at the end
    root.mkdir(parents=True, exist_ok=True)
    work = temp_dir(final)
    try:
        rows, images, cancelled = _generate_all(studio, request, reference, work, progress, should_stop)

        # 3. CLIP scores, loading the CLIP model once for the whole run
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
            seconds=time.perf_counter() - started, reference=reference.source, clip_note=clip_note,
        )
        labels = [v.label for v in request.variants]
        if rows:
            grid = make_grid(rows, images, labels, request.prompts, request.seeds, request.tolerance)
            with atomic_path(work / GRID) as tmp:
                grid.save(tmp, format="PNG")
            report.grid = GRID
        report.charts = write_charts(work, report.by_variant(), report.by_prompt(), request.tolerance,
                                     report.has_clip)
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


def _generate_all(studio, request: EvaluationRequest, reference, work, progress: ProgressFn, should_stop: StopFn):
    """Every variant x prompt x seed, variant by variant (so each LoRA set is switched to once), sim-scored as
    made. Returns the rows, the pictures by (variant, prompt, seed), and whether the user stopped the run."""
    cells = [(vi, v, pi, p, s) for vi, v in enumerate(request.variants) for pi, p in enumerate(request.prompts)
             for s in request.seeds]
    rows: list[ImageScore] = []
    images = {}
    for done, (vi, variant, pi, prompt, seed) in enumerate(cells):
        where = f"image {done + 1}/{len(cells)}: {variant.label}, prompt {pi + 1}, seed {seed}"

        def step(fraction: float, message: str, done=done, where=where) -> None:
            progress(GENERATION_SHARE * (done + fraction) / len(cells), f"{where} ({message})")

        if should_stop():
            return rows, images, True
        try:
            result = generate(studio, request.generation(variant, prompt, seed), progress=step,
                              should_stop=should_stop)
        except Cancelled:
            return rows, images, True
        made = result.images[0]
        folder = work / "images" / f"{vi}-{_slug(variant.label)}" / f"p{pi}"
        path = save_png(made.image, made.parameters, folder, seed)
        sim = face_scores([made.image], reference)[0]
        rows.append(ImageScore(variant.label, prompt, seed, path.relative_to(work).as_posix(), sim))
        images[(variant.label, prompt, seed)] = made.image
    return rows, images, False


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", label)
