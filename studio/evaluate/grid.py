"""The comparison grid: rows prompt x seed, columns variants, each picture captioned with its scores ("variant : 0.4181",
"variant : no face", "variant : red star")."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

from studio.evaluate.scoring import ImageScore

CAPTION_H = 22  # px under each picture
HEADER_H = 28  # px above the first row: the variants
LABEL_W = 220  # px left of each row: prompt and seed
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
ALIKE_INK = (0, 110, 40)  # a caption at or below the tolerance, or drawn as the prompt asks
WRONG_INK = (170, 30, 30)  # the pocket checker sees something else than the prompt asks
MISSING = (225, 225, 225)


def cell_width(image_width: int) -> int:
    """Small pictures are shown larger (64 px builtins), large ones smaller (a 512 px grid of 80 stays readable)."""
    return max(160, min(256, image_width))


def make_grid(rows: list[ImageScore], images: dict[tuple[str, str, int], Image.Image], variants: list[str],
              prompts: list[str], seeds: list[int], tolerance: float) -> Image.Image:
    """The grid as one RGB picture. `images` maps (variant, prompt, seed) to its picture; a cell with no picture
    (a cancelled run) is left grey."""
    # 1. Geometry from the first picture (every variant uses the same size)
    if not variants or not prompts or not seeds:
        raise ValueError(f"`variants`, `prompts` and `seeds` must not be empty but are {variants!r}, {prompts!r}, "
                         f"{seeds!r}")
    first = next(iter(images.values()), None)
    w = cell_width(first.width if first is not None else 160)
    h = round(w * first.height / first.width) if first is not None else w
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    canvas = Image.new("RGB", (LABEL_W + w * len(variants), HEADER_H + (h + CAPTION_H) * len(prompts) * len(seeds)),
                       BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    # 2. Variant headers
    for j, variant in enumerate(variants):
        draw.text((LABEL_W + j * w + w / 2, HEADER_H / 2), variant, fill=INK, font=font, anchor="mm")

    # 3. One row per prompt and seed: the label, then each variant's picture and caption
    by_cell = {(r.variant, r.prompt, r.seed): r for r in rows}
    for i, (prompt, seed) in enumerate((p, s) for p in prompts for s in seeds):
        top = HEADER_H + i * (h + CAPTION_H)
        label = "\n".join(textwrap.wrap(f"'{prompt}'", 28)[:4] + [f"seed {seed}"])
        draw.multiline_text((8, top + 8), label, fill=INK, font=small, spacing=3)
        for j, variant in enumerate(variants):
            left = LABEL_W + j * w
            picture = images.get((variant, prompt, seed))
            row = by_cell.get((variant, prompt, seed))
            if picture is None or row is None:
                draw.rectangle((left + 2, top + 2, left + w - 3, top + h - 3), fill=MISSING)
                continue
            resample = Image.Resampling.NEAREST if picture.width < w else Image.Resampling.LANCZOS
            canvas.paste(picture.convert("RGB").resize((w, h), resample), (left, top))
            alike = row.sim_score is not None and row.sim_score <= tolerance
            ink = ALIKE_INK if alike or (not row.likeness and row.as_asked) else (
                WRONG_INK if not row.likeness and row.as_asked is False else INK)
            caption, face = _fit(draw, row, w - 6, font, small)
            draw.text((left + w / 2, top + h + CAPTION_H / 2), caption, fill=ink, font=face, anchor="mm")
    return canvas


def _fit(draw: ImageDraw.ImageDraw, row: ImageScore, width: int, font, small) -> tuple[str, object]:
    """The caption and font that fit under the picture: seed 000's "variant : score", else the scores alone (the
    column header names the variant), in the small font if need be."""
    scores = row.caption.split(" : ", 1)[-1]
    for text, face in ((row.caption, font), (scores, font), (scores, small)):
        if draw.textlength(text, font=face) <= width:
            return text, face
    return scores, small
