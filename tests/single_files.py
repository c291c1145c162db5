"""Single files in the layouts A1111, Forge and ComfyUI keep, made from the tiny builtins (same key names, toy widths),
and the carried configs swapped for the builtin's own (the real ones describe the real widths)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file


def carry_tiny(monkeypatch, tmp_path: Path, variant: str, pipe) -> Path:
    """Make `variant`'s carried configs those of the builtin `pipe` was loaded from (its folder without weights),
    every other variant left as the studio carries it."""
    from studio.models import configs

    root = tmp_path / "carried"
    if not root.is_dir():
        shutil.copytree(configs.CONFIGS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.rmtree(root / variant, ignore_errors=True)
    shutil.copytree(pipe.name_or_path, root / variant, ignore=shutil.ignore_patterns("*.safetensors", "*.json.lock"))
    monkeypatch.setattr(configs, "CONFIGS_DIR", root)
    return root / variant


def load(studio, model_id: str):
    return studio.store.load_base(studio.store.resolve(model_id), dtype=torch.float32, device="cpu")


def write_sd_file(studio, builtin: str, path: Path) -> Path:
    """An A1111-layout checkpoint of a UNet builtin (model.diffusion_model., first_stage_model., cond_stage_model. or
    conditioner.embedders.N.), with no header naming its base."""
    from studio.models import families

    pipe = load(studio, builtin)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(families.of(pipe).single_file_state(pipe), str(path))
    return path


def write_flux_files(pipe, folder: Path, *, all_in_one: bool = False, transformer_dtype=None) -> Path:
    """A FLUX.1 pipeline as Forge keeps it (flux1-dev.safetensors in BFL's layout, clip_l, t5xxl_fp16 and ae beside
    it), or as one all-in-one file; returns the transformer's (or the all-in-one) file."""
    from studio.models.families import flux1_files

    states = flux1_files.file_states(pipe)
    if transformer_dtype is not None:
        states["transformer"] = {k: v.to(transformer_dtype) if v.ndim == 2 else v
                                 for k, v in states["transformer"].items()}
    folder.mkdir(parents=True, exist_ok=True)
    if all_in_one:
        save_file(flux1_files.all_in_one(states), str(folder / "flux1-dev-all-in-one.safetensors"))
        return folder / "flux1-dev-all-in-one.safetensors"
    for part, name in (("transformer", "flux1-dev.safetensors"), ("clip_l", "clip_l.safetensors"),
                       ("t5xxl", "t5xxl_fp16.safetensors"), ("ae", "ae.safetensors")):
        save_file(states[part], str(folder / name))
    return folder / "flux1-dev.safetensors"


def tiny_sdxl(out: Path):
    """A tiny SDXL pipeline (saved in `out`, loaded back) whose text encoders differ in width, 32 and 48, as the real
    ones do (768 and 1280): diffusers tells them apart in a single file by width."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from studio.models.tiny_parts import TINY_WORDS, clip_text_config, clip_tokenizer, sd_scheduler_config, tiny_vae
    from studio.models.tokenizer import write_clip_tokenizer

    vocab_size = write_clip_tokenizer(out / "tokenizer", TINY_WORDS)
    write_clip_tokenizer(out / "tokenizer_2", TINY_WORDS)
    wide = clip_text_config(vocab_size, projection_dim=48)
    wide.hidden_size, wide.intermediate_size = 48, 53
    torch.manual_seed(0)
    pipe = StableDiffusionXLPipeline(
        unet=UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4,
                                  out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                  use_linear_projection=True, addition_embed_type="text_time",
                                  addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
                                  projection_class_embeddings_input_dim=6 * 8 + 48, cross_attention_dim=32 + 48),
        vae=tiny_vae(), text_encoder=CLIPTextModel(clip_text_config(vocab_size)),
        text_encoder_2=CLIPTextModelWithProjection(wide), tokenizer=clip_tokenizer(out / "tokenizer"),
        tokenizer_2=clip_tokenizer(out / "tokenizer_2"), scheduler=EulerDiscreteScheduler(**sd_scheduler_config()))
    pipe.save_pretrained(out, safe_serialization=True)
    return StableDiffusionXLPipeline.from_pretrained(str(out))


def check_comfy_file_draws_as_base(studio, state: dict, base: str, name: str, *, atol: float) -> None:
    """`state` (a transformer's tensors) written as ComfyUI keeps a checkpoint (under model.diffusion_model.) into
    models/base/`name`, its header naming `base` as a studio export's does (the base's folder gives the configs and
    the other parts): the file draws what `base` draws, within `atol` levels."""
    import numpy as np

    from studio.generate import GenerationRequest, generate

    path = studio.settings.models_dir / "base" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in state.items()}, str(path),
              metadata={"studio.base_model": base})
    request = dict(prompt="a photo of a dog", steps=2, seed=5, save=False)
    by_file, by_folder = (generate(studio, GenerationRequest(model=m, **request)) for m in (str(path), base))
    np.testing.assert_allclose(np.asarray(by_file.images[0].image, dtype=float),
                               np.asarray(by_folder.images[0].image, dtype=float), atol=atol)
