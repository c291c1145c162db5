"""Builtin models: each family's tiny pipelines (built from configs with a fixed seed by the family's module), a tiny
ControlNet and CLIP, for offline use and tests.

They draw noise (random weights) but exercise every code path a real model does. `builtin:pocket` is different:
its trained weights ship in models/builtin/pocket/ and are loaded, never built.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from studio import fileio
from studio.models import families

BUILDER_VERSION = 4  # bump when a builder changes, so saved copies are rebuilt
SHIPPED = ("pocket",)  # trained by the project and committed; cannot be rebuilt on the fly
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "models" / "builtin"  # the checkout's own models/builtin/
# What a form should start with for a builtin whose family's defaults do not fit it: pocket was trained on captions
# of coloured shapes and cartoon faces at CFG 4 (docs/pocket.md); the random tiny ones draw noise whatever the prompt.
# Evaluate's prompts for pocket: what it knows, or, with LoRAs whose trigger word is known, one known prompt (did the
# LoRA break it?) and the trigger in two colours; four seeds, as 64 px pictures cost little but vary by seed.
HINTS = {
    "pocket": {"prompt": "a red circle on a white background", "cfg": 4.0,
               "animal_prompt": "a cartoon dog face with brown fur, on a white background",
               "evaluate_prompts": ("a red circle on a white background", "a blue square on a black background",
                                    "a cartoon dog face with brown fur"),
               "evaluate_trigger_prompts": ("a red circle on a white background",
                                            "a red {trigger} on a white background",
                                            "a blue {trigger} on a black background"),
               "evaluate_seeds": (0, 1, 2, 3)},
}
_build_lock = threading.Lock()


def builtin_names() -> list[str]:
    return sorted([*_builders(), *SHIPPED])


def shipped_folder(name: str, models_dir: Path) -> Path | None:
    """Where a shipped builtin's weights are: the user's models/builtin/, else the ones beside this checkout."""
    for folder in (models_dir / "builtin" / name, SHIPPED_DIR / name):
        if (folder / "model_index.json").is_file():
            return folder
    return None


def ensure_builtin(name: str, models_dir: Path) -> Path:
    """Return the folder of builtin model `name`, building and saving it under models/builtin/ on first use."""
    folder = models_dir / "builtin" / name
    if name in SHIPPED:
        found = shipped_folder(name, models_dir)
        if found is None:
            raise ValueError(f"builtin model {name!r} is not installed: expected its weights in {folder} "
                             f"or {SHIPPED_DIR / name}")
        return found
    if name not in _builders():
        raise ValueError(f"unknown builtin model {name!r}; builtin models are: {', '.join(builtin_names())}")
    stamp = folder / "studio_builtin.json"
    with _build_lock:
        if stamp.is_file() and json.loads(stamp.read_text()).get("version") == BUILDER_VERSION:
            return folder
        with fileio.atomic_dir(folder) as tmp:  # other processes see all of the model or none
            _builders()[name](tmp)
            (tmp / "studio_builtin.json").write_text(json.dumps({"name": name, "version": BUILDER_VERSION}))
    return folder


def _build_tiny_controlnet(out: Path) -> None:
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    controlnet = ControlNetModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=32,  # pairs with builtin:tiny (SD 1.x)
        conditioning_embedding_out_channels=(16, 32),  # one stride-2 step: matches the tiny VAE's factor 2
    )
    # diffusers starts a ControlNet's output convolutions at zero (training grows them), so an untrained one changes
    # nothing. Seeded weights in them make the tiny ControlNet steer generation, so tests can see it is applied.
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                  controlnet.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for conv in zero_convs:
            torch.nn.init.normal_(conv.weight, std=0.2)
    controlnet.save_pretrained(out, safe_serialization=True)


def _build_tiny_clip(out: Path) -> None:
    """A tiny CLIP (text + vision towers, random seeded weights) for offline CLIP-score tests: its scores mean nothing."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig

    from studio.models.tiny_parts import TINY_WORDS, clip_text_config
    from studio.models.tokenizer import write_clip_tokenizer

    vocab_size = write_clip_tokenizer(out, TINY_WORDS)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              image_size=32, patch_size=8, projection_dim=32)
    config = CLIPConfig(text_config=clip_text_config(vocab_size).to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    torch.manual_seed(0)
    model = CLIPModel(config)
    # Random towers embed images and prompts in unrelated directions, so most cosines would be negative and every
    # CLIP score 0. One shared offset after both final layer norms, through one shared projection, puts the pairs
    # at a positive cosine that still moves with the image and the prompt, so tests can see scores change.
    with torch.no_grad():
        offset = torch.randn(32)
        model.vision_model.post_layernorm.bias.copy_(offset)
        model.text_model.final_layer_norm.bias.copy_(offset)
        model.text_projection.weight.copy_(model.visual_projection.weight)
    model.save_pretrained(out)  # safetensors
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)


def _builders() -> dict:
    """builtin name -> builder: each family's tiny models (its module says how they are built), the tiny ControlNet
    and the tiny CLIP."""
    found = {name: build for family in families.all_families() for name, build in family.tiny_builtins().items()}
    return {**found, "tiny-controlnet": _build_tiny_controlnet, "tiny-clip": _build_tiny_clip}
