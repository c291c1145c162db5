"""FLUX.2 klein as a family: told from folders, BFL's single files and LoRAs apart from FLUX.1 (whose key names they
share); the distilled klein's defaults and its refusals said where the user looks; FLUX.2 dev refused, saying why; a
BFL-layout file (and its VAE as ComfyUI keeps it) loading offline and drawing what its folder draws; the kohya export
in BFL's names, every layer of it loading in stock diffusers. (What every new family shares is in
test_transformer_families.py.)"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from studio.generate import GenerationRequest, generate
from studio.models import families
from tests.single_files import check_comfy_file_draws_as_base
from tests.train_helpers import (astronaut, check_every_layer_exports, check_parameter_counts, make_dataset,
                                 tiny_config, train_in_process)

KLEIN = "builtin:tiny-flux2"


def _distilled_copy(studio):
    """The tiny klein as the released (distilled) klein models are marked: model_index.json's is_distilled."""
    folder = studio.settings.models_dir / "base" / "tiny-klein-distilled"
    if not folder.exists():
        shutil.copytree(studio.store.resolve(KLEIN).path, folder)
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps({**index, "is_distilled": True}))
    return str(folder)


def test_flux2_is_told_apart_from_flux1_in_folders_files_hub_ids_and_loras(session_studio, tmp_path):
    store, flux2, flux1 = session_studio.store, families.get("flux2"), families.get("flux")
    assert store.resolve(KLEIN).family is flux2
    assert store.resolve("black-forest-labs/FLUX.2-klein-base-4B").family is flux2
    assert store.resolve("black-forest-labs/FLUX.1-dev").family is flux1
    for prefix in ("", "model.diffusion_model."):  # BFL's layout has FLUX.1's double_blocks too
        path = tmp_path / f"klein{len(prefix)}.safetensors"
        save_file({f"{prefix}double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(2),
                   f"{prefix}double_stream_modulation_img.lin.weight": torch.zeros(2, 2)}, str(path))
        assert store.resolve(str(path)).family is flux2
    assert families.from_lora({"transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj.lora_A.weight":
                               [4, 32]}) == [flux2]
    kohya = {"lora_unet_single_blocks_0_linear1.lora_down.weight": [4, 32],
             "lora_unet_single_blocks_0_linear1.lora_up.weight": [9 * 32, 4]}
    assert families.from_lora(kohya) == [flux2]
    kohya["lora_unet_single_blocks_0_linear1.lora_up.weight"] = [7 * 32, 4]  # FLUX.1's 4x MLP
    assert families.from_lora(kohya) == [flux1]
    assert flux2.generation_defaults(store, store.resolve("black-forest-labs/FLUX.2-klein-4B")) == {"cfg": 1.0,
                                                                                                   "steps": 4}
    assert flux2.generation_defaults(store, store.resolve(KLEIN)) == {"cfg": 4.0, "steps": 50}


def test_the_distilled_klein_says_what_it_does_not_take(studio):
    distilled = _distilled_copy(studio)
    assert families.get("flux2").generation_defaults(studio.store, studio.store.resolve(distilled))["steps"] == 4
    quiet = generate(studio, GenerationRequest(prompt="a photo of a dog", model=distilled, steps=2, seed=1, cfg=4.0,
                                               negative_prompt="a cat", save=False))
    assert any("step-distilled: it takes no CFG and no negative prompt" in n for n in quiet.notes)
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    train_in_process(studio, tiny_config(name="distilled", model=distilled, max_steps=1))
    log = (studio.settings.runs_dir / "distilled" / "metrics.jsonl").read_text()
    assert "is the step-distilled one" in log and "klein base weights" in log


def test_flux2_dev_is_refused_saying_why(studio, tmp_path):
    path = tmp_path / "flux2-dev.safetensors"
    save_file({"double_stream_modulation_img.lin.weight": torch.zeros(2, 2), "img_in.weight": torch.zeros(6144, 1),
               "guidance_in.in_layer.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ValueError, match=r"FLUX.2 \[dev\] .* the studio runs FLUX.2 \[klein\] 4B and 9B"):
        with studio.cache.pipeline(str(path)):
            pass


def test_a_bfl_file_and_its_vae_file_load_offline_and_draw_what_the_folder_draws(studio, tmp_path):
    from studio.models.families.flux2_files import bfl_state, vae_file
    from studio.models.families.sd_files import vae_to_original

    with studio.cache.pipeline(KLEIN) as pipe:
        state = bfl_state(pipe.transformer)
        vae = pipe.vae
        ldm = {**vae_to_original(vae.state_dict(), vae.config),
               **{k: v for k, v in vae.state_dict().items() if k.startswith("bn.")}}
    assert "double_blocks.0.img_attn.qkv.weight" in state and "single_blocks.1.linear1.weight" in state
    vae_path = tmp_path / "flux2-vae.safetensors"
    save_file({k: v.contiguous() for k, v in ldm.items()}, str(vae_path))
    loaded = vae_file(vae_path, studio.store.resolve(KLEIN).path, dtype=torch.float32)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in vae.state_dict().items())

    check_comfy_file_draws_as_base(studio, state, KLEIN, "tiny_klein_bfl.safetensors", atol=2)  # float rounding


def test_every_layer_of_the_kohya_export_loads_in_stock_diffusers(studio):
    check_every_layer_exports(studio, KLEIN, [f"lora_unet_{layer}" for layer in (
        "double_blocks_0_img_attn_qkv", "double_blocks_0_txt_attn_qkv", "double_blocks_0_txt_mlp_0",
        "single_blocks_1_linear1", "single_blocks_1_linear2")])


def test_the_memory_facts_are_the_real_configs_counted():
    check_parameter_counts("flux2")
