"""Procedural scenes for the pocket model: coloured shapes and cartoon human/dog faces, each with a caption, seeded."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Colours a shape can have: name -> RGB centre (each drawing jitters it a little so a word means a range).
SHAPE_COLORS = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 50),
    "blue": (30, 70, 220),
    "purple": (140, 40, 170),
}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")  # what the pocket model is trained on
NEW_SHAPES = ("star", "heart")  # drawn only for checkers and LoRA tests: the pocket model never sees them

HAIR_COLORS = {"black": (25, 20, 20), "brown": (110, 60, 25), "blonde": (235, 200, 90), "red": (190, 60, 20)}
SKIN_TONES = [(250, 215, 180), (225, 175, 130), (160, 105, 70)]
FUR_COLORS = {"brown": (140, 85, 40), "white": (235, 230, 220), "black": (40, 35, 35), "golden": (215, 160, 60)}
FACE_BACKGROUNDS = {"white": (245, 245, 245), "gray": (128, 128, 128), "blue": (150, 190, 235)}
KINDS = ("shape", "human", "dog")

# Words the captions use, plus spare ones a user may type; every one becomes a single token.
SPARE_WORDS = (
    "photo picture drawing image cartoon simple plain flat big small large tiny centered center left right top "
    "bottom one two and with of in the an is style art man woman person boy girl dog puppy cat animal face "
    "head portrait happy sad eyes ears nose snout smile smiling fur hair color colour shape pink brown gray grey "
    "light dark bright background"
).split()
# Rare words kept as single tokens that no caption uses, so a LoRA can teach a new concept by a trigger word.
RESERVED_WORDS = ("sks", "zq", "ohwx", "xyz", "qwe", "vlx", "plo", "trq")


@dataclass(frozen=True)
class Scene:
    image: Image.Image  # RGB, size x size
    caption: str
    kind: str  # "shape", "human" or "dog"
    label: str  # the shape name for kind "shape", else the kind ("human"/"dog")
    color: str  # the shape colour name, the hair colour (human) or the fur colour (dog)
    background: str


def caption_words() -> list[str]:
    """Every word a caption can contain, plus spare and reserved words, for the tokenizer."""
    words = ["a", "on", "background", "cartoon", "face", "of", "person", "with", "hair", "smiling", "dog", "fur",
             "its", "tongue", "out", "in"]
    words += [*SHAPE_COLORS, *BACKGROUNDS, *SHAPES, *NEW_SHAPES, *HAIR_COLORS, *FUR_COLORS, *FACE_BACKGROUNDS]
    return list(dict.fromkeys([*words, *SPARE_WORDS, *RESERVED_WORDS]))


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 18) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)


def _star_points(cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.42
        a = angle + i * math.pi / 5
        points.append((cx + radius * math.sin(a), cy - radius * math.cos(a)))
    return points


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    """Draw `shape` centred at (cx, cy) with half-size r (pixels) onto `draw`."""
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.9  # a square of the same half-size looks bigger than the circle; keep areas comparable
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        h = r * 1.05
        draw.polygon([(cx, cy - h), (cx + h * 0.98, cy + h * 0.8), (cx - h * 0.98, cy + h * 0.8)], fill=fill)
    elif shape == "star":
        draw.polygon(_star_points(cx, cy, r * 1.1, 0.0), fill=fill)
    elif shape == "heart":
        lobe = r * 0.52
        draw.ellipse([cx - 2 * lobe, cy - r * 0.75, cx, cy - r * 0.75 + 2 * lobe], fill=fill)
        draw.ellipse([cx, cy - r * 0.75, cx + 2 * lobe, cy - r * 0.75 + 2 * lobe], fill=fill)
        draw.polygon([(cx - 2 * lobe + 0.6, cy - r * 0.75 + lobe * 1.25), (cx + 2 * lobe - 0.6, cy - r * 0.75 + lobe * 1.25),
                      (cx, cy + r)], fill=fill)
    else:
        raise ValueError(f"`shape` must be one of {SHAPES + NEW_SHAPES} but is {shape!r}")


def shape_scene(rng: random.Random, size: int = 64, shape: str | None = None, color: str | None = None,
                background: str | None = None, caption_style: int | None = None) -> Scene:
    """One coloured shape on a plain background; unset choices are drawn from `rng`."""
    shape = shape or rng.choice(SHAPES)
    color = color or rng.choice(list(SHAPE_COLORS))
    background = background or rng.choice(list(BACKGROUNDS))
    for name, table in (("color", SHAPE_COLORS), ("background", BACKGROUNDS)):
        if locals()[name] not in table:
            raise ValueError(f"`{name}` must be one of {list(table)} but is {locals()[name]!r}")
    image = Image.new("RGB", (size, size), _jitter(BACKGROUNDS[background], rng, 8))
    r = size * rng.uniform(0.2, 0.32)
    cx = rng.uniform(r + 2, size - r - 2)
    cy = rng.uniform(r + 2, size - r - 2)
    draw_shape(ImageDraw.Draw(image), shape, cx, cy, r, _jitter(SHAPE_COLORS[color], rng))
    style = rng.randrange(4) if caption_style is None else caption_style
    caption = (f"a {color} {shape} on a {background} background", f"a {color} {shape}",
               f"a {color} {shape} on {background}", f"a {color} {shape} on a {background} background")[style]
    return Scene(image, caption, "shape", shape, color, background)


def human_face_scene(rng: random.Random, size: int = 64, hair: str | None = None, background: str | None = None,
                     smiling: bool | None = None) -> Scene:
    """A cartoon human face: round head, hair cap, two eyes, a smile or a straight mouth."""
    hair = hair or rng.choice(list(HAIR_COLORS))
    background = background or rng.choice(list(FACE_BACKGROUNDS))
    smiling = rng.random() < 0.6 if smiling is None else smiling
    s = size / 64
    image = Image.new("RGB", (size, size), _jitter(FACE_BACKGROUNDS[background], rng, 8))
    draw = ImageDraw.Draw(image)
    cx, cy = size / 2 + rng.uniform(-4, 4) * s, size / 2 + rng.uniform(-2, 4) * s
    rx, ry = rng.uniform(15, 18) * s, rng.uniform(17, 21) * s
    hair_rgb = _jitter(HAIR_COLORS[hair], rng, 12)
    draw.ellipse([cx - rx - 3 * s, cy - ry - 4 * s, cx + rx + 3 * s, cy + ry * 0.35], fill=hair_rgb)  # hair behind
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=_jitter(rng.choice(SKIN_TONES), rng, 8))
    draw.chord([cx - rx - 1 * s, cy - ry - 3 * s, cx + rx + 1 * s, cy + ry * 0.2], 180, 360, fill=hair_rgb)  # fringe
    ey = cy + ry * 0.05
    for ex in (cx - rx * 0.4, cx + rx * 0.4):
        draw.ellipse([ex - 2.5 * s, ey - 2.5 * s, ex + 2.5 * s, ey + 2.5 * s], fill=(30, 30, 40))
    my = cy + ry * 0.5
    if smiling:
        draw.arc([cx - rx * 0.45, my - 5 * s, cx + rx * 0.45, my + 3 * s], 15, 165, fill=(150, 30, 40), width=max(1, round(2 * s)))
    else:
        draw.line([cx - rx * 0.3, my, cx + rx * 0.3, my], fill=(150, 30, 40), width=max(1, round(2 * s)))
    caption = f"a cartoon face of a person with {hair} hair" + (", smiling" if smiling else "")
    caption += f", on a {background} background" if rng.random() < 0.7 else ""
    return Scene(image, caption, "human", "human", hair, background)


def dog_face_scene(rng: random.Random, size: int = 64, fur: str | None = None, background: str | None = None,
                   tongue: bool | None = None) -> Scene:
    """A cartoon dog face: head, floppy or pointed ears, a pale snout with a black nose, two eyes."""
    fur = fur or rng.choice(list(FUR_COLORS))
    background = background or rng.choice(list(FACE_BACKGROUNDS))
    tongue = rng.random() < 0.4 if tongue is None else tongue
    s = size / 64
    image = Image.new("RGB", (size, size), _jitter(FACE_BACKGROUNDS[background], rng, 8))
    draw = ImageDraw.Draw(image)
    cx, cy = size / 2 + rng.uniform(-4, 4) * s, size / 2 + rng.uniform(-2, 4) * s
    r = rng.uniform(14, 17) * s
    fur_rgb = _jitter(FUR_COLORS[fur], rng, 12)
    ear_rgb = tuple(int(c * 0.7) for c in fur_rgb) if fur != "black" else (80, 70, 70)
    if rng.random() < 0.6:  # floppy ears hang beside the head
        for side in (-1, 1):
            ex = cx + side * r * 0.95
            draw.ellipse([ex - 6 * s, cy - r * 0.8, ex + 6 * s, cy + r * 0.7], fill=ear_rgb)
    else:  # pointed ears stand on top
        for side in (-1, 1):
            bx = cx + side * r * 0.6
            draw.polygon([(bx - 7 * s, cy - r * 0.5), (bx + 7 * s, cy - r * 0.5), (bx + side * 3 * s, cy - r * 1.5)], fill=ear_rgb)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r * 0.95], fill=fur_rgb)
    snout = (250, 240, 225) if fur != "white" else (250, 220, 200)
    draw.ellipse([cx - r * 0.55, cy + r * 0.05, cx + r * 0.55, cy + r * 0.85], fill=snout)
    draw.ellipse([cx - 4 * s, cy + r * 0.1, cx + 4 * s, cy + r * 0.1 + 5 * s], fill=(20, 15, 15))
    if tongue:
        draw.ellipse([cx - 3 * s, cy + r * 0.6, cx + 3 * s, cy + r * 0.6 + 8 * s], fill=(235, 90, 120))
    eye_rgb = (20, 20, 25) if fur != "black" else (240, 240, 240)
    for ex in (cx - r * 0.4, cx + r * 0.4):
        draw.ellipse([ex - 2.5 * s, cy - r * 0.35 - 2.5 * s, ex + 2.5 * s, cy - r * 0.35 + 2.5 * s], fill=eye_rgb)
    caption = f"a cartoon dog face with {fur} fur" + (", with its tongue out" if tongue else "")
    caption += f", on a {background} background" if rng.random() < 0.7 else ""
    return Scene(image, caption, "dog", "dog", fur, background)


def random_scene(rng: random.Random, size: int = 64, face_fraction: float = 0.4) -> Scene:
    """A shape scene, or with probability `face_fraction` a human or dog face (half each)."""
    if not 0 <= face_fraction <= 1:
        raise ValueError(f"`face_fraction` must be in [0, 1] but is {face_fraction}")
    u = rng.random()
    if u < face_fraction / 2:
        return human_face_scene(rng, size)
    if u < face_fraction:
        return dog_face_scene(rng, size)
    return shape_scene(rng, size)


def make_scenes(count: int, seed: int = 0, size: int = 64, face_fraction: float = 0.4) -> list[Scene]:
    """`count` scenes, the same for the same seed."""
    if count < 0:
        raise ValueError(f"`count` must be non-negative but is {count}")
    rng = random.Random(seed)
    return [random_scene(rng, size, face_fraction) for _ in range(count)]
