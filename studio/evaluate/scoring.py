"""Scores for generated images: sim-score against the subject's reference set, CLIP score with the prompt, the pocket
checker's verdict, and their summaries."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from studio.faces.identity import sim_scores


@dataclass
class ImageScore:
    """One cell of the grid: which variant, prompt and seed made it, and how it scored."""

    variant: str
    prompt: str
    seed: int
    file: str  # relative to the evaluation's folder
    sim_score: float | None  # seed 000's sim-score (mean face distance to the reference; lower is more alike)
    clip_score: float | None = None  # torchmetrics' CLIP score with the prompt, in [0, 100]; None without CLIP
    likeness: bool = True  # whether the picture was scored for likeness (False: no reference with faces)
    # The pocket checker's verdict (builtin:pocket bases only; None otherwise): what it sees and what was asked
    drawn: str | None = None  # the classifier's label: a shape, "human" or "dog"
    drawn_confidence: float | None = None
    drawn_color: str | None = None  # the foreground's colour name; None when nothing stands out
    asked_label: str | None = None  # what the prompt asks for (a trigger word read as the shape its LoRA learnt)
    asked_color: str | None = None
    label_ok: bool | None = None  # drawn == asked_label; None when the prompt asks for no shape the checker knows
    color_ok: bool | None = None  # drawn_color == asked_color; None when the prompt names no colour
    sim_against: dict = field(default_factory=dict)  # also_against dataset -> sim-score (None: no face found)

    @property
    def no_face(self) -> bool:
        return self.likeness and self.sim_score is None

    @property
    def as_asked(self) -> bool | None:
        """Drawn as the prompt asks: the label, and the colour where one is asked; None when nothing is asked."""
        if self.label_ok is None:
            return None
        return self.label_ok and self.color_ok is not False

    @property
    def caption(self) -> str:
        """Seed 000's label under each picture, "a-312 : 0.4181" or "ctrl : no face", then what pocket drew
        ("zq : red star"); the CLIP score when there is nothing else."""
        parts = []
        if self.likeness:
            parts.append("no face" if self.sim_score is None else f"{self.sim_score:.4f}")
        if self.drawn is not None:
            parts.append(" ".join(p for p in (self.drawn_color, self.drawn) if p))
        if not parts and self.clip_score is not None:
            parts.append(f"CLIP {self.clip_score:.1f}")
        return f"{self.variant} : {', '.join(parts)}" if parts else self.variant


@dataclass
class GroupSummary:
    """The scores of one variant, over every prompt (prompt is None) or over one prompt."""

    variant: str
    prompt: str | None
    images: int
    faces: int  # images where a face was found
    no_face: int  # images scored for likeness where none was (seed 000 counted them apart, out of the means)
    alike: int  # faces with a sim-score at or below the tolerance
    mean_sim: float | None  # over images with a face
    best_sim: float | None
    mean_clip: float | None
    # The pocket checker: over images whose prompt asks for a label (asked) or a colour (color_asked)
    asked: int = 0
    label_right: int = 0
    color_asked: int = 0
    color_right: int = 0
    as_asked: int = 0  # label right, and the colour where one is asked
    drawn: dict = field(default_factory=dict)  # label -> images, most seen first (every checked image)


@dataclass(frozen=True)
class Reference:
    encodings: np.ndarray  # (K, 128) the subject's faces; K = 0: no likeness score
    source: str  # "dataset NAME (K faces)", "folder PATH (K faces)", or "" when no reference was given
    note: str = ""  # why there is no likeness score, when there is none

    @property
    def scores(self) -> bool:
        return len(self.encodings) > 0


NO_REFERENCE = "No reference chosen: no likeness (sim-score)."


def load_reference(settings, reference: str) -> Reference:
    """The subject's encodings from a dataset (by name, as listed, or a folder path): a prepared dataset's stored
    encodings, else the faces found in a folder's photos. No reference, or one without a face (a concept or style
    set), gives no encodings and a note saying why; a reference that is not found is a ValueError."""
    from studio.data.library import find_dataset, read_dataset

    if not (reference or "").strip():
        return Reference(np.zeros((0, 128)), "", NO_REFERENCE)
    folder = find_dataset(settings, reference, argument="reference")
    if (folder / "dataset.json").is_file():
        dataset = read_dataset(folder)
        encodings, source, looked = dataset.encodings, f"dataset {dataset.name}", len(dataset.images)
    else:
        encodings, looked = _folder_encodings(folder)
        source = f"folder {folder}" if reference.strip() != folder.name else f"dataset {folder.name}"
    if len(encodings) == 0:
        return Reference(encodings, f"{source} (no faces)",
                         f"No likeness score: reference {source} has no picture with a face ({looked} looked at); "
                         f"a set of shapes, objects or a style has no one to compare with.")
    return Reference(encodings, f"{source} ({len(encodings)} faces)")


def _folder_encodings(folder) -> tuple[np.ndarray, int]:
    """Each picture's main face encoding (pictures without a face are skipped), and how many pictures were read."""
    from PIL import Image, ImageOps

    from studio.data.library import IMAGE_SUFFIXES
    from studio.faces.detect import detect_faces, main_face

    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    rows = []
    for path in paths:
        with Image.open(path) as im:
            face = main_face(detect_faces(ImageOps.exif_transpose(im).convert("RGB")))
        if face is not None:
            rows.append(face.encoding)
    return (np.stack(rows) if rows else np.zeros((0, 128))), len(paths)


def face_scores(images, reference: Reference) -> list[float | None]:
    """Sim-score of each PIL image against the reference; None when no face is found."""
    return sim_scores(images, reference.encodings)


def clip_scores(clip, images, prompts: list[str], batch_size: int = 16) -> list[float]:
    """torchmetrics' CLIP score of each (image, prompt) pair: 100 * max(cos(image embedding, text embedding), 0).

    `clip` is a loaded studio.models.clip.ClipModel. Prompts longer than the text tower's window are cut, as
    torchmetrics does.
    """
    import torch

    if len(images) != len(prompts):
        raise ValueError(f"`images` and `prompts` must pair up but hold {len(images)} and {len(prompts)}")
    model, device = clip.model, clip.device
    max_length = model.config.text_config.max_position_embeddings
    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch_images = [im.convert("RGB") for im in images[start:start + batch_size]]
            batch_prompts = list(prompts[start:start + batch_size])
            pixels = clip.image_processor(images=batch_images, return_tensors="pt")["pixel_values"].to(device)
            text = clip.tokenizer(batch_prompts, padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt").to(device)
            # The projections of the pooled outputs, as CLIPModel.get_image_features/get_text_features compute them.
            image_embeds = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)  # (B, D)
            text_embeds = model.text_projection(
                model.text_model(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).pooler_output)
            image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
            text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
            cosine = (image_embeds * text_embeds).sum(dim=-1)  # (B,)
            scores += (100 * cosine.clamp(min=0)).float().cpu().tolist()
    return scores


def summarise(rows: list[ImageScore], variants: list[str], prompts: list[str] | None,
              tolerance: float) -> list[GroupSummary]:
    """One summary per variant (prompts=None), or one per prompt per variant, in the order given."""
    groups = [(v, None) for v in variants] if prompts is None else [(v, p) for p in prompts for v in variants]
    out = []
    for variant, prompt in groups:
        chosen = [r for r in rows if r.variant == variant and (prompt is None or r.prompt == prompt)]
        sims = [r.sim_score for r in chosen if r.sim_score is not None]
        clips = [r.clip_score for r in chosen if r.clip_score is not None]
        checked = [r for r in chosen if r.drawn is not None]
        asked = [r for r in checked if r.label_ok is not None]
        colored = [r for r in checked if r.color_ok is not None]
        out.append(GroupSummary(
            variant=variant, prompt=prompt, images=len(chosen), faces=len(sims),
            no_face=sum(r.no_face for r in chosen), alike=sum(s <= tolerance for s in sims),
            mean_sim=float(np.mean(sims)) if sims else None, best_sim=float(min(sims)) if sims else None,
            mean_clip=float(np.mean(clips)) if clips else None,
            asked=len(asked), label_right=sum(bool(r.label_ok) for r in asked), color_asked=len(colored),
            color_right=sum(bool(r.color_ok) for r in colored), as_asked=sum(bool(r.as_asked) for r in asked),
            drawn=dict(Counter(r.drawn for r in checked).most_common()),
        ))
    return out


def _share(right: int, of: int) -> str:
    return f"{right}/{of}" if of else "-"


def _drawn(counts: dict) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items()) or "-"


def summary_table(summaries: list[GroupSummary], tolerance: float, *, likeness: bool, clip: bool, checker: bool,
                  text: bool = False) -> tuple[list[str], list[list]]:
    """The per-variant summary as headers and rows, with only the columns of the scores the evaluation has (the
    tab's table; `text` writes numbers with fixed digits, for the command line's)."""
    def number(x: float | None, digits: int):
        return "-" if x is None else f"{x:.{digits}f}" if text else round(x, digits)

    headers = ["variant", "images"]
    rows = [[s.variant, s.images] for s in summaries]
    if likeness:
        headers += ["faces found", "no face", f"sim <= {tolerance:g}", "mean sim-score", "best sim-score"]
        for row, s in zip(rows, summaries):
            row += [s.faces, s.no_face, s.alike, number(s.mean_sim, 4), number(s.best_sim, 4)]
    if checker:
        headers += ["drawn as asked", "shape right", "colour right", "drawn (pocket checker)"]
        for row, s in zip(rows, summaries):
            row += [_share(s.as_asked, s.asked), _share(s.label_right, s.asked), _share(s.color_right, s.color_asked),
                    _drawn(s.drawn)]
    if clip:
        headers.append("mean CLIP score")
        for row, s in zip(rows, summaries):
            row.append(number(s.mean_clip, 2))
    return headers, rows


def format_table(summaries: list[GroupSummary], tolerance: float, *, likeness: bool = True, clip: bool = True,
                 checker: bool = False) -> str:
    """The per-variant summary as a fixed-width text table (the command line prints it)."""
    headers, rows = summary_table(summaries, tolerance, likeness=likeness, clip=clip, checker=checker, text=True)
    lines = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [headers, *lines]) for i in range(len(headers))]
    text = {i for i, h in enumerate(headers) if h in ("variant", "drawn (pocket checker)")}  # left-aligned
    return "\n".join("  ".join(cell.ljust(w) if i in text else cell.rjust(w)
                                for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in [headers, *lines])


def against_lines(rows: list[ImageScore], variants: list[str], reference: str) -> list[str]:
    """Per variant, its pictures' mean sim-score against the reference and against each `also_against` dataset
    (lower is more alike): a variant that keeps every subject is close to the one its prompt names, and one face
    bleeding into another shows as a low score against the other's. Empty when nothing was scored against others."""
    others = list(dict.fromkeys(k for r in rows for k in r.sim_against))
    out = []
    for variant in variants if others else []:
        mine = [r for r in rows if r.variant == variant]
        parts = []
        for name, values in [(reference, [r.sim_score for r in mine]),
                             *((o, [r.sim_against.get(o) for r in mine]) for o in others)]:
            found = [v for v in values if v is not None]
            parts.append(f"{name} {sum(found) / len(found):.3f} ({len(found)} faces)" if found else f"{name} no face")
        out.append(f"{variant}: mean sim-score against " + ", ".join(parts))
    return out
