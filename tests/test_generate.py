"""Generation on builtin tiny models: determinism, seeds, samplers, sizes, bad input, PNG parameters on disk."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.generate import GenerationRequest, generate
from studio.generate.parameters import parse_parameters, read_png_parameters, request_fields
from studio.models.families.samplers import DDPM_SAMPLERS as SAMPLERS


def pixels(result, i=0):
    return np.asarray(result.images[i].image, dtype=np.int16)


def quick(**kw):
    base = dict(prompt="a photo of a dog", model="builtin:tiny", steps=2, seed=7, save=False)
    return GenerationRequest(**{**base, **kw})


def test_same_seed_same_pixels_other_seed_other_pixels(session_studio):
    a = generate(session_studio, quick())
    b = generate(session_studio, quick())
    c = generate(session_studio, quick(seed=8))
    assert np.array_equal(pixels(a), pixels(b))
    assert np.abs(pixels(a) - pixels(c)).mean() > 1
    assert a.images[0].image.size == (64, 64)  # builtin:tiny's native size: UNet sample 32 x VAE factor 2


def test_random_seed_is_reported_and_reproduces(session_studio):
    first = generate(session_studio, quick(seed=-1))
    seed = first.images[0].seed
    assert 0 <= seed < 2**32 and f"Seed: {seed}," in first.images[0].parameters
    again = generate(session_studio, quick(seed=seed))
    assert np.array_equal(pixels(first), pixels(again))


def test_batch_uses_consecutive_seeds_like_a1111(session_studio):
    batch = generate(session_studio, quick(batch_size=2, seed=100))
    assert [im.seed for im in batch.images] == [100, 101]
    single = generate(session_studio, quick(seed=101))
    # The same image; batched matrix products round differently in the last bits, so allow a pixel level or two.
    diff = np.abs(pixels(batch, 1) - pixels(single))
    assert diff.max() <= 3 and diff.mean() < 0.5
    assert np.abs(pixels(batch, 0) - pixels(single)).mean() > 5


# A1111's sampler names and the diffusers schedulers that implement them, written out here rather than read from
# the studio's table, so a wrong mapping fails.
A1111_SAMPLERS = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {"solver_order": 2}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}


def test_the_sampler_list_is_a1111s():
    assert list(SAMPLERS) == list(A1111_SAMPLERS)


@pytest.mark.parametrize("sampler", list(A1111_SAMPLERS))
def test_each_sampler_is_its_diffusers_scheduler(session_studio, sampler):
    """The studio's image equals a bare diffusers call with the scheduler the name stands for."""
    import diffusers
    import torch

    result = generate(session_studio, quick(sampler=sampler, steps=3))
    assert f"Sampler: {sampler}," in result.images[0].parameters
    assert np.array_equal(pixels(result), pixels(generate(session_studio, quick(sampler=sampler, steps=3))))
    class_name, options = A1111_SAMPLERS[sampler]
    pipe = session_studio.store.load_base(session_studio.store.resolve("builtin:tiny"), dtype=torch.float32,
                                          device="cpu")
    seeded = {"noise_sampler_seed": 7} if class_name == "DPMSolverSDEScheduler" else {}  # A1111 seeds its noise too
    scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **options, **seeded)
    for key, value in options.items():
        assert scheduler.config[key] == value
    pipe.scheduler = scheduler
    bare = pipe("a photo of a dog", num_inference_steps=3, guidance_scale=7.0, width=64, height=64,
                generator=[torch.Generator("cpu").manual_seed(7)]).images[0]
    assert np.array_equal(pixels(result), np.asarray(bare, dtype=np.int16))


def test_samplers_differ_and_model_scheduler_is_restored(session_studio):
    euler = generate(session_studio, quick(sampler="Euler", steps=4))
    generate(session_studio, quick(sampler="DPM++ 2M Karras", steps=4))
    ddim = generate(session_studio, quick(sampler="DDIM", steps=4))
    euler_again = generate(session_studio, quick(sampler="Euler", steps=4))
    assert np.array_equal(pixels(euler), pixels(euler_again))  # the Karras option did not leak into Euler
    assert not np.array_equal(pixels(euler), pixels(ddim))


def test_sdxl_and_explicit_size(session_studio):
    result = generate(session_studio, quick(model="builtin:tiny-xl", width=96, height=64))
    assert result.images[0].image.size == (96, 64)
    assert "Size: 96x64" in result.images[0].parameters


def test_img2img_follows_the_init_image_more_at_low_strength(session_studio):
    # The tiny VAE has random weights, so compare how much the init image steers the result, not likeness.
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    init_a, init_b = Image.fromarray(ramp).convert("RGB"), Image.fromarray(ramp.T[::-1]).convert("RGB")

    def spread(strength):
        a = generate(session_studio, quick(init_image=init_a, strength=strength, steps=10))
        b = generate(session_studio, quick(init_image=init_b, strength=strength, steps=10))
        return np.abs(pixels(a) - pixels(b)).mean(), a

    low, low_result = spread(0.2)
    high, _ = spread(1.0)
    assert low > 2 * high
    assert "Denoising strength: 0.2" in low_result.images[0].parameters


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(width=65), "divisible by 8"),
        (dict(height=32), "between 64 and 4096"),
        (dict(steps=0), "`steps` must be between 1 and 150 but is 0"),
        (dict(sampler="Euler b"), "valid samplers are: Euler a, Euler"),
        (dict(seed=2**33), "`seed` must be -1"),
        (dict(prompt="  "), "`prompt` is empty"),
        (dict(model="nobody/nothing/here"), "not found"),
    ],
)
def test_bad_input_names_the_argument(session_studio, change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        generate(session_studio, quick(**change))


def test_saved_png_carries_parameters_and_names_never_collide(studio):
    a = generate(studio, quick(save=True))
    b = generate(studio, quick(save=True))
    assert a.images[0].path != b.images[0].path
    assert a.images[0].path.parent.parent == studio.settings.outputs_dir
    text = read_png_parameters(a.images[0].path)
    assert text == a.images[0].parameters
    fields = request_fields(parse_parameters(text))
    assert fields == {"prompt": "a photo of a dog", "negative_prompt": "", "steps": 2, "cfg": 7.0, "seed": 7,
                      "width": 64, "height": 64, "sampler": "Euler a"}
    # The restored request makes the same image again.
    again = generate(studio, GenerationRequest(model="builtin:tiny", save=False, **fields))
    assert np.array_equal(pixels(a), pixels(again))


def test_bfloat16_path_runs_on_cpu_and_stays_close_to_float32(settings):
    # The half-precision path a GPU takes (dtype from settings through the store and cache), exercised on the CPU.
    from studio.context import Studio

    fp32 = generate(Studio.open(settings), quick(steps=4))
    bf16_studio = Studio.open(settings.with_(dtype="bfloat16"))
    bf16 = generate(bf16_studio, quick(steps=4))
    assert bf16_studio.cache.holdings()[0].dtype == "bfloat16"
    assert np.abs(pixels(bf16) - pixels(fp32)).mean() < 20  # same picture, coarser arithmetic


@pytest.mark.gpu
def test_cuda_fp16_is_deterministic_and_matches_the_seed(settings):
    import torch

    from studio.context import Studio

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    studio = Studio.open(settings.with_(device="cuda"))
    a, b = generate(studio, quick(steps=8)), generate(studio, quick(steps=8))
    assert studio.cache.holdings()[0].dtype == "float16"
    assert np.array_equal(pixels(a), pixels(b))
