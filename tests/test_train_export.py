"""Exports load where users load them: kohya LoRAs in diffusers give the peft export's images, embeddings load with
load_textual_inversion and in Generate, DreamBooth single files load like the diffusers folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train_helpers import astronaut, chelsea, make_dataset, tiny_config, train_in_process


def _pipe(studio, model):
    return studio.store.load_base(studio.store.resolve(model), dtype=torch.float32, device="cpu")


def _image(pipe, prompt="a photo of sks"):
    return pipe(prompt, num_inference_steps=3, width=64, height=64, output_type="np",
                generator=torch.Generator().manual_seed(0)).images[0]


@pytest.mark.parametrize("model, layers", [("builtin:tiny", "attention"), ("builtin:tiny-xl", "attention"),
                                           ("builtin:tiny", "all"), ("builtin:tiny-xl", "all")])
def test_kohya_export_gives_the_same_images_as_the_peft_export(studio, model, layers):
    from safetensors import safe_open

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    result = train_in_process(studio, tiny_config(model=model, max_steps=3, lr=5e-2, text_encoder_lr=5e-2,
                                                  alpha=8.0, lora_layers=layers))
    kohya, peft = result.files
    with safe_open(str(kohya), "pt") as f:
        keys = list(f.keys())
        assert f.metadata()["ss_network_alpha"] == "8.0"
    assert any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in keys)
    assert any(k.startswith("lora_te") for k in keys) and any(k.endswith(".alpha") for k in keys)
    if model == "builtin:tiny-xl":  # kohya's SDXL names are the original SGM ones
        assert any(k.startswith("lora_unet_input_blocks_") for k in keys)
        assert any(k.startswith("lora_te2_") for k in keys)
    convs = [k for k in keys if k.endswith(("_conv1.lora_down.weight", "_in_layers_2.lora_down.weight"))]
    assert bool(convs) == (layers == "all")  # 3x3 LoCon convs only when asked for
    if convs:
        with safe_open(str(kohya), "pt") as f:
            assert f.get_tensor(convs[0]).shape[-2:] == (3, 3)
            assert "conv_dim" in f.metadata()["ss_network_args"]

    pipe = _pipe(studio, model)
    base = _image(pipe)
    pipe.load_lora_weights(str(peft), adapter_name="peft")
    with_peft = _image(pipe)
    pipe.delete_adapters("peft")
    pipe.load_lora_weights(str(kohya), adapter_name="kohya")
    with_kohya = _image(pipe)
    assert np.abs(with_peft - base).max() > 1e-3  # the LoRA changes the image...
    np.testing.assert_allclose(with_kohya, with_peft, atol=1e-5)  # ...the same way from either file


def test_lora_appears_in_generate_at_once(studio):
    from studio.generate import GenerationRequest, generate

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    train_in_process(studio, tiny_config(name="mylora"))
    assert studio.settings.models_dir / "lora" / "mylora.safetensors" in studio.store.list_models().lora
    result = generate(studio, GenerationRequest(prompt="a photo of sks <lora:mylora:0.8>", model="builtin:tiny",
                                                steps=2, width=64, height=64, seed=1, save=False))
    assert len(result.images) == 1


def test_embedding_loads_with_load_textual_inversion(studio):
    from safetensors.torch import load_file

    make_dataset(studio.settings, "ds", [astronaut()], ["sks, photo"])
    result = train_in_process(studio, tiny_config(method="textual-inversion", init_word="woman", vectors=2))
    a1111 = studio.settings.models_dir / "embeddings" / "sks.safetensors"
    assert load_file(str(a1111))["emb_params"].shape == (2, 32)
    for path in (a1111, result.files[1]):
        pipe = _pipe(studio, "builtin:tiny")
        pipe.load_textual_inversion(str(path), token="sks")
        ids = pipe.tokenizer("sks", add_special_tokens=False).input_ids
        assert len(ids) == 1  # the multi-vector token expands when the prompt is converted, as in A1111
        table = pipe.text_encoder.get_input_embeddings().weight
        expanded = pipe.tokenizer.convert_tokens_to_ids(["sks", "sks_1"])
        torch.testing.assert_close(table[expanded], load_file(str(a1111))["emb_params"])
        assert _image(pipe).shape == (64, 64, 3)


def test_sdxl_embedding_works_in_generate(studio):
    from studio.generate import GenerationRequest, generate

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    train_in_process(studio, tiny_config(method="textual-inversion", model="builtin:tiny-xl", trigger="xlsubject"))
    result = generate(studio, GenerationRequest(prompt="a photo of xlsubject", model="builtin:tiny-xl", steps=2,
                                                width=64, height=64, embeddings=["xlsubject"], seed=1, save=False))
    assert len(result.images) == 1


def test_dreambooth_single_file_loads_like_the_folder(studio):
    from safetensors import safe_open

    make_dataset(studio.settings, "ds", [astronaut(), chelsea()], ["sks", None])
    train_in_process(studio, tiny_config(name="dbrun", method="dreambooth", lr=1e-3))
    single = studio.settings.models_dir / "base" / "dbrun.safetensors"
    with safe_open(str(single), "pt") as f:
        assert f.metadata()["studio.base_model"] == "builtin:tiny"
    folder_image = _image(_pipe(studio, "dbrun"))
    np.testing.assert_allclose(_image(_pipe(studio, "dbrun.safetensors")), folder_image, atol=1e-5)
    assert np.abs(_image(_pipe(studio, "builtin:tiny")) - folder_image).max() > 1e-3


def test_sdxl_single_file_layout_converts_back(studio):
    """diffusers' own converters read every SDXL weight back from the single-file layout (loading the tiny SDXL
    file whole fails only because both of its text encoders have the same width, which diffusers guesses from)."""
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint, convert_open_clip_checkpoint)

    from studio.models import families

    pipe = _pipe(studio, "builtin:tiny-xl")
    state = families.get("sdxl").single_file_state(pipe)
    checks = [(convert_ldm_unet_checkpoint(state, dict(pipe.unet.config)), pipe.unet),
              (convert_ldm_vae_checkpoint(state, dict(pipe.vae.config)), pipe.vae),
              (convert_open_clip_checkpoint(pipe.text_encoder_2, state, prefix="conditioner.embedders.1.model."),
               pipe.text_encoder_2)]
    clip_l = convert_ldm_clip_checkpoint(state, remove_prefix="conditioner.embedders.0.transformer.")
    checks.append(({k.removeprefix("text_model."): v for k, v in clip_l.items()}, pipe.text_encoder))
    for converted, module in checks:
        expected = {k: v for k, v in module.state_dict().items() if not k.endswith("position_ids")}
        assert set(converted) >= set(expected), sorted(set(expected) - set(converted))[:5]
        for key, value in expected.items():
            torch.testing.assert_close(converted[key].reshape(value.shape), value)


def test_epoch_export_names_the_epoch(studio):
    from studio.train.export import export_epoch

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    train_in_process(studio, tiny_config(name="ep", model="builtin:tiny-xl", max_steps=3))
    files = export_epoch(studio.settings.runs_dir / "ep", 2, studio.settings.models_dir)
    assert files[0] == studio.settings.models_dir / "lora" / "ep-e002.safetensors"
    pipe = _pipe(studio, "builtin:tiny-xl")
    pipe.load_lora_weights(str(files[0]))
    with pytest.raises(ValueError, match="`epoch` 9"):
        export_epoch(studio.settings.runs_dir / "ep", 9, studio.settings.models_dir)
