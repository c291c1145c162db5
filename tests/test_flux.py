"""FLUX.1 as a family: identified from folders, single files and hub ids; generated reproducibly with Forge's fields;
a LoRA trained by flow matching (resumed exactly, moving pictures toward its data, on a quantized base too) and
exported in kohya's layout that loads as the peft export does; refused with both families named where it does not
fit. The kohya round trip through stock diffusers also runs at FLUX.1's real widths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from studio.generate import GenerationRequest, LoraChoice, generate
from studio.generate.parameters import parse_parameters, request_fields
from studio.models import families
from tests.train_helpers import astronaut, make_dataset, tiny_config, train_in_process

FLUX = "builtin:tiny-flux"


def _quick(**changes):
    return GenerationRequest(**{**dict(prompt="a photo of a dog", model=FLUX, seed=7, steps=3, save=False), **changes})


def _pixels(result, i=0):
    return np.asarray(result.images[i].image, dtype=np.float64)


# ---- the family ----------------------------------------------------------------------------------------------------

def test_flux_is_told_from_folders_files_and_hub_ids(session_studio, tmp_path):
    store = session_studio.store
    flux = families.get("flux")
    assert store.resolve(FLUX).family is flux and store.resolve("builtin:tiny-flux-schnell").family is flux
    assert store.resolve("black-forest-labs/FLUX.1-dev").family is flux  # by name: nothing downloaded
    for prefix in ("", "model.diffusion_model."):  # BFL's layout as Forge and ComfyUI keep it
        path = tmp_path / f"flux{len(prefix)}.safetensors"
        save_file({f"{prefix}double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(2),
                   f"{prefix}img_in.weight": torch.zeros(2, 64)}, str(path))
        assert store.resolve(str(path)).family is flux
    assert flux.native_resolution == 1024 and flux.size_multiple == 16


def test_a_bfl_file_without_its_other_parts_says_which_and_where(studio, tmp_path):
    path = tmp_path / "flux1-dev.safetensors"
    save_file({"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(2),
               "guidance_in.in_layer.bias": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError) as info:
        with studio.cache.pipeline(str(path)):
            pass
    message = str(info.value)
    text_encoders, vae = studio.settings.models_dir / "text_encoder", studio.settings.models_dir / "vae"
    assert "holds only the transformer" in message and "\n" not in message
    assert f"CLIP-L (clip_l.safetensors in {text_encoders})" in message
    assert f"T5-XXL (t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors) in {text_encoders})" in message
    assert f"the VAE (ae.safetensors in {vae})" in message
    assert "black-forest-labs" not in message  # the configs and tokenizers are the studio's: no hub, no login


# ---- generation ----------------------------------------------------------------------------------------------------

def test_flux_generates_reproducibly_with_forges_fields(session_studio):
    a, b, c = (generate(session_studio, _quick(seed=s)) for s in (7, 7, 8))
    assert np.array_equal(_pixels(a), _pixels(b)) and np.abs(_pixels(a) - _pixels(c)).mean() > 1
    text = a.images[0].parameters
    assert "Steps: 3, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 7," in text
    fields = request_fields(parse_parameters(text))
    assert (fields["sampler"], fields["cfg"], fields["distilled_cfg"]) == ("Euler", 1.0, 3.5)
    other = generate(session_studio, _quick(distilled_cfg=8.0))
    assert np.abs(_pixels(other) - _pixels(a)).mean() > 0.5  # the guidance input is used
    beta = generate(session_studio, _quick(sampler="Euler Beta"))
    assert "Sampler: Euler, Schedule type: Beta," in beta.images[0].parameters
    assert request_fields(parse_parameters(beta.images[0].parameters))["sampler"] == "Euler Beta"


def test_flux_batches_img2img_and_real_cfg(session_studio):
    batch = generate(session_studio, _quick(batch_size=2, seed=20))
    single = generate(session_studio, _quick(seed=21))
    assert [im.seed for im in batch.images] == [20, 21]
    assert np.abs(_pixels(batch, 1) - _pixels(single)).max() <= 3
    init = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).convert("RGB")
    img2img = generate(session_studio, _quick(init_image=init, strength=0.5))
    assert img2img.images[0].image.size == (64, 64) and "Denoising strength: 0.5" in img2img.images[0].parameters
    quiet = generate(session_studio, _quick(negative_prompt="a cat"))
    assert any("negative prompt was not used" in n for n in quiet.notes)  # said, not silently dropped
    guided = generate(session_studio, _quick(negative_prompt="a cat", cfg=3.0))
    assert not guided.notes and np.abs(_pixels(guided) - _pixels(quiet)).mean() > 0.5



def test_flux_inpaints_inside_the_mask_and_runs_the_hires_fix(session_studio):
    init = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).convert("RGB")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpainted = generate(session_studio, _quick(init_image=init, mask_image=mask, mask_blur=0))
    out, original = _pixels(inpainted), np.asarray(init, dtype=np.float64)
    assert np.array_equal(out[:8], original[:8])  # outside the mask: the picture's own bytes
    assert np.abs(out[20:44, 20:44] - original[20:44, 20:44]).mean() > 5  # inside: drawn again
    hires = generate(session_studio, _quick(hires_scale=2, hires_strength=0.5))
    assert hires.images[0].image.size == (128, 128)
    fields = parse_parameters(hires.images[0].parameters)
    assert fields["Size"] == "64x64" and fields["Hires upscale"] == "2" and fields["Distilled CFG Scale"] == "3.5"

def test_flux_refuses_what_does_not_fit_and_says_why(session_studio, tmp_path):
    from tests.weights_files import make_lora

    with pytest.raises(ValueError, match="schnell-like: it has no guidance input"):
        generate(session_studio, _quick(model="builtin:tiny-flux-schnell", distilled_cfg=3.5))
    schnell = generate(session_studio, _quick(model="builtin:tiny-flux-schnell", steps=2))
    assert "Distilled CFG Scale" not in schnell.images[0].parameters
    with pytest.raises(ValueError, match="divisible by 16 for FLUX.1 but are 72 and 64"):
        generate(session_studio, _quick(height=72))
    with pytest.raises(ValueError, match="`sampler` 'Euler a' is unknown for FLUX.1; valid samplers are: Euler"):
        generate(session_studio, _quick(sampler="Euler a"))
    sd_lora = make_lora(session_studio, "builtin:tiny", session_studio.settings.models_dir / "lora" / "sd_only.safetensors",
                        seed=1)
    with pytest.raises(ValueError, match=r"LoRA sd_only.safetensors was made for .*, but base 'builtin:tiny-flux' is "
                                         r"FLUX.1"):
        generate(session_studio, _quick(loras=[LoraChoice(str(sd_lora), 1.0)]))
    with pytest.raises(ValueError, match="is FLUX.1: the studio's ControlNets .* do not fit it"):
        from studio.generate import ControlUnit

        generate(session_studio, _quick(controls=[ControlUnit("builtin:tiny-controlnet", Image.new("RGB", (64, 64)))]))


# ---- training ------------------------------------------------------------------------------------------------------

def _flux_config(**changes):
    return tiny_config(**{**dict(model=FLUX, lr=5e-3, rank=4, alpha=4.0), **changes})


def test_a_flux_lora_learns_its_picture_and_exports_both_layouts(studio):
    from diffusers import FluxPipeline

    target = Image.new("RGB", (64, 64), (230, 40, 30))  # one red picture
    make_dataset(studio.settings, "ds", [target], ["sks"])
    result = train_in_process(studio, _flux_config(name="red", max_steps=60, lr=1e-2, rank=16, alpha=16.0,
                                                   lora_layers="transformer"))
    kohya, peft = (load_file(str(f)) for f in result.files)
    assert any(k.endswith("single_blocks_0_linear1.lora_up.weight") for k in kohya)
    assert all(k.startswith("transformer.") for k in peft)
    assert result.last_loss < 0.8 * result.first_loss

    # The tiny model's VAE is random, so "toward the picture" is measured where it learns: in latent space, the
    # generated latents against the training picture's own.
    with studio.cache.pipeline(FLUX, loras=[LoraChoice("red", 1.0)]) as pipe:
        pixels = torch.from_numpy(np.asarray(target, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        with torch.no_grad():
            wanted = pipe.vae.encode(pixels).latent_dist.mean

        def distance(lora_on: bool) -> float:
            pipe.enable_lora() if lora_on else pipe.disable_lora()
            packed = pipe("sks", num_inference_steps=8, width=64, height=64, output_type="latent",
                          generator=torch.Generator().manual_seed(7)).images
            made = FluxPipeline._unpack_latents(packed, 64, 64, pipe.vae_scale_factor)
            return float((made / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor - wanted).abs().mean())

        without, with_lora = distance(False), distance(True)
    assert with_lora < 0.92 * without, (with_lora, without)

    # The kohya file (what Forge and ComfyUI load) and the peft file give the same pictures.
    peft_copy = studio.settings.models_dir / "lora" / "red_peft.safetensors"
    peft_copy.write_bytes(result.files[1].read_bytes())
    by_kohya, by_peft = (generate(studio, _quick(prompt="sks", loras=[LoraChoice(name, 1.0)]))
                         for name in ("red", "red_peft"))
    np.testing.assert_allclose(_pixels(by_kohya), _pixels(by_peft), atol=1)
    assert np.abs(_pixels(by_kohya) - _pixels(generate(studio, _quick(prompt="sks")))).mean() > 0.01


def test_a_flux_lora_resumes_to_the_uninterrupted_weights(studio):
    make_dataset(studio.settings, "ds", [astronaut()], ["sks, a photo"])
    whole = train_in_process(studio, _flux_config(name="whole", max_steps=6, epochs=0))
    train_in_process(studio, _flux_config(name="parts", max_steps=3, epochs=0))
    resumed = train_in_process(studio, _flux_config(name="parts", max_steps=6, epochs=0), resume=True)
    a, b = load_file(str(whole.files[1])), load_file(str(resumed.files[1]))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_the_text_encoders_are_gone_before_the_first_step(studio, monkeypatch):
    from studio.models.families.flow import FlowObjective

    make_dataset(studio.settings, "ds", [astronaut()], ["sks, a photo"])
    seen = []
    real = FlowObjective.loss_map

    def watching(self, denoiser, *args, **kwargs):
        seen.append(self.parts.text_encoders)
        return real(self, denoiser, *args, **kwargs)

    monkeypatch.setattr(FlowObjective, "loss_map", watching)
    result = train_in_process(studio, _flux_config(name="cached", max_steps=2, validation_every=1))
    # the collapse guard's base loss (one micro-batch of the untouched model), then the two steps
    assert seen == [[], [], []] and result.validations[-1].grid  # validated from the prompts encoded before


def test_quantized_bases_train_on_the_cpu_where_the_library_allows(studio, monkeypatch):
    pytest.importorskip("torchao")
    make_dataset(studio.settings, "ds", [astronaut()], ["sks, a photo"])
    stored = []
    real_store = type(studio.store).store_frozen

    def spying(module, base_precision, device):
        real_store(module, base_precision, device)
        stored.append(type(module.transformer_blocks[0].attn.to_q.weight).__name__)

    monkeypatch.setattr(type(studio.store), "store_frozen", staticmethod(spying))
    result = train_in_process(studio, _flux_config(name="int8", max_steps=2, base_precision="int8"))
    assert result.steps == 2 and np.isfinite(result.last_loss)
    assert stored and stored[0] != "Parameter"  # the frozen weights really are torchao's int8 tensors
    monkeypatch.setattr(type(studio.store), "store_frozen", staticmethod(real_store))
    with pytest.raises(ValueError, match="nf4 needs a CUDA GPU"):
        train_in_process(studio, _flux_config(name="nf4", max_steps=1, base_precision="nf4"))
    import builtins

    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    with pytest.raises(ValueError, match="fp8 needs torchao: pip install torchao"):
        train_in_process(studio, _flux_config(name="fp8", max_steps=1, base_precision="fp8"))


def test_flux_refuses_training_settings_it_cannot_take(studio):
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    for changes, message in ((dict(method="textual-inversion"), "does not fit FLUX.1"),
                             (dict(text_encoder_lr=1e-5), "`text_encoder_lr` must be 0 for FLUX.1"),
                             (dict(min_snr_gamma=5.0), "`min_snr_gamma` weighs DDPM noise levels")):
        with pytest.raises(ValueError, match=message):
            train_in_process(studio, _flux_config(name="refused", **changes))
    with pytest.raises(ValueError, match="`base_precision` 'int8' is for FLUX.1's transformer"):
        train_in_process(studio, tiny_config(name="sdint8", base_precision="int8"))


def test_flux_presets_by_gpu_memory():
    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset

    tiers = {key: apply_preset(RunConfig(name="x", dataset="x"), key).check()
             for key in ("flux-24gb", "flux-16gb", "flux-12gb", "seed-002-flux")}
    assert [tiers[k].base_precision for k in ("flux-24gb", "flux-16gb", "flux-12gb")] == ["fp8", "int8", "nf4"]
    seed = tiers["seed-002-flux"]
    assert (seed.rank, seed.alpha, seed.lr, seed.lr_scheduler, seed.lr_cycles, seed.batch_size, seed.resolution,
            seed.epochs, seed.flip, len(seed.validation_prompts)) == (2, 16.0, 5e-4, "cosine_with_restarts", 3, 4,
                                                                      1024, 13, True, 3)


# ---- FLUX.1's real widths: the kohya export through stock diffusers ------------------------------------------------

def _real_width_flux():
    """FLUX.1's widths (hidden 3072 = 24 x 128 heads, T5 4096, CLIP 768, 16 latent channels) with one double and
    one single block: about 545 M random parameters, built from configs."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from studio.models.tiny_parts import clip_tokenizer as _tokenizer, t5_tokenizer as _t5_tokenizer
    from studio.models.tokenizer import write_clip_tokenizer, write_t5_tokenizer

    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    clip_size = write_clip_tokenizer(folder / "tokenizer", ["sks", "a", "photo"])
    t5_size = write_t5_tokenizer(folder / "tokenizer_2", ["sks", "a", "photo"])
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(num_layers=1, num_single_layers=1, guidance_embeds=True)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=clip_size, hidden_size=768, intermediate_size=256,
                                        num_hidden_layers=1, num_attention_heads=12, bos_token_id=clip_size - 2,
                                        eos_token_id=clip_size - 1, pad_token_id=clip_size - 1))
    t5 = T5EncoderModel(T5Config(vocab_size=t5_size, d_model=4096, d_kv=64, d_ff=256, num_layers=1, num_heads=64,
                                 feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False))
    vae = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                        block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=16, norm_num_groups=4,
                        use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159,
                        scaling_factor=0.3611, sample_size=64)  # factor 4: 64 px -> 8 x 8 = 64 tokens
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae, text_encoder=clip,
                        tokenizer=_tokenizer(folder / "tokenizer"), text_encoder_2=t5,
                        tokenizer_2=_t5_tokenizer(folder / "tokenizer_2"), transformer=transformer)


@pytest.mark.slow
def test_at_real_widths_the_kohya_export_loads_in_diffusers_as_the_peft_export(studio, monkeypatch, tmp_path):
    from studio.models.families.flux1_lora import flux_peft_to_kohya
    from studio.models.refs import ModelRef

    flux = families.get("flux")
    pipe = _real_width_flux()
    pipe.set_progress_bar_config(disable=True)
    assert sum(p.numel() for p in pipe.transformer.parameters()) == 545_548_096
    monkeypatch.setattr(type(studio.store), "resolve", lambda self, model_id, **kw: ModelRef(model_id, "builtin",
                                                                                             tmp_path, flux))
    monkeypatch.setattr(type(studio.store), "load_base", lambda self, ref, **kw: families.mark(pipe, flux))
    make_dataset(studio.settings, "ds", [astronaut((64, 64))], ["sks, a photo"])
    result = train_in_process(studio, tiny_config(name="wide", model="real-width-flux", resolution=64, max_steps=2,
                                                  lr=1e-3, rank=2, alpha=4.0, lora_layers="transformer", cache=False,
                                                  max_sequence_length=16))
    kohya_file, peft_file = result.files
    peft = load_file(str(peft_file))
    assert any(k.endswith("single_transformer_blocks.0.proj_mlp.lora_B.weight") for k in peft)
    pipe.transformer.delete_adapters(["default"])  # the adapter the run trained in place; the files are what count

    def image(lora_file):
        pipe.load_lora_weights(str(lora_file), adapter_name="x")  # stock diffusers, as a user would
        out = pipe("sks, a photo", num_inference_steps=2, width=64, height=64, max_sequence_length=16,
                   generator=torch.Generator().manual_seed(0), output_type="np").images[0]
        pipe.delete_adapters("x")
        return out

    plain = pipe("sks, a photo", num_inference_steps=2, width=64, height=64, max_sequence_length=16,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    by_kohya = image(kohya_file)
    assert np.abs(by_kohya - plain).max() > 0.01  # the LoRA does something, so the comparison below means something
    np.testing.assert_allclose(by_kohya, image(peft_file), atol=1.5 / 255)  # float rounding: under 2 pixel levels
    # A LoRA of the attention only (single blocks' MLP part untrained) fuses with zero blocks and loads the same.
    attention = {k: v for k, v in peft.items() if "proj_mlp" not in k and "ff" not in k and "norm" not in k
                 and "proj_out" not in k}
    fused = tmp_path / "attention_kohya.safetensors"
    save_file(flux_peft_to_kohya(attention, alpha=4.0, transformer_config=pipe.transformer.config), str(fused))
    peft_only = tmp_path / "attention_peft"
    type(pipe).save_lora_weights(str(peft_only), transformer_lora_layers={
        k[len("transformer."):]: v for k, v in attention.items()}, transformer_lora_adapter_metadata={
        "r": 2, "lora_alpha": 4.0, "target_modules": sorted({k.split(".lora_")[0][len("transformer."):]
                                                              for k in attention})})
    np.testing.assert_allclose(image(fused), image(peft_only / "pytorch_lora_weights.safetensors"), atol=1.5 / 255)
