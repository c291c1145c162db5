"""A1111-style "parameters" text: write it into PNGs, read it back (ours or A1111's), and turn it into a request."""

from __future__ import annotations

import re
from pathlib import Path

from studio import __version__, fileio
from studio.generate.request import LoraChoice
from studio.models.families.samplers import DDPM_SAMPLERS, FLOW_SAMPLERS

_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-+]?\d*\.?\d+))?(?::[^>]*)?>")
# One "Key: value" pair of the last line; a value in quotes may hold commas (A1111's own pattern).
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def split_lora_tags(prompt: str) -> tuple[str, list[LoraChoice]]:
    """Take A1111's `<lora:name:weight>` tags out of a prompt: (prompt without them, the LoRAs they name)."""
    loras = [LoraChoice(m.group(1), float(m.group(2)) if m.group(2) else 1.0) for m in _LORA_TAG.finditer(prompt)]
    clean = re.sub(r"\s{2,}", " ", _LORA_TAG.sub("", prompt)).strip(" ,")
    return clean, loras


def _fmt(value: float) -> str:
    return f"{value:g}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_parameters(*, prompt: str, negative_prompt: str, fields: dict[str, object]) -> str:
    """Three parts as A1111 writes them: prompt, `Negative prompt: ...`, and one line of `Key: value` pairs."""
    parts = []
    for key, value in fields.items():
        if value is None or value == "":
            continue
        text = _fmt(value) if isinstance(value, float) else str(value)
        parts.append(f"{key}: {_quote(text) if ',' in text or ':' in text else text}")
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(parts))
    return "\n".join(lines)


def format_control_unit(unit, control_mode: str) -> str:
    """One `ControlNet N` value as A1111 writes it: "Module: canny, Model: ..., Weight: 1, ..., Control Mode: ..."."""
    pairs = [("Module", unit.module), ("Model", unit.model), ("Weight", _fmt(unit.weight)),
             ("Resize Mode", "Just Resize"),  # control images are stretched to the output size
             ("Processor Res", unit.processor_res),
             ("Threshold A", unit.threshold_a), ("Threshold B", unit.threshold_b),
             ("Guidance Start", _fmt(unit.guidance_start)), ("Guidance End", _fmt(unit.guidance_end)),
             ("Control Mode", control_mode)]
    return ", ".join(f"{key}: {_fmt(v) if isinstance(v, float) else v}" for key, v in pairs if v is not None)


def parse_control_units(parsed: dict) -> list[dict[str, str]]:
    """The `ControlNet 0`, `ControlNet 1`, ... fields of parsed parameters, each as {"Module": ..., "Weight": ...}."""
    units = []
    while (value := parsed.get(f"ControlNet {len(units)}")) is not None:
        pairs = (part.split(": ", 1) for part in value.split(", "))
        units.append({p[0].strip(): p[1].strip() for p in pairs if len(p) == 2})
    return units


def parse_parameters(text: str) -> dict:
    """Parse A1111 parameters text into {"prompt", "negative_prompt", and each Key: value of the last line}."""
    lines = text.strip().split("\n")
    last = lines[-1].strip()
    fields: dict[str, str] = {}
    if len(_PARAM.findall(last)) >= 3:  # a settings line, not a prompt line that happens to contain a colon
        lines = lines[:-1]
        for key, value in _PARAM.findall(last):
            if value.startswith('"') and value.endswith('"'):
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            fields[key.strip()] = value.strip()
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    return {"prompt": "\n".join(prompt_lines).strip(), "negative_prompt": "\n".join(negative_lines).strip(), **fields}


def request_fields(parsed: dict) -> dict:
    """Turn parsed parameters into GenerationRequest keyword arguments (those it understands)."""
    out: dict = {"prompt": parsed.get("prompt", ""), "negative_prompt": parsed.get("negative_prompt", "")}
    if "Steps" in parsed:
        out["steps"] = int(parsed["Steps"])
    if "CFG scale" in parsed:
        out["cfg"] = float(parsed["CFG scale"])
    if "Seed" in parsed:
        out["seed"] = int(parsed["Seed"])
    if "Size" in parsed and (m := _SIZE.match(parsed["Size"])):
        out["width"], out["height"] = int(m.group(1)), int(m.group(2))
    if "Distilled CFG Scale" in parsed:  # Forge's FLUX.1-dev guidance
        out["distilled_cfg"] = float(parsed["Distilled CFG Scale"])
    if "Sampler" in parsed:
        sampler = parsed["Sampler"]
        flux = "Distilled CFG Scale" in parsed or parsed.get("Schedule type", "").lower() in ("simple", "beta")
        known = FLOW_SAMPLERS if flux and sampler in ("Euler",) else DDPM_SAMPLERS
        # A1111 1.9+ and Forge write the schedule apart: "Sampler: DPM++ 2M, Schedule type: Karras".
        schedule = parsed.get("Schedule type", "").strip().title()
        if schedule and schedule != "Simple" and f"{sampler} {schedule}" in known:
            sampler = f"{sampler} {schedule}"
        if sampler not in known:
            raise ValueError(f"the image's sampler {sampler!r} is not available here; valid samplers are: "
                             f"{', '.join(known)}")
        out["sampler"] = sampler
    # A txt2img picture with hires fix keys: its denoising strength is the hires pass's (A1111's own paste rule).
    hires = any(k in parsed for k in ("Hires upscale", "Hires resize", "Hires upscaler"))
    if "Denoising strength" in parsed:
        out["hires_strength" if hires else "strength"] = float(parsed["Denoising strength"])
    if "Hires upscale" in parsed:
        out["hires_scale"] = float(parsed["Hires upscale"])
    elif "Hires resize" in parsed:
        out["hires_scale"] = _hires_resize_scale(parsed["Hires resize"], out.get("width"), out.get("height"))
    if "Hires steps" in parsed:
        out["hires_steps"] = int(parsed["Hires steps"])
    if "Hires upscaler" in parsed:
        out["hires_upscaler"] = parsed["Hires upscaler"]
    if "Mask blur" in parsed:
        out["mask_blur"] = int(float(parsed["Mask blur"]))
    if "Inpaint area" in parsed:
        out["inpaint_area"] = "only masked" if parsed["Inpaint area"].lower() == "only masked" else "whole"
    if "Masked area padding" in parsed:
        out["inpaint_padding"] = int(float(parsed["Masked area padding"]))
    return out


def _hires_resize_scale(resize: str, width: int | None, height: int | None) -> float:
    """A1111's `Hires resize: WxH` (0 keeps the aspect) as the scale of the first pass's size it is; a resize that
    changes the aspect has no scale, and is refused by name rather than guessed."""
    m = _SIZE.match(resize)
    if not m or not width or not height:
        raise ValueError(f"the image's `Hires resize` {resize!r} cannot be read without its `Size`")
    to_w, to_h = int(m.group(1)), int(m.group(2))
    scales = [v / base for v, base in ((to_w, width), (to_h, height)) if v]
    if not scales or abs(scales[0] - scales[-1]) > 1e-3:
        raise ValueError(f"the image's `Hires resize` {resize} changes the aspect of its {width}x{height} first "
                         f"pass; only a scale (`Hires upscale`) is supported here")
    return round(scales[0], 3)


def read_png_parameters(source) -> str:
    """The parameters text of a PNG (path or PIL image); ValueError when it has none."""
    from PIL import Image

    image = Image.open(source) if isinstance(source, (str, Path)) else source
    text = image.info.get("parameters")
    if not text:
        raise ValueError("this image carries no generation parameters (no PNG `parameters` text)")
    return text


def add_fields(text: str, fields: dict[str, object]) -> str:
    """A picture's parameters `text` ("" when it has none) with `fields` added to its settings line (replacing keys
    it already has) and `Version` last, naming this studio: how a clean-up step records itself."""
    parsed = parse_parameters(text) if text.strip() else {"prompt": "", "negative_prompt": ""}
    prompt, negative = parsed.pop("prompt"), parsed.pop("negative_prompt")
    parsed.pop("Version", None)
    merged = {**parsed, **fields, "Version": f"likeness-studio {__version__}"}
    return format_parameters(prompt=prompt, negative_prompt=negative, fields=merged)


def save_png(image, parameters: str, folder: Path, name) -> Path:
    """Write `image` as folder/NNNNN-<name>.png (the first free number, never overwriting) with its A1111
    `parameters` text."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    path = fileio.reserve_unique(folder, str(name), ".png")
    with fileio.fill_reserved(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path


def past_outputs(outputs_dir: Path, limit: int = 60) -> list[Path]:
    """The pictures under workspace/outputs/ (a folder a day), newest first, at most `limit`: what the outputs
    browser shows (each PNG carries the parameters it was made with)."""
    found = [p for p in Path(outputs_dir).glob("*/*.png") if not p.name.startswith(".")] if Path(
        outputs_dir).is_dir() else []
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)[:limit]
