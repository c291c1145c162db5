"""Images a run generates with the model it is training: per-epoch validation grids with sim-scores, and
DreamBooth's class images (made once by the untouched base and kept for later runs)."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from studio import fileio
from studio.train.config import RunConfig
from studio.train.parts import Parts, validation_pipeline


@dataclass
class EpochValidation:
    epoch: int
    grid: str  # path of the stitched grid PNG
    images: list[str]
    prompts: list[str]
    scores: list[float | None] = field(default_factory=list)  # sim-score per image; None: no face found
    mean_score: float | None = None  # mean over images with a face; lower is more alike
    step: int | None = None  # the optimizer step it was made at (0: the base model, before training)
    clip_scores: list[float] = field(default_factory=list)  # CLIP score per image with its prompt (with clip_model)
    mean_clip: float | None = None
    spread: float | None = None  # how different the images are from one another (guard.spread)
    strayed: float | None = None  # how far they all left the base's and the dataset's pictures (guard.strayed)
    # With several subjects: per subject (in RunConfig.subjects order) its prompts' images scored against its own
    # dataset and against each other's (see SubjectReferences.judge), and the worst subject's score
    subjects: list[dict] = field(default_factory=list)
    worst_score: float | None = None  # the highest (worst) of the subjects' scores; lower is better


def best_epoch(scores: list[tuple[int, list[float | None]]]) -> int | None:
    """The epoch whose validation images keep the subject best: most images with a face found (a picture with no
    face kept nothing of it), then the lowest mean sim-score. `scores`: (epoch, sim-score per image, None where no
    face was found). None when no epoch had a face."""
    ranked = [((sum(s is None for s in row), sum(found) / len(found)), epoch) for epoch, row in scores
              if (found := [s for s in row if s is not None])]
    return min(ranked)[1] if ranked else None


def run_best_epoch(validations: list) -> int | None:
    """The best epoch of a run's validations (EpochValidation or their dicts): with several subjects the one whose
    worst-kept subject scores best (every subject kept), else best_epoch's."""
    rows = [v if isinstance(v, dict) else v.__dict__ for v in validations]
    judged = [(v["worst_score"], v["epoch"]) for v in rows if v.get("worst_score") is not None]
    if judged:
        return min(judged)[1]
    return best_epoch([(v["epoch"], v.get("scores") or []) for v in rows])


@dataclass
class SubjectReference:
    trigger: str
    dataset: str
    faces: object = None  # the dataset's face encodings (N, 128), None when it shows no face
    label: str | None = None  # what the pocket checker sees in most of its pictures (None: no checker or no one label)
    seen: int = 0  # of `pictures`, how many show `label`
    pictures: int = 0


@dataclass
class SubjectReferences:
    """What a run with several subjects scores its validation images against: each subject's faces, or on a base
    that ships a checker (builtin:pocket), the label each subject's dataset shows."""

    subjects: list[SubjectReference]
    checker: object = None  # the base's own checker (studio.scorers.PictureChecker), when it ships one

    def judge(self, images: list, owners: list[int | None]) -> tuple[list[float | None], list[dict], float | None]:
        """(score per image, per-subject summaries, the worst subject's score). `owners[i]`: the subject image i's
        prompt shows (None: the prompt with all of them). Faces: a subject's score is the mean sim-score of its images
        against its own dataset (`against`: against each other subject's, so one face bleeding into the other shows);
        the image with all of them scores its worst match. Pocket: a subject's score is the share of its images the
        checker does NOT see as its dataset's shape (`kept`, and `drawn_as`: how many look like each other's)."""
        from studio.faces import sim_scores

        n = len(self.subjects)
        per = [sim_scores(images, s.faces) if s.faces is not None else [None] * len(images) for s in self.subjects]
        scores = []
        for i, owner in enumerate(owners):
            own = [per[k][i] for k in (range(n) if owner is None else [owner])]
            scores.append(None if any(x is None for x in own) else max(own))
        labels = [label for label, _ in self.checker.labels(images)] if self.checker is not None else None
        summaries, worst = [], []
        for k, subject in enumerate(self.subjects):
            mine = [i for i, owner in enumerate(owners) if owner == k]
            row = {"trigger": subject.trigger, "dataset": subject.dataset, "images": mine, "score": None,
                   "against": {}, "label": subject.label}
            found = [per[k][i] for i in mine if per[k][i] is not None]
            if subject.faces is not None and mine:
                row["faces_found"] = len(found)
                row["score"] = sum(found) / len(found) if found else None
                for j, other in enumerate(self.subjects):
                    cross = [per[j][i] for i in mine if j != k and per[j][i] is not None]
                    if cross:
                        row["against"][other.trigger] = sum(cross) / len(cross)
            if labels is not None and subject.label is not None and mine:
                row["kept"] = sum(labels[i] == subject.label for i in mine)
                row["drawn_as"] = {o.trigger: sum(labels[i] == o.label for i in mine)
                                   for j, o in enumerate(self.subjects) if j != k and o.label is not None}
                row["pictures"] = len(mine)
                if row["score"] is None:  # no faces: the share not kept is the subject's score
                    row["score"] = 1 - row["kept"] / len(mine)
            if labels is not None:
                row["labels"] = [labels[i] for i in mine]
            summaries.append(row)
            worst.append(row["score"])
        return scores, summaries, (max(worst) if worst and all(w is not None for w in worst) else None)

    def notes(self) -> list[str]:
        out = []
        for s in self.subjects:
            if s.faces is not None:
                out.append(f"subject {s.trigger!r} ({s.dataset}): validation images scored against its faces and the "
                           f"other subjects'")
            elif s.label is not None:
                out.append(f"subject {s.trigger!r} ({s.dataset}) counts as {s.label}: the pocket checker sees a "
                           f"{s.label} in {s.seen} of its {s.pictures} pictures")
            else:
                out.append(f"subject {s.trigger!r} ({s.dataset}): no face in its dataset and no checker label, so its "
                           f"validation images get no score (the best epoch cannot weigh it)")
        return out


def subject_lines(validation: dict) -> list[str]:
    """One line per subject of a validation with several subjects: its score against its own dataset and the
    others', or the pocket checker's counts."""
    out = []
    for row in validation.get("subjects") or []:
        parts = [f"{row['trigger']} ({row['dataset']})"]
        if row.get("faces_found") is not None:
            own = f"{row['score']:.3f}" if row.get("score") is not None else "no face"
            parts.append(f"sim-score {own} against its own dataset")
            parts += [f"{v:.3f} against {t}'s" for t, v in row.get("against", {}).items()]
        elif row.get("kept") is not None:
            parts.append(f"drawn as its {row['label']} in {row['kept']}/{row['pictures']}")
            parts += [f"as {t}'s in {n}/{row['pictures']}" for t, n in row.get("drawn_as", {}).items()]
        else:
            parts.append("not scored (no face, no checker label)")
        out.append(", ".join(parts))
    return out


def subject_references(store, config: RunConfig, items: list, log):
    """What validation images are scored against: the dataset's face encodings (one subject with faces), or
    SubjectReferences: for several subjects, and for one without a face on a base that ships a checker
    (builtin:pocket: the share of pictures not drawn as the dataset's shape). None: nothing to score by."""
    from collections import Counter

    from PIL import Image

    from studio.evaluate.checking import TAUGHT_SHARE
    from studio.scorers import find_checker

    if not config.extra_subjects:
        found = reference_encodings([i.path for i in items])
        if found is not None:
            return found
        if find_checker(store.resolve(config.model)) is None:
            log.event("message", text="no face in the dataset: validation grids get no sim-scores")
            return None
    found = find_checker(store.resolve(config.model))
    checker = found.load(store) if found is not None else None
    refs = []
    for k, subject in enumerate(config.subjects):
        paths = [i.path for i in items if i.subject == k]
        ref = SubjectReference(subject.trigger, subject.dataset, reference_encodings(paths))
        if checker is not None:
            pictures = []
            for path in paths:
                with Image.open(path) as im:
                    pictures.append(im.convert("RGB"))
            counts = Counter(label for label, _ in checker.labels(pictures))
            label, seen = counts.most_common(1)[0] if counts else (None, 0)
            ref.label, ref.seen, ref.pictures = (label if seen > TAUGHT_SHARE * len(paths) else None), seen, len(paths)
        refs.append(ref)
    out = SubjectReferences(refs, checker)
    for note in out.notes():
        log.event("message", text=note)
    return out


def _generate(parts: Parts, prompts: list[str], seeds: list[int], size: int, steps: int, cfg: float, caption_fn,
              batch: int = 0):
    """Pictures of `prompts` (one each, prompt i from seed i) with the modules being trained, in one batch (or in
    batches of `batch` prompts: what fits the device). `cfg` 0:
    the family's guidance (CFG 7 for SD; FLUX.1-dev's distilled 3.5, schnell none). Prompts encoded before the text
    encoders went are passed encoded. Each picture starts from its own seed's noise, as when drawn alone."""
    import torch

    pipe = validation_pipeline(parts)
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    modules = [parts.denoiser, *parts.text_encoders]
    was_training = [m.training for m in modules]
    for m in modules:  # LoRA dropout is off while sampling
        m.eval()
    texts = [caption_fn(prompt) for prompt in prompts]
    each = [parts.family.sampling_kwargs(pipe, prompt=text, encoded=parts.encoded.get(text), cfg=cfg,
                                         distilled=parts.distilled_guidance, negative=parts.encoded.get(""))
            for text in texts]
    # prompts encoded on the CPU (text encoders the GPU could not hold: fit.text_on_cpu) go where the VAE is
    each = [{k: v.to(parts.vae.device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            for kwargs in each]
    group = batch or len(each)  # prompts drawn together (the memory plan counts as many)
    calls = [call for k in range(0, len(each), group) for call in _calls(each[k:k + group], generators[k:k + group])]
    dtype = next(parts.denoiser.parameters()).dtype
    half = dtype if dtype in (torch.float16, torch.bfloat16) else None
    try:  # with frozen weights in half precision, LoRA layers in float32 meet them through autocast
        with torch.no_grad(), torch.autocast(parts.denoiser.device.type, dtype=half, enabled=half is not None), \
                _decoded_outside_autocast(parts.vae):
            images = [image for kwargs, batch in calls
                      for image in pipe(num_inference_steps=steps, width=size, height=size, generator=batch,
                                        output_type="pil", **kwargs).images]
    finally:
        for m, mode in zip(modules, was_training):
            m.train(mode)
    return images


@contextmanager
def _decoded_outside_autocast(vae):
    """The VAE decodes in its own dtype with autocast off, whatever the denoiser ran in: under fp16 autocast SDXL's
    VAE (kept in float32 for this) overflows and the grids come out black or NaN."""
    import torch

    decode = vae.decode

    def plain(latents, *args, **kwargs):
        with torch.autocast(latents.device.type, enabled=False):
            return decode(latents.to(vae.dtype), *args, **kwargs)

    vae.decode = plain
    try:
        yield
    finally:
        del vae.decode  # the class's own again


def _calls(each: list[dict], generators: list) -> list[tuple[dict, list]]:
    """The pipeline calls that draw each prompt (the family's sampling_kwargs) from its generator: one call for all
    when they stack (prompts as a list, encoded prompts along the batch, lists of per-prompt states joined, what all
    share as it is), else one call a prompt (encoded prompts of different lengths, as Qwen-Image's)."""
    import torch

    out = {}
    for key in each[0]:
        values = [kwargs[key] for kwargs in each]
        if isinstance(values[0], str) or values[0] is None and all(v is None for v in values):
            out[key] = values if isinstance(values[0], str) else None
        elif isinstance(values[0], list):
            out[key] = [v for value in values for v in value]
        elif isinstance(values[0], torch.Tensor) and len({v.shape[1:] for v in values}) == 1:
            out[key] = torch.cat(values)
        elif not isinstance(values[0], torch.Tensor) and all(v == values[0] for v in values):
            out[key] = values[0]
        else:
            return [(kwargs, [generator]) for kwargs, generator in zip(each, generators)]
    return [(out, generators)]


def stitch(images: list):
    """Images side by side (seed 002's Prompt_N_stitched.png, one column per prompt)."""
    from PIL import Image

    width, height = sum(im.width for im in images), max(im.height for im in images)
    grid = Image.new("RGB", (width, height), "white")
    x = 0
    for im in images:
        grid.paste(im, (x, 0))
        x += im.width
    return grid


def _save_png(image, path: Path) -> None:
    with fileio.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def reference_encodings(image_paths: list[Path]):
    """The dataset's face encodings (N, 128) for sim-scores, or None when no image shows a face."""
    from studio.faces import encode_reference

    try:
        return encode_reference(image_paths)
    except ValueError:  # no picture with a face: this dataset gets no likeness scores, which the UI says
        return None


def validate(parts: Parts, config: RunConfig, epoch: int, run_dir: Path, reference, caption_fn, *,
             step: int | None = None, label: str | None = None, clip=None) -> EpochValidation:
    """Draw the validation pictures (draw) and score them (score), one after the other."""
    result, images = draw(parts, config, epoch, run_dir, caption_fn, step=step, label=label, clip=clip)
    score(result, images, reference, config)
    return result


def draw(parts: Parts, config: RunConfig, epoch: int, run_dir: Path, caption_fn, *, step: int | None = None,
         label: str | None = None, clip=None, pictures: list | None = None) -> tuple[EpochValidation, list]:
    """Generate each validation prompt with its fixed seed, all in one batch (or take `pictures`, drawn before),
    save the images and the grid (samples/<label>, by default epoch-NNN), measure their spread and, with `clip` (a
    loaded ClipModel), score each image against its prompt: what needs the device. Returns the result (not scored
    for faces yet: see score) and the pictures."""
    from studio.train.guard import spread

    prompts = config.prompts()
    label = label or f"epoch-{epoch:03d}"
    folder = Path(run_dir) / "samples" / label
    images = pictures if pictures is not None else _generate(
        parts, prompts, [config.validation_seed + i for i in range(len(prompts))], config.resolution,
        config.validation_steps, config.validation_cfg, caption_fn, config.validation_batch)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:02d}.png"
        _save_png(image, path)
        paths.append(str(path))
    grid_path = Path(run_dir) / "samples" / f"{label}.png"
    _save_png(stitch(images), grid_path)
    result = EpochValidation(epoch, str(grid_path), paths, prompts, step=step, spread=spread(images))
    if clip is not None:
        from studio.evaluate.scoring import clip_scores

        result.clip_scores = clip_scores(clip, images, prompts)
        result.mean_clip = sum(result.clip_scores) / len(result.clip_scores)
    return result, images


def score(result: EpochValidation, images: list, reference, config: RunConfig) -> None:
    """Score drawn pictures against `reference` (the dataset's faces, or SubjectReferences), into `result`: CPU work
    that needs no device, so a run does it beside its next steps."""
    if isinstance(reference, SubjectReferences):
        result.scores, result.subjects, result.worst_score = reference.judge(
            images, [owner for _, owner in config.subject_prompts()])
        if not any(r.faces is not None for r in reference.subjects):  # judged by the checker alone: no face looked for
            result.scores = []
        found = [s for s in result.scores if s is not None]
        result.mean_score = sum(found) / len(found) if found else None
    elif reference is not None:
        from studio.faces import sim_scores

        result.scores = sim_scores(images, reference)
        found = [s for s in result.scores if s is not None]
        result.mean_score = sum(found) / len(found) if found else None


def class_images(parts: Parts, config: RunConfig, cache_dir: Path, progress) -> list[Path]:
    """DreamBooth's prior-preservation images: `class_images` pictures of `class_prompt` by the base model,
    kept in a folder named by model, prompt and size so later runs reuse them and add only what is missing."""
    key = hashlib.sha256(json.dumps([parts.base_id, config.class_prompt, config.resolution]).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / "class_images" / key
    have = sorted(folder.glob("*.png"))
    for n in range(len(have), config.class_images):
        image, = _generate(parts, [config.class_prompt], [config.seed * 100_003 + n], config.resolution,
                           config.validation_steps, config.validation_cfg, lambda p: p)
        _save_png(image, folder / f"{n:05d}.png")
        progress((n + 1) / config.class_images, f"class image {n + 1}/{config.class_images}")
    fileio.write_text(folder / "prompt.txt", config.class_prompt)
    return sorted(folder.glob("*.png"))[:config.class_images]
