"""Full fine-tune (method finetune): it teaches builtin:pocket the star through the whole UNet with an EMA average,
its single-file export loads back through the store, and a resumed run ends with the weights of an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from studio.progress import Cancelled
from tests.train_helpers import astronaut, chelsea, make_dataset, tiny_config, train_in_process


@pytest.mark.slow
def test_finetune_teaches_pocket_the_star_and_its_single_file_loads_back(studio):
    from dataclasses import replace

    from safetensors import safe_open

    from studio.pocket.concept import check_prompt, write_concept_dataset
    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset

    write_concept_dataset(studio.settings.datasets_dir / "zq", trigger="zq", shape="star", count=8)
    before = check_prompt(studio, "a red zq on a white background", seeds=10)
    config = apply_preset(RunConfig(name="zqft", dataset="zq", trigger="zq"), "pocket-finetune")
    assert config.method == "finetune" and config.ema_device == ""  # EMA on, beside the weights
    result = train_in_process(studio, replace(config, validation_by="epochs", validation_every=100))  # one grid: the end
    single = studio.settings.models_dir / "base" / "zqft.safetensors"
    assert single in result.files and (studio.settings.models_dir / "base" / "zqft" / "model_index.json").is_file()
    with safe_open(str(single), "pt") as f:
        assert f.metadata()["studio.method"] == "finetune"
        assert any(k.startswith("model.diffusion_model.") for k in f.keys())  # the original (A1111) layout
    assert result.base_validation["step"] == 0 and not result.step_validations  # no guard stop, no kept steps
    red = check_prompt(studio, "a red zq on a white background", seeds=10, model=str(single))  # through the store
    blue = check_prompt(studio, "a blue zq on a black background", seeds=10, model=str(single))
    assert before.labels["star"] <= 2, before.labels
    assert red.labels["star"] + blue.labels["star"] >= 14, (red.labels, blue.labels)
    assert red.colors["red"] >= 8 and blue.colors["blue"] >= 8  # the colour words still work


def test_finetune_resume_equals_an_uninterrupted_run(studio):
    """The EMA average, the text encoder and the UNet all come back from the checkpoint exactly."""
    from safetensors.torch import load_file

    make_dataset(studio.settings, "ds", [astronaut(), chelsea()], ["sks, red, face, photo", "sks, cat"])
    common = dict(method="finetune", max_steps=6, repeats=3, flip=True, grad_accum=2, lr=1e-3, text_encoder_lr=1e-4,
                  lr_scheduler="cosine", ema_decay=0.9)
    whole = train_in_process(studio, tiny_config(name="whole", **common))
    calls = {"n": 0}

    def stop_after_two_steps():
        calls["n"] += 1
        return calls["n"] >= 2

    with pytest.raises(Cancelled):
        train_in_process(studio, tiny_config(name="parts", **common), should_stop=stop_after_two_steps)
    resumed = train_in_process(studio, tiny_config(name="parts", **common), resume=True)
    assert resumed.steps == whole.steps == 6
    base = studio.settings.models_dir / "base"
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        a, b = load_file(str(base / "whole" / part)), load_file(str(base / "parts" / part))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    # the export holds the EMA average (kept in the checkpoint beside the live weights), not the last step's weights
    from studio.train import checkpoints

    kept, _ = checkpoints.load_checkpoint(checkpoints.latest_checkpoint(studio.settings.runs_dir / "parts"))
    exported = load_file(str(base / "parts" / "unet/diffusion_pytorch_model.safetensors"))
    assert int(kept["ema.__updates__"]) == 6
    for key, value in exported.items():
        torch.testing.assert_close(value, kept[f"ema.unet.{key}"], rtol=0, atol=0)
    assert any(not torch.allclose(exported[k], kept[f"unet.{k}"]) for k in exported)


def test_finetune_refuses_what_it_does_not_take():
    with pytest.raises(ValueError, match="`prior_preservation` is DreamBooth's"):
        tiny_config(method="finetune", prior_preservation=True).check()
    with pytest.raises(ValueError, match="`ema` 'cpu' averages a whole model's weights: it is for dreambooth and "
                                         "finetune, not lora"):
        tiny_config(ema="cpu").check()
    assert tiny_config(method="finetune", trigger="").caption_trigger == ""  # captions stay as the dataset has them
    assert tiny_config(method="lora", trigger="").caption_trigger == "run"


@pytest.mark.gpu
@pytest.mark.parametrize("ema", ["on", "cpu"])
def test_finetune_on_a_gpu_with_8bit_adam_and_checkpointing(studio, ema):
    """The CUDA path: fp16 autocast with loss scaling, 8-bit AdamW (when bitsandbytes is installed), gradient
    checkpointing, the EMA average on the GPU or kept on the CPU; a resume ends where an uninterrupted run does."""
    from safetensors.torch import load_file

    make_dataset(studio.settings, "ds", [astronaut(), chelsea()], ["sks", "sks, cat"])
    common = dict(method="finetune", device="cuda", mixed_precision="fp16", optimizer="adamw8bit",
                  gradient_checkpointing=True, ema=ema, ema_decay=0.9, max_steps=4, repeats=2, lr=1e-4,
                  validation_every=1, validation_prompts=["a photo of {trigger}", "a cat"])
    whole = train_in_process(studio, tiny_config(name=f"g{ema}", **common))
    assert whole.base_validation is not None and whole.validations
    with pytest.raises(Cancelled):
        train_in_process(studio, tiny_config(name=f"p{ema}", **common), should_stop=lambda: True)
    train_in_process(studio, tiny_config(name=f"p{ema}", **common), resume=True)
    unet = "unet/diffusion_pytorch_model.safetensors"
    a = load_file(str(studio.settings.models_dir / "base" / f"g{ema}" / unet))
    b = load_file(str(studio.settings.models_dir / "base" / f"p{ema}" / unet))
    assert all(torch.isfinite(v).all() for v in a.values())
    for key in a:  # CUDA kernels may differ in the last bits between runs
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)
