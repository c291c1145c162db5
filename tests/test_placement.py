"""Generation within the device: each family's dtype on a GPU (asked of the loader by the model cache, with the GPU's
bf16 faked where the CPU has none), the offload chosen by a base's size against the GPU's free memory and said where
the user reads it, an offloaded base drawing what it draws whole, and large pictures decoded in tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.generate import GenerationRequest, generate
from studio.models import families
from studio.models.placement import GB, choose_placement, generation_dtype, vae_tiling

FP16, BF16, FP32 = torch.float16, torch.bfloat16, torch.float32
# What each family generates in on a GPU that has bf16: SD's UNets were released in fp16, the flow transformers
# overflow in it.
ON_A_GPU = {"sd1": FP16, "sd2": FP16, "sdxl": FP16, "flux": BF16, "zimage": BF16, "flux2": BF16, "qwenimage": BF16}


def test_each_family_has_its_dtype_on_a_gpu_and_float32_on_the_cpu():
    assert {f.name for f in families.all_families()} == set(ON_A_GPU)
    for family in families.all_families():
        assert generation_dtype(family, "cuda", has_bf16=True) is ON_A_GPU[family.name], family.name
        assert generation_dtype(family, "cuda:1", has_bf16=False) is FP16, family.name  # no bf16 (before Ampere)
        assert generation_dtype(family, "cpu") is FP32
        assert generation_dtype(family, "cuda", "float32", has_bf16=True) is FP32  # --dtype asked for


class _Stop(Exception):
    pass


@pytest.mark.parametrize("model,family", [("builtin:tiny", "sd1"), ("builtin:tiny-xl", "sdxl"),
                                          ("builtin:tiny-flux", "flux"), ("builtin:tiny-zimage", "zimage"),
                                          ("builtin:tiny-flux2", "flux2"), ("builtin:tiny-qwenimage", "qwenimage")])
def test_the_cache_asks_the_loader_for_the_familys_dtype_on_a_gpu(session_studio, monkeypatch, model, family):
    asked = []

    def load_base(ref, *, dtype, device, without=()):
        asked.append((dtype, device))
        raise _Stop

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # an Ampere or later GPU
    monkeypatch.setattr(session_studio.store, "load_base", load_base)
    with pytest.raises(_Stop), session_studio.cache.on_device("cuda"):
        with session_studio.cache.pipeline(model):
            pass
    assert families.get(family).generation_dtype == ("fp16" if ON_A_GPU[family] is FP16 else "bf16")
    assert asked == [(ON_A_GPU[family], "cpu")]  # read on the CPU: placed (or offloaded) once its size is known


def test_the_offload_is_chosen_by_size_against_the_gpus_free_memory():
    flux, transformer = int(33.7 * GB), int(23.8 * GB)  # FLUX.1-dev in bf16: all of it, its transformer
    whole = choose_placement("auto", needed=flux, largest=transformer, free=int(40 * GB), dtype_name="bfloat16")
    assert whole.offload == "none" and whole.note == ""
    by_model = choose_placement("auto", needed=flux, largest=transformer, free=int(30 * GB), dtype_name="bfloat16")
    assert by_model.offload == "model"
    assert by_model.note == ("offloaded to the CPU (a model at a time): the model needs 33.7 GB in bfloat16, the GPU "
                             "has 30.0 GB free")
    by_layer = choose_placement("auto", needed=flux, largest=transformer, free=int(16 * GB))
    assert by_layer.offload == "sequential" and "its largest part alone needs 23.8 GB" in by_layer.note
    assert "the GPU has 16.0 GB free" in by_layer.note
    assert choose_placement("none", needed=flux, largest=transformer, free=int(16 * GB)).offload == "none"
    asked = choose_placement("model", needed=flux, largest=transformer, free=int(80 * GB))
    assert asked.offload == "model" and "as --offload asks" in asked.note
    assert choose_placement("auto", needed=flux, largest=transformer, free=None).offload == "none"  # no GPU
    with pytest.raises(ValueError, match="`offload` must be one of auto, none, model, sequential but is 'cpu'"):
        choose_placement("cpu", needed=1, largest=1, free=1)


def test_an_offloaded_base_draws_what_it_draws_whole_and_says_so(settings):
    """On the CPU an offload is applied only when asked for; it runs diffusers' model offload with the CPU as the
    device, through the cache's hooks for txt2img and the img2img pipeline made from it."""
    from studio.context import Studio

    request = GenerationRequest(prompt="a photo of a dog", model="builtin:tiny", seed=3, steps=2, save=False)
    drawn = {}
    for offload in ("none", "model"):
        studio = Studio.open(settings.with_(offload=offload))
        first = generate(studio, request)
        again = generate(studio, GenerationRequest(**{**vars(request), "init_image": first.images[0].image,
                                                      "strength": 0.5}))
        drawn[offload] = [np.asarray(r.images[0].image, dtype=float) for r in (first, again)], first.notes
    (whole, whole_notes), (offloaded, notes) = drawn["none"], drawn["model"]
    assert all(np.array_equal(a, b) for a, b in zip(whole, offloaded))
    assert whole_notes == [] and len(notes) == 1
    assert notes[0].startswith("offloaded to the CPU (a model at a time, as --offload asks): the model needs ")


def test_large_pictures_decode_in_tiles_and_say_so(session_studio, monkeypatch):
    from diffusers import AutoencoderKL

    from studio.models import placement

    assert vae_tiling(1536, 1536) == ""
    assert vae_tiling(2048, 2048).startswith("the VAE worked on the 2048x2048 picture in tiles (it does above "
                                             "1536x1536")
    monkeypatch.setattr(placement, "TILE_ABOVE_PIXELS", 64 * 64)  # the tiny model's 96 px is "large"
    tiled = []
    real = AutoencoderKL.tiled_decode
    monkeypatch.setattr(AutoencoderKL, "tiled_decode", lambda self, *a, **k: tiled.append(1) or real(self, *a, **k))
    result = generate(session_studio, GenerationRequest(prompt="a dog", model="builtin:tiny", seed=1, steps=2,
                                                        width=96, height=96, save=False))
    assert tiled and any("96x96 picture in tiles" in n for n in result.notes)
    tiled.clear()
    small = generate(session_studio, GenerationRequest(prompt="a dog", model="builtin:tiny", seed=1, steps=2,
                                                       width=64, height=64, save=False))
    assert not tiled and small.notes == []  # the cached pipeline's VAE draws whole again
