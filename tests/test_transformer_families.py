"""The 2026 transformer families (Z-Image, FLUX.2 klein, Qwen-Image) on their tiny builtins, each through the same
paths: the training objective predicts exactly what diffusers' own pipeline steps with (its time convention and
sign); generation is reproducible by seed and writes Forge's fields; img2img and inpainting run; a LoRA lowers the
loss, changes the picture, and both its exports (kohya's layout, diffusers') load in stock diffusers' pipeline of the
family with the same picture; masks weigh the loss; what does not fit is refused, naming the family."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from studio.generate import GenerationRequest, generate
from studio.generate.parameters import parse_parameters, request_fields
from studio.models import families
from tests.train_helpers import astronaut, make_dataset, stock_pictures, tiny_config, train_in_process

MODELS = ["builtin:tiny-zimage", "builtin:tiny-flux2", "builtin:tiny-qwenimage"]


def _quick(model, **changes):
    return GenerationRequest(**{**dict(prompt="a photo of a dog", model=model, seed=7, steps=3, save=False),
                                **changes})


def _pixels(result, i=0):
    return np.asarray(result.images[i].image, dtype=np.float64)


@pytest.mark.parametrize("model", MODELS)
def test_the_objective_predicts_what_the_pipeline_steps_with(session_studio, model, monkeypatch):
    """The pipeline's first Euler step from pure noise gets a velocity (for Z-Image: the transformer's output
    negated, its time 1 - sigma); the family's training objective must predict exactly that for the same latents,
    noise level and prompt, or a LoRA would learn the wrong direction."""
    from studio.train.config import RunConfig

    with session_studio.cache.pipeline(model) as pipe:
        family = families.of(pipe)
        seen = {}
        real_step = type(pipe.scheduler).step

        def spy(scheduler, model_output, timestep, sample, *args, **kwargs):
            seen.setdefault("velocity", model_output.detach().clone())
            seen.setdefault("sigma", float(scheduler.sigmas[scheduler.step_index or 0]))
            seen.setdefault("sample", sample.detach().clone())
            return real_step(scheduler, model_output, timestep, sample, *args, **kwargs)

        monkeypatch.setattr(type(pipe.scheduler), "step", spy)
        pipe(num_inference_steps=2, height=64, width=64, output_type="latent",
             generator=torch.Generator().manual_seed(0), **family.sampling_kwargs(
                 pipe, prompt="a photo of a dog", encoded=None, cfg=1.0, distilled=False))
        objective = family.objective(SimpleNamespace(pipe=pipe, vae_factor=None),
                                     RunConfig(name="x", dataset="x", model=model))
        cond = family.encode_prompts(pipe, ["a photo of a dog"])
        noisy = family.pipeline_latents(pipe, seen["sample"])
        with torch.no_grad():
            predicted = objective.predict(family.denoiser(pipe), noisy, torch.tensor([seen["sigma"]]), cond,
                                          nullcontext)
        velocity = family.pipeline_latents(pipe, seen["velocity"])
    assert 0.5 < seen["sigma"] <= 1.0
    torch.testing.assert_close(predicted.float(), velocity.float(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_generation_is_reproducible_with_forges_fields_img2img_inpainting_and_hires(session_studio, model):
    a, b, c = (generate(session_studio, _quick(model, seed=s)) for s in (7, 7, 8))
    assert np.array_equal(_pixels(a), _pixels(b)) and np.abs(_pixels(a) - _pixels(c)).mean() > 1
    text = a.images[0].parameters
    assert "Steps: 3, Sampler: Euler, Schedule type: Simple, CFG scale:" in text
    fields = request_fields(parse_parameters(text))
    assert fields["sampler"] == "Euler" and fields["steps"] == 3 and fields["seed"] == 7
    guided = generate(session_studio, _quick(model, cfg=4.0, negative_prompt="a cat"))
    unguided = generate(session_studio, _quick(model, cfg=1.0))
    no_negative = generate(session_studio, _quick(model, cfg=4.0))
    assert not guided.notes and np.abs(_pixels(guided) - _pixels(unguided)).mean() > 0.05  # CFG above 1 guides
    assert np.abs(_pixels(guided) - _pixels(no_negative)).mean() > 0.05  # with the negative prompt
    init = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).convert("RGB")
    img2img = generate(session_studio, _quick(model, init_image=init, strength=0.5))
    assert img2img.images[0].image.size == (64, 64) and "Denoising strength: 0.5" in img2img.images[0].parameters
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpainted = _pixels(generate(session_studio, _quick(model, init_image=init, mask_image=mask, mask_blur=0)))
    original = np.asarray(init, dtype=np.float64)
    assert np.array_equal(inpainted[:8], original[:8])  # outside the mask: the picture's own bytes
    assert np.abs(inpainted[20:44, 20:44] - original[20:44, 20:44]).mean() > 5  # inside: drawn again
    hires = generate(session_studio, _quick(model, steps=2, hires_scale=2, hires_strength=0.5))
    assert hires.images[0].image.size == (128, 128) and parse_parameters(hires.images[0].parameters)["Size"] == "64x64"


@pytest.mark.parametrize("model", MODELS)
def test_what_does_not_fit_is_refused_naming_the_family(session_studio, studio, model):
    from studio.generate import ControlUnit

    label = studio.store.resolve(model).family.label
    with pytest.raises(ValueError, match=f"is {label}: the studio's ControlNets"):
        generate(session_studio, _quick(model, controls=[ControlUnit("builtin:tiny-controlnet",
                                                                     Image.new("RGB", (64, 64)))]))
    with pytest.raises(ValueError, match=f"divisible by 16 for {label}"):
        generate(session_studio, _quick(model, height=72))
    with pytest.raises(ValueError, match=f"`distilled_cfg` is FLUX.1-dev's guidance input; {label}"):
        generate(session_studio, _quick(model, distilled_cfg=3.5, max_sequence_length=None))
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    for changes, message in ((dict(method="textual-inversion"), f"does not fit {label}"),
                             (dict(text_encoder_lr=1e-5), f"`text_encoder_lr` must be 0 for {label}"),
                             (dict(min_snr_gamma=5.0), "`min_snr_gamma` weighs DDPM noise levels")):
        with pytest.raises(ValueError, match=message):
            train_in_process(studio, tiny_config(name="refused", model=model, **changes))


@pytest.mark.parametrize("model", MODELS)
def test_a_lora_learns_changes_the_picture_and_both_exports_load_in_stock_diffusers(studio, model):
    target = Image.new("RGB", (64, 64), (230, 40, 30))
    make_dataset(studio.settings, "ds", [target, astronaut()], ["sks", "sks, a photo"])
    result = train_in_process(studio, tiny_config(name="red", model=model, max_steps=40, lr=1e-2, rank=8,
                                                  alpha=8.0, lora_layers="transformer", epochs=0))
    assert result.last_loss < 0.95 * result.first_loss, (result.first_loss, result.last_loss)
    kohya_file, peft_file = result.files
    with safe_open(str(kohya_file), framework="pt") as f:
        header = f.metadata()
    family = studio.store.resolve(model).family
    assert header["ss_base_model_version"] == family.kohya_version and header["ss_network_dim"] == "8"
    assert header["studio.family"] == family.name and header["ss_output_name"] == "red"
    assert all(k.startswith("lora_unet_") for k in load_file(str(kohya_file)))

    # Stock diffusers, as a user of diffusers would load both files: the same picture, and not the plain one.
    plain, by_kohya, by_peft = stock_pictures(studio.store.resolve(model).path, [None, kohya_file, peft_file], steps=3)
    assert np.abs(by_peft - plain).mean() > 0.005  # the LoRA changes the picture
    np.testing.assert_allclose(by_kohya, by_peft, atol=1.5 / 255)


@pytest.mark.parametrize("model", MODELS)
def test_several_subjects_validate_each_epoch_from_prompts_encoded_before_the_text_encoder_left(studio, model):
    from studio.train.config import Subject

    make_dataset(studio.settings, "ds", [astronaut()], ["sks, a photo"])
    make_dataset(studio.settings, "ds2", [Image.new("RGB", (64, 64), (20, 200, 40))], ["zqx"])
    config = tiny_config(name="two", model=model, epochs=2, max_steps=0, validation_every=1, validation_cfg=3.0,
                         extra_subjects=[Subject(dataset="ds2", trigger="zqx")])
    result = train_in_process(studio, config)
    assert [v.epoch for v in result.validations] == [1, 2] and all(v.grid for v in result.validations)
    with safe_open(str(result.files[0]), framework="pt") as f:
        header = f.metadata()
    assert "zqx" in header["studio.triggers"] and "sks" in header["studio.triggers"]


@pytest.mark.parametrize("model", MODELS)
def test_evaluate_mine_and_face_to_animal_take_it(studio, model, tmp_path):
    from studio.evaluate import EvaluationRequest, evaluate, parse_variant
    from studio.generate.animal import AnimalRequest, ControlChoice, face_to_animal
    from studio.mine import MiningRequest, mine
    from studio.mine.disk import mining_folder

    animal = face_to_animal(studio, AnimalRequest(image=astronaut(), model=model, size=64, steps=2, seed=5,
                                                  controls=[ControlChoice("canny")], save=False))
    label = studio.store.resolve(model).family.label
    assert any(f"no canny ControlNet fits {model}" in n for n in animal.notes), animal.notes
    assert parse_parameters(animal.images[0].parameters)["Denoising strength"]
    report = evaluate(studio, EvaluationRequest(name="e", prompts=["a photo of a dog"], seeds=[1], steps=2, width=64,
                                                height=64, variants=[parse_variant(f"a={model}"),
                                                                     parse_variant(f"b={model}")]))
    assert report.status == "complete" and len(report.rows) == 2
    result = mine(studio, MiningRequest("m", prompt="a photo of a person", model=model, steps=2, width=64,
                                        height=64, max_candidates=2), mining_folder(studio.settings, "m"))
    assert result.state.counts["candidates"] == 2, label


def test_presets_by_gpu_memory_for_each_family():
    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset

    def store(*keys):
        return [apply_preset(RunConfig(name="x", dataset="x"), k).check().base_precision for k in keys]

    assert store("zimage-12gb", "zimage-16gb", "zimage-24gb") == ["nf4", "int8", "bf16"]
    assert store("flux2-klein-10gb", "flux2-klein-16gb", "flux2-klein9b-16gb", "flux2-klein9b-24gb") == [
        "int8", "bf16", "int8", "bf16"]
    assert store("qwenimage-24gb", "qwenimage-48gb") == ["nf4", "int8"]
    assert apply_preset(RunConfig(name="x", dataset="x"), "zimage-12gb").timestep_sampling == "shift"
