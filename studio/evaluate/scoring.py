"""Scores for generated images: sim-score against the subject's reference set, CLIP score with the prompt, summaries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.faces.identity import encode_reference, sim_scores


@dataclass
class ImageScore:
    """One cell of the grid: which variant, prompt and seed made it, and how it scored."""

    variant: str
    prompt: str
    seed: int
    file: str  # relative to the evaluation's folder
    sim_score: float | None  # seed 000's sim-score (mean face distance to the reference; lower is more alike)
    clip_score: float | None = None  # torchmetrics' CLIP score with the prompt, in [0, 100]; None without CLIP

    @property
    def caption(self) -> str:
        """Seed 000's label under each picture: "a-312 : 0.4181", or "ctrl : no face"."""
        return f"{self.variant} : {'no face' if self.sim_score is None else f'{self.sim_score:.4f}'}"


@dataclass
class GroupSummary:
    """The scores of one variant, over every prompt (prompt is None) or over one prompt."""

    variant: str
    prompt: str | None
    images: int
    faces: int  # images where a face was found
    no_face: int  # images where none was (seed 000 counted them apart and left them out of the means)
    alike: int  # faces with a sim-score at or below the tolerance
    mean_sim: float | None  # over images with a face
    best_sim: float | None
    mean_clip: float | None


@dataclass(frozen=True)
class Reference:
    encodings: np.ndarray  # (K, 128) the subject's faces
    source: str  # "dataset NAME (K faces)" or "folder PATH (K faces)"


def load_reference(settings, reference: str) -> Reference:
    """The subject's encodings from a dataset (by name, as listed, or a folder path): a prepared dataset's stored
    encodings, else the faces found in a folder's photos."""
    from studio.data.library import find_dataset, read_dataset

    folder = find_dataset(settings, reference, argument="reference")
    if not (folder / "dataset.json").is_file():
        encodings = encode_reference(folder)  # ValueError when no photo has a face
        return Reference(encodings, f"folder {folder} ({len(encodings)} faces)")
    dataset = read_dataset(folder)
    encodings = dataset.encodings
    if len(encodings) == 0:
        raise ValueError(f"`reference` dataset {dataset.name!r} has no picture with a face")
    return Reference(encodings, f"dataset {dataset.name} ({len(encodings)} faces)")


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
        out.append(GroupSummary(
            variant=variant, prompt=prompt, images=len(chosen), faces=len(sims), no_face=len(chosen) - len(sims),
            alike=sum(s <= tolerance for s in sims),
            mean_sim=float(np.mean(sims)) if sims else None, best_sim=float(min(sims)) if sims else None,
            mean_clip=float(np.mean(clips)) if clips else None,
        ))
    return out


def format_table(summaries: list[GroupSummary], tolerance: float) -> str:
    """The per-variant summary as a fixed-width text table (the command line prints it)."""
    def number(x: float | None, digits: int) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    header = ("variant", "images", "faces", "no face", f"<= {tolerance:g}", "mean sim", "best sim", "mean CLIP")
    lines = [(s.variant, str(s.images), str(s.faces), str(s.no_face), str(s.alike), number(s.mean_sim, 4),
              number(s.best_sim, 4), number(s.mean_clip, 2)) for s in summaries]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))) for row in [header, *lines])
