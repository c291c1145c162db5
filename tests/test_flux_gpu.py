"""FLUX.1's memory tiers on a CUDA GPU: LoRA training steps through the studio's own loop on FLUX.1 at its real
widths (1 + 1 transformer blocks, studio.models.families.flux1_builds.build_flux_at_real_widths) at 512 and 1024 px, the frozen
transformer stored as bf16, fp8 or int8 (torchao) or nf4 (bitsandbytes), as the flux-* presets train: bf16
autocast, gradient checkpointing, cached latents and text embeddings (T5 unloaded before the transformer loads).

Marked gpu, so skipped by default; `pytest -m gpu tests/test_flux_gpu.py -s` runs them and prints each tier's
stored bytes and peak allocated memory during the steps (bench/flux.py --device cuda measures the same tiers
outside the loop)."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass

import pytest

from tests.train_helpers import astronaut, make_dataset

pytestmark = pytest.mark.gpu
TIERS = ("bf16", "fp8", "int8", "nf4")
SIDES = (512, 1024)  # 1024 and 4096 packed image tokens, as on the real FLUX.1
STEPS = 3
MB = 2 ** 20


@dataclass
class Measured:
    stored: int  # bytes the GPU holds for the transformer stored as the tier says (ModelStore.load_denoiser)
    at_start: int  # bytes the run holds when its first step starts (over what the process held before the run)
    peak: int  # peak allocated bytes during the steps, over the same baseline
    losses: list


@pytest.fixture(scope="module")
def measure(tmp_path_factory):
    """measure(tier, side) -> Measured, each trained once for the module (the 1024 px comparison reuses them)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from studio.context import Studio
    from studio.models.families.flux1_builds import build_flux_at_real_widths
    from studio.settings import Settings

    root = tmp_path_factory.mktemp("flux-gpu")
    model = build_flux_at_real_widths(root / "flux-real-widths", t5_layers=1, clip_layers=1)
    settings = Settings(root=root, models_dir=root / "models", workspace_dir=root / "workspace", allow_downloads=False,
                        device="cuda")
    studio = Studio.open(settings)
    for side in SIDES:
        make_dataset(settings, f"ds{side}", [astronaut((side, side)), astronaut((side, side)).rotate(90)],
                     ["sks, a photo of a person", "sks, a person, turned"])
    done = {}

    def run(tier: str, side: int) -> Measured:
        if tier == "nf4":
            pytest.importorskip("bitsandbytes", reason="the nf4 tier needs bitsandbytes")
        if (tier, side) not in done:
            done[tier, side] = _train(studio, str(model), tier, side)
            m = done[tier, side]
            print(f"\n{tier:>5} at {side} px: transformer stored {m.stored / MB:.0f} MB, held at the first step "
                  f"{m.at_start / MB:.0f} MB, peak during {STEPS} steps {m.peak / MB:.0f} MB (allocated)")
        return done[tier, side]

    return run


def _train(studio, model: str, tier: str, side: int) -> Measured:
    import torch

    from studio.train.config import RunConfig
    from studio.train.loop import train
    from studio.train.runlog import RunLog, read_events

    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    transformer = studio.store.load_denoiser(studio.store.resolve(model), device="cuda", base_precision=tier)
    stored = torch.cuda.memory_allocated() - before
    del transformer
    gc.collect()
    torch.cuda.empty_cache()

    class PeakLog(RunLog):  # the loop sets its status to running just before its first step
        def status(self, state, message="", **fields):
            super().status(state, message, **fields)
            if state == "running":
                torch.cuda.synchronize()
                self.at_start = torch.cuda.memory_allocated() - base
                torch.cuda.reset_peak_memory_stats()

    config = RunConfig(name=f"{tier}-{side}", dataset=f"ds{side}", model=model, trigger="sks", resolution=side,
                       max_steps=STEPS, epochs=0, validation_every=0, validation_prompts=[], cache=True, buckets=False,
                       rank=16, alpha=16.0, lora_layers="transformer", mixed_precision="bf16", base_precision=tier,
                       gradient_checkpointing=True, optimizer="adamw", max_sequence_length=512, device="cuda",
                       seed=0).check()
    run_dir = studio.settings.runs_dir / config.name
    base = torch.cuda.memory_allocated()
    log = PeakLog(run_dir)
    try:
        train(studio.store, studio.settings, config, run_dir, log=log, should_stop=lambda: False)
    finally:
        log.close()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base  # the steps, then the export of a small LoRA file
    losses = [e["loss"] for e in read_events(run_dir) if e["type"] == "step"]
    return Measured(stored, log.at_start, peak, losses)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("tier", TIERS)
def test_a_flux_lora_trains_on_every_tier_and_the_quantized_ones_store_less(measure, tier, side):
    m = measure(tier, side)
    assert len(m.losses) == STEPS and all(math.isfinite(loss) for loss in m.losses)
    if tier != "bf16":
        # fp8 and int8 halve the block weights (nearly all of them), nf4 quarters them
        assert m.stored < 0.75 * measure("bf16", side).stored


def test_at_1024_px_the_quantized_tiers_peak_below_bf16(measure):
    base = measure("bf16", 1024)
    rows = [f"{'tier':>5} {'stored MB':>10} {'peak MB':>9} {'peak / bf16':>12}"]
    for tier in TIERS:
        try:
            m = measure(tier, 1024)
        except pytest.skip.Exception as skipped:
            rows.append(f"{tier:>5} skipped: {skipped}")
            continue
        rows.append(f"{tier:>5} {m.stored / MB:10.0f} {m.peak / MB:9.0f} {m.peak / base.peak:12.2f}")
        if tier != "bf16":
            assert m.peak < base.peak, f"{tier} peaked at {m.peak / MB:.0f} MB, bf16 at {base.peak / MB:.0f} MB"
    print("\nFLUX.1 at real widths, 1 + 1 blocks, LoRA rank 16, 1024 px, batch 1:\n" + "\n".join(rows))
