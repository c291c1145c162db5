"""The memory plan (studio/train/plan.py, fit.py): real configs counted on the meta device (no weights), what fits a
GPU of a given size and what is named when a run does not, the presets on their own GPU sizes, `train --dry-run`,
and the refusal before a run is queued (and --force)."""

from __future__ import annotations

import re

import pytest

from tests.train_helpers import astronaut, make_dataset, tiny_config

GiB = 2**30


def _check(studio, variant: str, gb: float, **settings):
    from studio.devices import planned_gpu
    from studio.models.configs import variant_folder
    from studio.train import fit
    from studio.train.config import RunConfig

    config = RunConfig(name="plan", dataset="plan", model=str(variant_folder(variant)), **settings)
    return fit.check(studio.store, config, planned_gpu(gb))


def test_an_sdxl_lora_with_the_12gb_preset_plans_under_12_gb_and_counts_the_real_unet(studio):
    from studio.train.presets import PRESETS, preset_name

    config, verdict = _check(studio, "sdxl-base", 12, **PRESETS[preset_name("sdxl-12gb")])
    assert (config.mixed_precision, config.gradient_checkpointing, config.resolution) == ("bf16", "on", 1024)
    assert verdict.fits and verdict.plan.peak.gb < 11.5
    # SDXL's UNet has 2,567,463,684 parameters: in bf16 on the device from the load on
    load = dict(verdict.plan.phase("load").items)
    assert load["unet (bf16)"] == 2_567_463_684 * 2
    assert load["text_encoder_2"] == 694_659_840 * 2  # OpenCLIP bigG, frozen in bf16
    # the last line, as docs/memory.md shows it: SDXL's VAE decoding at 1024 px makes validation the peak
    assert re.fullmatch(r"peak 1[01]\.\d GB in validation", verdict.lines()[-1]), verdict.lines()[-1]


def test_the_same_lora_in_float32_without_checkpointing_does_not_fit_12_gb_and_says_what_would(studio):
    config, verdict = _check(studio, "sdxl-base", 12, mixed_precision="no", gradient_checkpointing="off",
                             resolution=1024)
    assert verdict.fits is False
    assert dict(verdict.plan.phase("steps").items)["unet (float32)"] == 2_567_463_684 * 4
    said = " ".join(verdict.advice)
    assert "the preset sdxl-12gb fits" in said  # the largest SDXL tier that fits 12 GB
    assert "mixed_precision bf16" in said  # and the settings, cheapest first


def test_sd15_dreambooth_in_float32_is_refused_on_8_gb_naming_a_preset(studio):
    config, verdict = _check(studio, "sd15", 8, method="dreambooth", mixed_precision="no")
    assert verdict.fits is False
    steps = dict(verdict.plan.phase("steps").items)
    unet = 859_520_964  # SD 1.5's UNet: weights, gradients (float32) and AdamW's two moments
    assert steps["weights of the unet (float32)"] == unet * 4 and steps["AdamW states"] == unet * 8
    assert verdict.plan.peak.gb > 13
    assert any("sd15-8gb" in a and "a lora instead of a dreambooth" in a for a in verdict.advice), verdict.advice
    assert "sd15-8gb" in verdict.refusal()


def test_flux_block_swap_keeps_blocks_off_the_device_and_t5_leaves_before_the_steps(studio):
    common = dict(base_precision="fp8", mixed_precision="bf16", gradient_checkpointing="on", resolution=512)
    _, kept = _check(studio, "flux1-dev", 24, **common)
    _, swapped = _check(studio, "flux1-dev", 24, blocks_to_swap=12, **common)
    # T5-XXL (4,762,310,656 parameters) encodes in bf16, and only while captions are cached
    assert dict(kept.plan.phase("caching").items)["text_encoder_2"] == 4_762_310_656 * 2
    assert not any(what.startswith("text_encoder") for what, _ in kept.plan.phase("steps").items)
    # the last 12 blocks are single-stream ones (141,591,808 parameters each, a byte each in fp8) and stay on the
    # CPU; two of them are on the device at a time while they run
    saved = kept.plan.phase("steps").bytes - swapped.plan.phase("steps").bytes
    assert saved == pytest.approx(10 * 141_591_808, abs=16)


@pytest.mark.parametrize("variant", ["sd15", "sdxl-base", "flux1-dev", "zimage-base", "flux2-klein-4b",
                                     "flux2-klein-9b", "qwen-image"])
def test_every_gpu_tier_preset_fits_its_own_gpu_in_the_plan(studio, variant):
    from studio.models import families
    from studio.models.configs import variant_folder
    from studio.models.config_sizes import model_sizes
    from studio.train.fit import _tier
    from studio.train.presets import PRESETS

    family = next(f for f in families.all_families() if variant in (f.default_variant, f.planned_variant(variant)))
    keys = family.gpu_presets_for(model_sizes(variant_folder(variant), family).denoiser_config)
    assert keys
    targets = {"flux-24gb": 22.0, "flux-16gb": 15.0, "flux-12gb": 11.5, "flux-8gb": 7.5, "sdxl-12gb": 11.5,
               "sd15-8gb": 7.5}  # issue 23's
    for key in keys:
        gb = _tier(key)
        _, verdict = _check(studio, variant, gb, **PRESETS[key])
        assert verdict.plan.peak.gb <= targets.get(key, gb), (key, verdict.lines())


def _main(settings, *flags):
    from studio.cli import main

    return main(["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", "train",
                 "--model", "builtin:tiny", "--resolution", "64", *flags])


def test_dry_run_prints_the_plan_and_exits_by_whether_it_fits(settings, capsys):
    assert _main(settings, "--dry-run", "--vram-gb", "24") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("memory plan of a rank-4 LoRA (attention) on builtin:tiny (SD 1.x), 64 px")
    assert re.fullmatch(r"peak \d+\.\d GB in (load|caching|steps|validation|export)", lines[-1]), lines[-1]
    assert any(line.startswith("fits a GPU of 24 GB") for line in lines)
    assert _main(settings, "--dry-run", "--vram-gb", "0.25") == 2  # less than the CUDA context alone
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("does not fit a GPU of 0.25 GB") for line in lines)
    assert re.fullmatch(r"peak \d+\.\d GB in \w+", lines[-1])
    assert _main(settings, "--dry-run") == 0  # the CPU: the plan of the run there, and how to ask for a GPU's
    out = capsys.readouterr().out
    assert "on the CPU (its RAM)" in out and "give --vram-gb N" in out


def test_a_run_that_does_not_fit_is_refused_before_it_is_queued_and_force_starts_it(studio):
    from studio.train import jobs

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    with pytest.raises(ValueError, match=r"this run needs about \d+\.\d GB .* a GPU of 0.25 GB has 0.25 GB"):
        jobs.start_run(studio, tiny_config(name="big"), vram_gb=0.25)
    assert jobs.list_runs(studio) == []
    status = jobs.start_run(studio, tiny_config(name="big"), vram_gb=0.25, force=True)
    status = jobs.wait_run(studio, "big", timeout_s=180)
    assert status.state == "done", status.message
    assert status.config.mixed_precision == "bf16"  # decided for the GPU planned for, and said in the log
    assert any(m.startswith("mixed precision bf16: a GPU of 0.25 GB computes in bf16") for m in status.messages)
    assert any(m.startswith("forced: the memory plan says about") for m in status.messages)


def test_whole_model_methods_are_refused_up_front_without_loading_a_weight(studio):
    from studio.models.configs import variant_folder
    from studio.train import jobs

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    sdxl = str(variant_folder("sdxl-base"))  # configs only: a load would fail, the plan does not load
    with pytest.raises(ValueError, match="sdxl-24gb fits.*a lora instead of a dreambooth"):
        jobs.start_run(studio, tiny_config(method="dreambooth", model=sdxl, resolution=1024), vram_gb=24)


def test_device_defaults_are_decided_at_launch_and_an_older_run_json_reads_its_bool():
    from studio.devices import DeviceFacts
    from studio.train.config import RunConfig
    from studio.train.fit import decide_defaults

    config = RunConfig(name="x", dataset="x")
    assert (config.mixed_precision, config.gradient_checkpointing) == ("auto", "auto")
    on_cpu, said = decide_defaults(None, config, DeviceFacts("cpu", None, False, "the CPU"))
    assert (on_cpu.mixed_precision, on_cpu.gradient_checkpointing) == ("no", "off") and len(said) == 2
    old = RunConfig.from_json({**config.to_json(), "gradient_checkpointing": True, "mixed_precision": "no"})
    assert old.gradient_checkpointing == "on"


def test_a_hub_id_whose_family_is_not_known_yet_starts_without_a_plan_and_says_so(studio):
    from studio.devices import planned_gpu
    from studio.train import fit
    from studio.train.config import RunConfig

    config = RunConfig(name="x", dataset="x", model="someone/some-sd-model")  # an SD repo's name tells no family
    decided, said = fit.fit_or_refuse(studio.store, config, planned_gpu(12))
    assert (decided.mixed_precision, decided.gradient_checkpointing) == ("bf16", "on")
    assert said[-1].startswith("no memory plan: `model` 'someone/some-sd-model': its family is not known")
    with pytest.raises(fit.NotPlanned):
        fit.check(studio.store, config, planned_gpu(12))


def test_t5_encodes_on_the_cpu_where_the_plan_says_it_does_not_fit_the_gpu(studio, monkeypatch):
    from studio import devices
    from studio.models.configs import variant_folder
    from studio.train import fit
    from studio.train.config import RunConfig
    from studio.train.presets import PRESETS

    config = RunConfig(name="x", dataset="x", model=str(variant_folder("flux1-dev")), **PRESETS["flux-8gb"])
    for gb, on_cpu in ((8, True), (12, False)):  # T5-XXL in bf16 is 8.9 GB
        # what nvidia-smi would say of a card of `gb` GB (no GPU here)
        monkeypatch.setattr(devices, "device_facts", lambda device, gb=gb: devices.planned_gpu(gb))
        assert fit.text_on_cpu(studio.store, config, "cuda:0") is on_cpu
