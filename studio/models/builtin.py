"""Builtin models: tiny SD 1.x / SDXL / FLUX.1 / ControlNet pipelines built from configs with a fixed seed, for offline
use and tests.

They draw noise (random weights) but exercise every code path a real model does. `builtin:pocket` is different:
its trained weights ship in models/builtin/pocket/ and are loaded, never built.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from studio import fileio

BUILDER_VERSION = 4  # bump when a builder changes, so saved copies are rebuilt
SHIPPED = ("pocket",)  # trained by the project and committed; cannot be rebuilt on the fly
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "models" / "builtin"  # the checkout's own models/builtin/
# What a form should start with for a builtin whose family's defaults do not fit it: pocket was trained on captions
# of coloured shapes and cartoon faces at CFG 4 (docs/pocket.md); the random tiny ones draw noise whatever the prompt.
# Evaluate's prompts for pocket: what it knows, or, with LoRAs whose trigger word is known, one known prompt (did the
# LoRA break it?) and the trigger in two colours; four seeds, as 64 px pictures cost little but vary by seed.
HINTS = {
    "pocket": {"prompt": "a red circle on a white background", "cfg": 4.0,
               "animal_prompt": "a cartoon dog face with brown fur, on a white background",
               "evaluate_prompts": ("a red circle on a white background", "a blue square on a black background",
                                    "a cartoon dog face with brown fur"),
               "evaluate_trigger_prompts": ("a red circle on a white background",
                                            "a red {trigger} on a white background",
                                            "a blue {trigger} on a black background"),
               "evaluate_seeds": (0, 1, 2, 3)},
}
_build_lock = threading.Lock()

# Words that become single tokens in the tiny tokenizer (keeps test prompts well inside 77 tokens).
_TINY_WORDS = "a photo of the an in on with and person man woman dog cat face portrait close up red blue green".split()


def builtin_names() -> list[str]:
    return sorted([*_BUILDERS, *SHIPPED])


def shipped_folder(name: str, models_dir: Path) -> Path | None:
    """Where a shipped builtin's weights are: the user's models/builtin/, else the ones beside this checkout."""
    for folder in (models_dir / "builtin" / name, SHIPPED_DIR / name):
        if (folder / "model_index.json").is_file():
            return folder
    return None


def ensure_builtin(name: str, models_dir: Path) -> Path:
    """Return the folder of builtin model `name`, building and saving it under models/builtin/ on first use."""
    folder = models_dir / "builtin" / name
    if name in SHIPPED:
        found = shipped_folder(name, models_dir)
        if found is None:
            raise ValueError(f"builtin model {name!r} is not installed: expected its weights in {folder} "
                             f"or {SHIPPED_DIR / name}")
        return found
    if name not in _BUILDERS:
        raise ValueError(f"unknown builtin model {name!r}; builtin models are: {', '.join(builtin_names())}")
    stamp = folder / "studio_builtin.json"
    with _build_lock:
        if stamp.is_file() and json.loads(stamp.read_text()).get("version") == BUILDER_VERSION:
            return folder
        with fileio.atomic_dir(folder) as tmp:  # other processes see all of the model or none
            _BUILDERS[name](tmp)
            (tmp / "studio_builtin.json").write_text(json.dumps({"name": name, "version": BUILDER_VERSION}))
    return folder


def _text_config(vocab_size: int, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=vocab_size - 2,  # the tokenizer writer puts the two special tokens last
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=projection_dim or 32,
    )


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=64,
    )


def _sd_scheduler_config() -> dict:
    # The noise schedule of SD 1.x/SDXL, so samplers and training behave as on real models.
    return dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                steps_offset=1, timestep_spacing="leading")


def _build_tiny_sd1(out: Path) -> None:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from studio.models.tokenizer import write_clip_tokenizer

    vocab_size = write_clip_tokenizer(out / "tokenizer", _TINY_WORDS)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    torch.manual_seed(0)
    vae = _tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(vocab_size))
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(out / "tokenizer"),
        scheduler=EulerDiscreteScheduler(**_sd_scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)


def _build_tiny_sdxl(out: Path) -> None:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from studio.models.tokenizer import write_clip_tokenizer

    vocab_size = write_clip_tokenizer(out / "tokenizer", _TINY_WORDS)
    write_clip_tokenizer(out / "tokenizer_2", _TINY_WORDS)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + 32 pooled text
        cross_attention_dim=64,  # the two text encoders' hidden states side by side
    )
    torch.manual_seed(0)
    vae = _tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(vocab_size))
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(vocab_size, projection_dim=32))

    pipe = StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=_tokenizer(out / "tokenizer"),
        tokenizer_2=_tokenizer(out / "tokenizer_2"),
        scheduler=EulerDiscreteScheduler(**_sd_scheduler_config()),
    )
    pipe.save_pretrained(out, safe_serialization=True)


def _build_tiny_flux(out: Path, guidance_embeds: bool = True) -> None:
    """A FLUX.1-shaped pipeline at toy widths: CLIP + T5 text encoders with tokenizers the project writes, a
    transformer of one double and one single block, a 16-channel VAE (factor 2, so 64 px -> 16 x 16 packed tokens),
    and FLUX.1-dev's flow-matching scheduler. `guidance_embeds` False is schnell's shape (no guidance input)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    from studio.models.tokenizer import write_clip_tokenizer, write_t5_tokenizer

    vocab_size = write_clip_tokenizer(out / "tokenizer", _TINY_WORDS)
    t5_size = write_t5_tokenizer(out / "tokenizer_2", _TINY_WORDS)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(vocab_size))
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=t5_size, d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                             num_heads=4, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                                             is_encoder_decoder=False, use_cache=False, decoder_start_token_id=0,
                                             pad_token_id=0, eos_token_id=1))
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
                                         guidance_embeds=guidance_embeds)
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=16, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.1159, scaling_factor=0.3611, sample_size=64)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=_tokenizer(out / "tokenizer"),
                        text_encoder_2=text_encoder_2, tokenizer_2=_t5_tokenizer(out / "tokenizer_2"),
                        transformer=transformer)
    pipe.save_pretrained(out, safe_serialization=True)


def _t5_tokenizer(folder: Path):
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(str(folder))


def _build_tiny_controlnet(out: Path) -> None:
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    controlnet = ControlNetModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=32,  # pairs with builtin:tiny (SD 1.x)
        conditioning_embedding_out_channels=(16, 32),  # one stride-2 step: matches the tiny VAE's factor 2
    )
    # diffusers starts a ControlNet's output convolutions at zero (training grows them), so an untrained one changes
    # nothing. Seeded weights in them make the tiny ControlNet steer generation, so tests can see it is applied.
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                  controlnet.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for conv in zero_convs:
            torch.nn.init.normal_(conv.weight, std=0.2)
    controlnet.save_pretrained(out, safe_serialization=True)


def _build_tiny_clip(out: Path) -> None:
    """A tiny CLIP (text + vision towers, random seeded weights) for offline CLIP-score tests: its scores mean nothing."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig

    from studio.models.tokenizer import write_clip_tokenizer

    vocab_size = write_clip_tokenizer(out, _TINY_WORDS)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              image_size=32, patch_size=8, projection_dim=32)
    config = CLIPConfig(text_config=_text_config(vocab_size).to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    torch.manual_seed(0)
    model = CLIPModel(config)
    # Random towers embed images and prompts in unrelated directions, so most cosines would be negative and every
    # CLIP score 0. One shared offset after both final layer norms, through one shared projection, puts the pairs
    # at a positive cosine that still moves with the image and the prompt, so tests can see scores change.
    with torch.no_grad():
        offset = torch.randn(32)
        model.vision_model.post_layernorm.bias.copy_(offset)
        model.text_model.final_layer_norm.bias.copy_(offset)
        model.text_projection.weight.copy_(model.visual_projection.weight)
    model.save_pretrained(out)  # safetensors
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)


_BUILDERS = {
    "tiny": _build_tiny_sd1,
    "tiny-xl": _build_tiny_sdxl,
    "tiny-flux": _build_tiny_flux,
    "tiny-flux-schnell": lambda out: _build_tiny_flux(out, guidance_embeds=False),
    "tiny-controlnet": _build_tiny_controlnet,
    "tiny-clip": _build_tiny_clip,
}


def build_flux_at_real_widths(out: Path, *, double: int = 1, single: int = 1, t5_layers: int = 2,
                              clip_layers: int = 12, guidance_embeds: bool = True) -> Path:
    """FLUX.1 at its real widths with fewer layers, for memory and speed measurements (bench/flux.py, the gpu tests),
    not a builtin model: random weights from configs (no download), saved in bf16 as a diffusers folder `out`.

    The transformer has FLUX.1's hidden 3072 (24 heads of 128), T5 4096 and CLIP 768 inputs and 64 packed latent
    channels, with `double` + `single` blocks (the real one: 19 + 38); T5 is T5-XXL's layer (d_model 4096, 64 heads
    of 64, gated-GELU d_ff 10240) `t5_layers` times (the real one: 24); CLIP is CLIP-L's (768, 12 heads, MLP 3072,
    `clip_layers` of 12). The VAE is narrow but downsamples by 8 as FLUX.1's does, so a 512 px picture is 1024
    packed tokens as on the real model."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from studio.models.tokenizer import write_clip_tokenizer, write_t5_tokenizer

    out = Path(out)
    vocab_size = write_clip_tokenizer(out / "tokenizer", _TINY_WORDS)
    t5_size = write_t5_tokenizer(out / "tokenizer_2", _TINY_WORDS)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # built as a bf16 checkpoint is stored: no float32 copy on the way
    try:
        clip = CLIPTextModel(CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
            num_hidden_layers=clip_layers, projection_dim=768, max_position_embeddings=77, hidden_act="quick_gelu",
            bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1))
        t5 = T5EncoderModel(T5Config(
            vocab_size=t5_size, d_model=4096, d_kv=64, d_ff=10240, num_layers=t5_layers, num_heads=64,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
            is_encoder_decoder=False, use_cache=False, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
        transformer = FluxTransformer2DModel(num_layers=double, num_single_layers=single,
                                             guidance_embeds=guidance_embeds)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                            up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=(8, 16, 16, 16),
                            layers_per_block=1, latent_channels=16, norm_num_groups=4, use_quant_conv=False,
                            use_post_quant_conv=False, mid_block_add_attention=False, shift_factor=0.1159,
                            scaling_factor=0.3611)
    finally:
        torch.set_default_dtype(torch.float32)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=_tokenizer(out / "tokenizer"),
                        text_encoder_2=t5, tokenizer_2=_t5_tokenizer(out / "tokenizer_2"), transformer=transformer)
    pipe.save_pretrained(out, safe_serialization=True)
    return out
