"""The training load path: every part of the base read in the dtype it keeps while the run trains (a frozen part never
materialized in float32 to be cast after), from folders and from single files; a staged run of a transformer family
reading a single file's transformer alone; block swapping giving the losses and the LoRA of no swapping."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.train_helpers import astronaut, make_dataset, tiny_config, train_in_process

BF16, FP32 = torch.bfloat16, torch.float32


def _loaded_dtypes(studio, monkeypatch) -> list[dict]:
    """Spy on the store's loads: for each, part -> the set of its parameters' dtypes as the loader returns them."""
    store_type = type(studio.store)
    real_base, real_denoiser = store_type.load_base, store_type.load_denoiser
    seen = []

    def dtypes(module):
        return {p.dtype for p in module.parameters()}

    def load_base(self, ref, **kwargs):
        pipe = real_base(self, ref, **kwargs)
        seen.append({name: dtypes(m) for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)})
        return pipe

    def load_denoiser(self, ref, **kwargs):
        model = real_denoiser(self, ref, **kwargs)
        seen.append({ref.family.denoiser_name: dtypes(model)})
        return model

    monkeypatch.setattr(store_type, "load_base", load_base)
    monkeypatch.setattr(store_type, "load_denoiser", load_denoiser)
    return seen


@pytest.mark.parametrize("model,changes,expected", [
    # a LoRA under bf16: everything frozen, so everything in bf16 (SDXL's VAE in float32: it overflows in half)
    ("builtin:tiny", dict(method="lora"), {"unet": {BF16}, "text_encoder": {BF16}, "vae": {BF16}}),
    ("builtin:tiny-xl", dict(method="lora"),
     {"unet": {BF16}, "text_encoder": {BF16}, "text_encoder_2": {BF16}, "vae": {FP32}}),
    # DreamBooth trains the UNet (float32), the text encoder stays frozen (bf16)
    ("builtin:tiny", dict(method="dreambooth"), {"unet": {FP32}, "text_encoder": {BF16}, "vae": {BF16}}),
    # textual inversion trains the text encoder's table (float32), the UNet stays frozen
    ("builtin:tiny", dict(method="textual-inversion"), {"unet": {BF16}, "text_encoder": {FP32}, "vae": {BF16}}),
])
def test_frozen_parts_are_read_in_the_dtype_they_keep(studio, monkeypatch, model, changes, expected):
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    seen = _loaded_dtypes(studio, monkeypatch)
    train_in_process(studio, tiny_config(model=model, mixed_precision="bf16", max_steps=1, **changes))
    assert seen[0] == expected


def test_a_staged_run_reads_the_text_encoders_then_the_transformer_each_in_its_dtype(studio, monkeypatch):
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    seen = _loaded_dtypes(studio, monkeypatch)
    train_in_process(studio, tiny_config(model="builtin:tiny-flux", mixed_precision="bf16", max_steps=1))
    # first CLIP, T5 and the VAE without the transformer; then the transformer alone, in bf16 from the start
    assert seen == [{"text_encoder": {BF16}, "text_encoder_2": {BF16}, "vae": {BF16}}, {"transformer": {BF16}}]


def test_an_a1111_file_reads_each_part_in_its_dtype(studio, tmp_path, monkeypatch):
    from studio.models import families
    from tests.single_files import carry_tiny, tiny_sdxl

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    wide = tiny_sdxl(tmp_path / "tiny-xl-wide")  # text encoders of two widths, as a single file needs them
    carry_tiny(monkeypatch, tmp_path, "sdxl-base", wide)
    path = studio.settings.models_dir / "base" / "xl.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(families.get("sdxl").single_file_state(wide), str(path))
    seen = _loaded_dtypes(studio, monkeypatch)
    train_in_process(studio, tiny_config(model=str(path), mixed_precision="bf16", max_steps=1))
    # the UNet and text encoders read in bf16 as they are converted; the VAE alone, in float32 from the start
    assert seen[0] == {"unet": {BF16}, "text_encoder": {BF16}, "text_encoder_2": {BF16}, "vae": {FP32}}
    pipe = studio.store.load_base(studio.store.resolve(str(path)), dtype={"default": BF16, "vae": FP32},
                                  device="cpu")
    theirs = wide.vae.state_dict()  # not rounded through bf16 on the way
    assert all(torch.equal(t, theirs[k]) for k, t in pipe.vae.state_dict().items())


def test_a_staged_run_from_a_comfyui_file_reads_its_transformer_once_and_alone(studio, monkeypatch):
    from studio.models.families import z_image_files

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    with studio.cache.pipeline("builtin:tiny-zimage") as pipe:
        state = z_image_files.comfy_state(pipe.transformer)
    studio.cache.release()
    path = studio.settings.models_dir / "base" / "tiny_zimage_comfy.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in state.items()}, str(path),
              metadata={"studio.base_model": "builtin:tiny-zimage"})  # its folder gives configs and other parts
    reads = []
    real = z_image_files.zimage_transformer
    monkeypatch.setattr(z_image_files, "zimage_transformer",
                        lambda store, ref, *, dtype: reads.append(dtype) or real(store, ref, dtype=dtype))
    seen = _loaded_dtypes(studio, monkeypatch)
    result = train_in_process(studio, tiny_config(model=str(path), mixed_precision="bf16", max_steps=1))
    assert result.steps == 1
    assert reads == [BF16]  # not read with the text encoder, read once for the steps, in the dtype it keeps
    assert seen == [{"text_encoder": {BF16}, "vae": {BF16}}, {"transformer": {BF16}}]


def test_block_swapping_trains_as_without_it(studio):
    """On the CPU the weights' holding place and the device are one memory, so what this proves is the hooks: every
    swapped block is let go (its frozen weights become meta tensors, which no computation takes) and brought in again
    for each forward, the recomputation in the backward pass included, and its LoRA layers stay where they train.
    The losses and the LoRA after the steps are those of a run without swapping, to the last bit."""
    from studio.models.families.flux1 import Flux1
    from studio.train import swap

    make_dataset(studio.settings, "ds", [astronaut(), astronaut((64, 64)).rotate(90)], ["sks", "sks, turned"])
    common = dict(model="builtin:tiny-flux", mixed_precision="bf16", gradient_checkpointing=True, max_steps=3,
                  lr=5e-3, lora_layers="transformer", validation_every=1)
    plain = train_in_process(studio, tiny_config(name="plain", **common))
    made = []
    real = swap.BlockSwap.__init__

    def keep(self, blocks, device):
        real(self, blocks, device)
        made.append(self)

    swap.BlockSwap.__init__ = keep
    try:
        swapped = train_in_process(studio, tiny_config(name="swapped", blocks_to_swap=2, **common))
    finally:
        swap.BlockSwap.__init__ = real
    (used,) = made
    assert len(used.blocks) == 2  # tiny-flux's one double and one single block, both swapped
    for block in used.blocks:
        frozen = [p for p in block.parameters() if not p.requires_grad]
        trained = [p for p in block.parameters() if p.requires_grad]
        assert frozen and all(p.is_meta for p in frozen)  # let go between runs of the block
        assert trained and all(p.device.type == "cpu" and not p.is_meta for p in trained)  # the LoRA stays
    # base loss + 3 steps (each block once forward, once recomputed for backward) and the validations' sampling
    assert used.brought_in >= 2 * (1 + 2 * 3)
    assert [e["loss"] for e in _steps(studio, "swapped")] == [e["loss"] for e in _steps(studio, "plain")]
    a, b = load_file(str(plain.files[0])), load_file(str(swapped.files[0]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert Flux1.block_lists == ("transformer_blocks", "single_transformer_blocks")


def _steps(studio, name: str) -> list[dict]:
    from studio.train.runlog import read_events

    return [e for e in read_events(studio.settings.runs_dir / name) if e["type"] == "step"]


def test_block_swapping_refuses_what_it_cannot_do(studio):
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    flux = dict(model="builtin:tiny-flux", gradient_checkpointing=True)
    # (checkpointing asked off: its default, auto, is turned on by block swapping)
    for changes, message in ((dict(blocks_to_swap=1, gradient_checkpointing="off"),
                              "`blocks_to_swap` needs `gradient_checkpointing`"),
                             (dict(flux, blocks_to_swap=1, method="dreambooth"), "trains the whole transformer"),
                             (dict(flux, blocks_to_swap=1, base_precision="nf4"), "use fp8 or int8"),
                             (dict(flux, blocks_to_swap=3), "has only 2 blocks"),
                             (dict(blocks_to_swap=1, gradient_checkpointing=True), "an SD 1.x UNet trains")):
        with pytest.raises(ValueError, match=message):
            train_in_process(studio, tiny_config(name="refused", **changes))


@pytest.mark.parametrize("model", ["builtin:tiny", "builtin:tiny-xl"])
def test_validation_decodes_outside_autocast_in_the_vaes_dtype(studio, monkeypatch, model):
    """The steps and the denoiser's sampling run under bf16 autocast (frozen weights in half precision); the VAE's
    decoder must not: SDXL's overflows in fp16, so it is kept in float32 and must run so."""
    from diffusers.models.autoencoders import vae as vae_module

    real = vae_module.Decoder.forward
    seen = []

    def watching(self, z, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), z.dtype, next(self.parameters()).dtype))
        return real(self, z, *args, **kwargs)

    monkeypatch.setattr(vae_module.Decoder, "forward", watching)
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    result = train_in_process(studio, tiny_config(model=model, mixed_precision="bf16", max_steps=1,
                                                   validation_every=1))
    assert result.validations and seen
    vae = FP32 if model == "builtin:tiny-xl" else BF16
    assert set(seen) == {(False, vae, vae)}


def test_whole_model_checkpoints_are_written_as_asked_and_kept_as_the_disk_allows(studio, monkeypatch):
    """A finetune writes its checkpoint (weights, EMA average, optimizer state) at the end unless asked for more,
    says how big each is and what the EMA on the CPU copies a step; a disk with room for two keeps only the latest."""
    import shutil

    from studio.train import checkpoints

    make_dataset(studio.settings, "ds", [astronaut(), astronaut((64, 64)).rotate(90)], ["sks", "sks"])
    common = dict(method="finetune", ema="cpu", epochs=3, max_steps=0, validation_every=1, validation_by="epochs")
    written = []
    real = checkpoints.save_checkpoint
    monkeypatch.setattr(checkpoints, "save_checkpoint", lambda run_dir, step, *a, **k: written.append(
        (run_dir.name, step, k["keep_validated"])) or real(run_dir, step, *a, **k))
    train_in_process(studio, tiny_config(name="default", **common))
    assert [(n, s) for n, s, _ in written] == [("default", 6)]  # 2 steps an epoch, 3 epochs: at the end only
    messages = _messages(studio, "default")
    unet = sum(p.numel() for p in studio.store.load_base(studio.store.resolve("builtin:tiny"), dtype=FP32,
                                                         device="cpu").unet.parameters())
    size = unet * (4 + 4 + 8)  # float32 weights, their EMA average, AdamW's two moments
    assert any(m.startswith(f"whole-model checkpoints take {size / 1e9:.2f} GB each") for m in messages)
    assert f"EMA on the CPU: each step copies the {unet * 4 / 1e9:.2f} GB of trained weights from cpu" in \
        "\n".join(messages)
    written.clear()
    usage = shutil.disk_usage(studio.settings.runs_dir)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2 * size + size // 2))
    train_in_process(studio, tiny_config(name="asked", save_every_epochs=1, **common))
    assert written == [("asked", 2, False), ("asked", 4, False), ("asked", 6, False)]  # room for two: latest only
    assert any("the disk holds 2 checkpoints" in m for m in _messages(studio, "asked"))


def _messages(studio, name: str) -> list[str]:
    from studio.train.runlog import read_events

    return [e["text"] for e in read_events(studio.settings.runs_dir / name) if e["type"] == "message"]
