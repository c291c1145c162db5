"""Qwen-Image as a family: told from folders, ComfyUI's single files, hub ids and LoRAs (apart from FLUX.1, whose
diffusers names an attention-only Qwen-Image LoRA shares); a single file loading offline and drawing what its folder
draws; every layer of the kohya export loading in stock diffusers. (What every new family shares is in
test_transformer_families.py.)"""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from studio.models import families
from tests.single_files import check_comfy_file_draws_as_base
from tests.train_helpers import check_every_layer_exports, check_parameter_counts

QWEN = "builtin:tiny-qwenimage"


def test_qwen_image_is_told_from_folders_files_hub_ids_and_loras(session_studio, tmp_path):
    store, qwen = session_studio.store, families.get("qwenimage")
    assert store.resolve(QWEN).family is qwen and store.resolve("Qwen/Qwen-Image").family is qwen
    for prefix in ("", "model.diffusion_model."):  # ComfyUI's file: diffusers' names, FLUX.1's norm_added_k too
        path = tmp_path / f"q{len(prefix)}.safetensors"
        save_file({f"{prefix}txt_norm.weight": torch.zeros(2), f"{prefix}transformer_blocks.0.img_mod.1.weight":
                   torch.zeros(2, 2), f"{prefix}transformer_blocks.0.attn.norm_added_k.weight": torch.zeros(2)},
                  str(path))
        assert store.resolve(str(path)).family is qwen
    for key in ("transformer.transformer_blocks.0.img_mlp.net.0.proj.lora_A.weight",
                "lora_unet_transformer_blocks_0_txt_mod_1.lora_down.weight",
                "diffusion_model.transformer_blocks.40.attn.to_q.lora_A.weight"):
        assert families.from_lora({key: [4, 3072]}) == [qwen], key
    assert families.from_lora({"transformer.transformer_blocks.3.attn.to_q.lora_A.weight": [4, 3072]}) == [
        families.get("flux")]  # 19 blocks or fewer, attention only: FLUX.1's names, FLUX.1's block count


def test_a_comfyui_file_loads_offline_and_draws_what_its_folder_draws(studio):
    with studio.cache.pipeline(QWEN) as pipe:
        state = pipe.transformer.state_dict()
    check_comfy_file_draws_as_base(studio, state, QWEN, "tiny_qwen_image_comfy.safetensors", atol=1)


def test_every_layer_of_the_kohya_export_loads_in_stock_diffusers(studio):
    check_every_layer_exports(studio, QWEN, [f"lora_unet_transformer_blocks_1_{layer}" for layer in (
        "attn_to_q", "attn_add_k_proj", "attn_to_add_out", "img_mlp_net_0_proj", "txt_mlp_net_2", "img_mod_1",
        "txt_mod_1")])


def test_the_memory_facts_are_the_real_configs_counted():
    check_parameter_counts("qwenimage")
