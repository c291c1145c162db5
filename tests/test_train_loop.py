"""The training loop on tiny SD 1.x and SDXL models: every method runs, it learns, resume is exact, cancel keeps a
checkpoint, a NaN stops cleanly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.progress import Cancelled
from studio.train import checkpoints
from tests.train_helpers import astronaut, chelsea, make_dataset, tiny_config, train_in_process


@pytest.mark.parametrize("model", ["builtin:tiny", "builtin:tiny-xl"])
@pytest.mark.parametrize("method", ["lora", "dreambooth", "textual-inversion"])
def test_each_method_trains_and_exports(studio, method, model):
    make_dataset(studio.settings, "ds", [astronaut(), chelsea()], ["sks, a photo", None])
    config = tiny_config(name=f"{method}-{model[8:]}", method=method, model=model, text_encoder_lr=1e-4,
                         prior_preservation=method == "dreambooth", class_images=1, validation_every=1)
    result = train_in_process(studio, config)
    assert result.steps == 2
    assert all(p.exists() for p in result.files)
    models = studio.settings.models_dir
    expected = {"lora": models / "lora" / f"{config.name}.safetensors",
                "textual-inversion": models / "embeddings" / "sks.safetensors",
                "dreambooth": models / "base" / f"{config.name}.safetensors"}[method]
    assert expected in result.files
    assert result.validations and all(v.grid for v in result.validations)
    if method != "dreambooth":
        from safetensors import safe_open

        with safe_open(str(expected), "pt") as f:
            meta = f.metadata()
        assert meta["studio.base_model"] == model and meta["studio.trigger"] == "sks" and meta["studio.steps"] == "2"
        assert len(meta["studio.dataset_hash"]) == 16


def _fixed_loss(pipe, image, prompt: str) -> float:
    """Denoising loss of `image` at fixed timesteps and noise: comparable before and after training."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
        ids = pipe.tokenizer([prompt], padding="max_length", max_length=77, return_tensors="pt").input_ids
        hidden = pipe.text_encoder(ids)[0]
        g = torch.Generator().manual_seed(0)
        losses = []
        for t in (50, 200, 400, 600, 800):
            noise = torch.randn(latents.shape, generator=g)
            noisy = pipe.scheduler.add_noise(latents, noise, torch.tensor([t]))
            pred = pipe.unet(noisy, t, hidden).sample
            losses.append(torch.nn.functional.mse_loss(pred, noise).item())
    return float(np.mean(losses))


def _image(pipe) -> np.ndarray:
    out = pipe("sks", num_inference_steps=10, guidance_scale=1.0, width=64, height=64, output_type="np",
               generator=torch.Generator().manual_seed(1))
    return out.images[0]


def test_lora_learns_one_image(studio):
    from diffusers import DDPMScheduler

    image = astronaut()
    make_dataset(studio.settings, "ds", [image], ["sks"])
    pipe = studio.store.load_base(studio.store.resolve("builtin:tiny"), dtype=torch.float32, device="cpu")
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    target = np.asarray(image, dtype=np.float32) / 255
    loss_before, distance_before = _fixed_loss(pipe, image, "sks"), ((_image(pipe) - target) ** 2).mean()

    result = train_in_process(studio, tiny_config(max_steps=40, lr=1e-2, rank=8, alpha=8))

    pipe.load_lora_weights(str(result.files[1]))  # the diffusers/peft export
    loss_after, distance_after = _fixed_loss(pipe, image, "sks"), ((_image(pipe) - target) ** 2).mean()
    assert loss_after < loss_before * 0.98, (loss_before, loss_after)
    assert distance_after < distance_before, (distance_before, distance_after)


def test_resume_equals_an_uninterrupted_run(studio):
    make_dataset(studio.settings, "ds", [astronaut(), chelsea()], ["sks, red, face, photo", "sks, cat"])
    # flips, caption shuffle, dropout, two micro-batches per step and a cosine schedule all draw random numbers
    common = dict(max_steps=6, repeats=3, flip=True, shuffle_captions=True, dropout=0.1, grad_accum=2,
                  lr_scheduler="cosine_with_restarts", lr_cycles=2, lr=1e-3, cache=True)
    whole = train_in_process(studio, tiny_config(name="whole", **common))

    calls = {"n": 0}

    def stop_after_two_steps():  # asked after every step: epochs are 3 steps, so this stops mid-epoch
        calls["n"] += 1
        return calls["n"] >= 2

    with pytest.raises(Cancelled):
        train_in_process(studio, tiny_config(name="parts", **common), should_stop=stop_after_two_steps)
    kept = checkpoints.latest_checkpoint(studio.settings.runs_dir / "parts")
    assert kept is not None and kept.step == 2
    resumed = train_in_process(studio, tiny_config(name="parts", **common), resume=True)
    assert resumed.steps == whole.steps == 6

    from safetensors.torch import load_file

    a, b = load_file(str(whole.files[1])), load_file(str(resumed.files[1]))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert not torch.equal(a[next(iter(a))], torch.zeros_like(a[next(iter(a))]))


def test_cancel_leaves_a_loadable_checkpoint(studio):
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    with pytest.raises(Cancelled):
        train_in_process(studio, tiny_config(max_steps=50), should_stop=lambda: True)
    kept = checkpoints.latest_checkpoint(studio.settings.runs_dir / "run")
    assert kept.step == 1
    weights, training = checkpoints.load_checkpoint(kept)
    pipe = studio.store.load_base(studio.store.resolve("builtin:tiny"), dtype=torch.float32, device="cpu")
    pipe.load_lora_weights(weights)  # diffusers' own loader takes the checkpoint's LoRA as it is
    assert "optimizer" in training and training["history"] is not None


def test_nan_loss_stops_cleanly_and_keeps_the_good_checkpoint(studio, monkeypatch):
    from studio.train import loop

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    run_dir = studio.settings.runs_dir / "nanrun"
    real = loop.reduce  # the step's loss, from the family's objective
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(loop, "reduce", poisoned)
    with pytest.raises(loop.TrainingDiverged, match=r"loss became nan at step 3.*step 2 is kept"):
        # one image: 1-step epochs. The collapse guard's loss signal is off (its base-loss probe would be the first
        # call of `reduce`): a NaN is caught without it
        train_in_process(studio, tiny_config(name="nanrun", max_steps=5, guard_loss_factor=0))
    kept = checkpoints.latest_checkpoint(run_dir)
    assert kept.step == 2
    weights, _ = checkpoints.load_checkpoint(kept)
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (studio.settings.models_dir / "lora" / "nanrun.safetensors").exists()


@pytest.mark.parametrize("method,model", [("lora", "builtin:tiny"), ("lora", "builtin:tiny-xl"),
                                          ("textual-inversion", "builtin:tiny"), ("dreambooth", "builtin:tiny-xl")])
def test_bf16_mixed_precision_on_the_cpu(studio, method, model):
    """The GPU's mixed-precision path (frozen weights in half precision, trained ones in float32, autocast),
    exercised with bfloat16, which CPUs run too."""
    from safetensors.torch import load_file

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    config = tiny_config(method=method, model=model, mixed_precision="bf16", gradient_checkpointing=True,
                         text_encoder_lr=1e-4, validation_every=1)
    result = train_in_process(studio, config)
    assert result.steps == 2 and result.validations
    if method != "dreambooth":
        weights = load_file(str(result.files[0]))
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())


def test_fp16_needs_a_gpu(studio):
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    with pytest.raises(ValueError, match="mixed_precision"):
        train_in_process(studio, tiny_config(mixed_precision="fp16", device="cpu"))


def test_validation_scores_faces_and_marks_the_best_epoch(studio, monkeypatch):
    """With a dataset that has a face, each validation image gets a sim-score and the best epoch is the one whose
    images are closest (the tiny model draws no faces, so generation is replaced by real photos here)."""
    from skimage import data as skdata
    from PIL import Image

    from studio.train import sampling

    face = Image.fromarray(skdata.astronaut())
    make_dataset(studio.settings, "ds", [face], ["sks"])
    reference = sampling.reference_encodings([studio.settings.datasets_dir / "ds" / "000.png"])
    assert reference is not None and reference.shape == (1, 128)
    cat = studio.settings.root / "cat.png"
    chelsea((256, 256)).save(cat)
    assert sampling.reference_encodings([cat]) is None  # no face: the run gets grids without scores

    pictures = {1: [chelsea((256, 256)), face], 2: [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]}
    parts = object()
    results = []
    for epoch, images in pictures.items():
        served = iter(images)
        monkeypatch.setattr(sampling, "_generate", lambda parts, prompts, *args: [next(served) for _ in prompts])
        config = tiny_config(validation_prompts=["a photo of {trigger}", "{trigger} smiling"])
        results.append(sampling.validate(parts, config, epoch, studio.settings.runs_dir / "run", reference,
                                         lambda p: p))
        assert next(served, None) is None  # one picture per prompt
    first, second = results
    assert first.scores[0] is None and first.scores[1] < 0.1  # the cat has no face; the astronaut is herself
    assert second.mean_score is not None and len(second.scores) == 2
    assert Image.open(second.grid).size == (2 * face.width, face.height)
    # Epoch 1's one face is closer (it is the reference itself), but its other picture has none: epoch 2 keeps the
    # subject in every picture, so it is the best.
    assert first.mean_score < second.mean_score
    assert sampling.best_epoch([(r.epoch, r.scores) for r in results]) == 2
    assert sampling.best_epoch([(1, [0.3, 0.5]), (2, [0.2, 0.6]), (3, [None, None])]) == 1
    assert sampling.best_epoch([(1, [None])]) is None


def test_validation_by_budget_keeps_the_base_grid_and_reads_the_losses_in_batches(studio):
    """The default: validation by budget (its arithmetic is tests/test_train_schedule.py). What any timing gives:
    the last epoch validated, epoch weights for exactly the validated epochs, the plan and what it cost said in the
    log, every validation scored (faces, beside the steps) before it is logged, a step event per step although the
    losses are read every few steps; a second run finds the base grid kept and draws the same pictures."""
    from PIL import Image

    from studio.train.runlog import read_events

    make_dataset(studio.settings, "ds", [astronaut((256, 256)), chelsea()], ["sks", "sks, cat"])  # a face found
    common = dict(validation_by="budget", validation_every=1, max_steps=24, validation_steps=4,
                  validation_prompts=["a photo of {trigger}", "a cat"])
    first = train_in_process(studio, tiny_config(name="b1", **common))
    run_dir = studio.settings.runs_dir / "b1"
    events = read_events(run_dir)
    validated = [v.epoch for v in first.validations]
    assert validated[-1] == 12 and checkpoints.saved_epochs(run_dir) == validated  # 2 steps an epoch
    said = [e["text"] for e in events if e["type"] == "message"]
    assert any(t.startswith("validation by budget (10% of the run's time): a validation takes") for t in said)
    assert any(t.startswith(f"validated {len(validated)} time") for t in said)
    seen = [e for e in events if e["type"] == "validation"]
    assert [e["stage"] for e in seen] == ["base"] + ["epoch"] * len(validated)
    assert all(len(e["scores"]) == 2 for e in seen)  # the astronaut's face looked for in each picture
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 25)) and all(np.isfinite(e["loss"]) for e in steps)
    assert all(a["time"] <= b["time"] for a, b in zip(steps, steps[1:]))
    kept = list((studio.settings.workspace_dir / ".cache" / "train" / "base_grids").glob("*/grid.json"))
    assert len(kept) == 1

    train_in_process(studio, tiny_config(name="b2", **common))
    said = [e["text"] for e in read_events(studio.settings.runs_dir / "b2") if e["type"] == "message"]
    assert any("the base model's validation grid came from the cache" in t for t in said)
    for i in range(2):
        a, b = (np.asarray(Image.open(studio.settings.runs_dir / r / "samples" / "base" / f"{i:02d}.png"))
                for r in ("b1", "b2"))
        assert np.array_equal(a, b)


def test_trains_on_a_dataset_prepared_by_the_dataset_tab(studio, tmp_path):
    """The Dataset tab's output (face crops, kohya captions, dataset.json) trains as it is; its faces become the
    reference the validation images are scored against."""
    from studio.data import PrepareRequest, prepare_dataset
    from studio.data import dataset_trigger, list_datasets

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    photo = astronaut((512, 512))
    photo.save(uploads / "a.png")
    photo.transpose(0).save(uploads / "b.png")  # mirrored: a second picture of the same face
    prepare_dataset(studio, PrepareRequest(inputs=(uploads,), name="prepared", trigger="ohwx"))
    assert "prepared" in [d.name for d in list_datasets(studio.settings)]
    assert dataset_trigger(studio.settings, "prepared") == "ohwx"

    result = train_in_process(studio, tiny_config(name="prep", dataset="prepared", trigger="ohwx", validation_every=1))
    assert result.steps == 2
    assert result.validations[-1].scores == [None]  # the tiny model draws no face, but the dataset had them
    assert result.best_epoch is None


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["adamw", "adamw8bit"])
@pytest.mark.parametrize("model", ["builtin:tiny", "builtin:tiny-xl"])
def test_fp16_on_a_gpu(studio, optimizer, model):
    """fp16 autocast with loss scaling on CUDA (8-bit AdamW when bitsandbytes is installed); trained weights fp32."""
    from safetensors.torch import load_file

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    result = train_in_process(studio, tiny_config(model=model, device="cuda", mixed_precision="fp16",
                                                  optimizer=optimizer, max_steps=4, validation_every=1))
    weights = load_file(str(result.files[0]))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())


@pytest.mark.gpu
def test_resume_equals_an_uninterrupted_run_on_a_gpu(studio):
    make_dataset(studio.settings, "ds", [astronaut(), chelsea()], ["sks", "sks, cat"])
    common = dict(device="cuda", mixed_precision="fp16", max_steps=4, repeats=2, flip=True, lr=1e-3)
    whole = train_in_process(studio, tiny_config(name="gwhole", **common))
    with pytest.raises(Cancelled):
        train_in_process(studio, tiny_config(name="gparts", **common), should_stop=lambda: True)
    resumed = train_in_process(studio, tiny_config(name="gparts", **common), resume=True)
    from safetensors.torch import load_file

    a, b = load_file(str(whole.files[1])), load_file(str(resumed.files[1]))
    for key in a:  # CUDA kernels may differ in the last bits between runs; fp16 scaling keeps them close
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)
