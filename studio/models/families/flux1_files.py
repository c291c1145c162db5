"""FLUX.1's single files as Forge and ComfyUI users have them: the transformer in BFL's layout (maybe under
model.diffusion_model.; bf16, fp16, fp8 or GGUF), with CLIP-L, T5-XXL and the VAE inside it (the all-in-one files) or as
files beside it or in models/text_encoder/ and models/vae/ (Forge's names). Each part is read once, one tensor at a
time, in the dtype it is used in, and built with the configs and tokenizers the studio carries
(studio/models/configs/flux1-dev|flux1-schnell/): no hub. The same parts written back in those layouts
(`file_states`) make the tests' tiny files and the benchmarks' real-width ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRANSFORMER_PREFIX = "model.diffusion_model."
# Where an all-in-one file keeps the other parts (ComfyUI's names; Forge reads the same).
INSIDE = {"vae": ("vae.", "first_stage_model."), "clip": ("text_encoders.clip_l.transformer.",),
          "t5": ("text_encoders.t5xxl.transformer.",)}
# The parts as files of their own: (file pattern, what the user reads, the file Forge's guide names, models/ folder).
FILES = {"clip": ("clip_l*.safetensors", "CLIP-L", "clip_l.safetensors", "text_encoder"),
         "t5": ("t5xxl*.safetensors", "T5-XXL", "t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors)",
                "text_encoder"),
         "vae": ("ae*.safetensors", "the VAE", "ae.safetensors", "vae")}


@dataclass(frozen=True)
class Part:
    """Where one part's tensors are: a file, and the prefix its names have there."""

    path: Path
    prefix: str


def find_parts(models_dir: Path, checkpoint) -> dict[str, Part]:
    """CLIP-L, T5-XXL and the VAE of a FLUX.1 file: inside it (an all-in-one file), else files beside it or in
    models/text_encoder/ and models/vae/. Parts not found are left out."""
    from studio.models.files import read_checkpoint

    found = {part: Part(checkpoint.path, prefix) for part, prefixes in INSIDE.items()
             for prefix in prefixes if any(k.startswith(prefix) for k in checkpoint.shapes)}
    folders = [checkpoint.path.parent, models_dir / "text_encoder", models_dir / "vae"]
    for part, (pattern, *_) in FILES.items():
        hits = [p for folder in folders if folder.is_dir() for p in sorted(folder.glob(pattern))]
        if part not in found and hits:
            beside = read_checkpoint(hits[0])
            refuse_scaled(beside)
            prefix = next((p for p in INSIDE[part] if any(k.startswith(p) for k in beside.shapes)), "")
            found[part] = Part(hits[0], prefix)
    return found


def refuse_scaled(checkpoint) -> None:
    """ComfyUI's fp8_scaled files (fp8 weights with a scale per layer) read as plain fp8 would be wrong: refused."""
    if any(k.endswith(("scaled_fp8", ".scale_weight")) for k in checkpoint.shapes):
        raise ValueError(f"{checkpoint.path.name} is a ComfyUI fp8_scaled file (fp8 weights with per-layer scales, "
                         f"which diffusers does not apply): use the plain fp8 (e4m3fn), fp16/bf16 or GGUF file")


def missing_parts_error(checkpoint, missing: list[str], models_dir: Path) -> ValueError:
    wanted = [f"{FILES[p][1]} ({FILES[p][2]} in {models_dir / FILES[p][3]})" for p in missing]
    return ValueError(f"FLUX.1 file {checkpoint.path.name} holds only the transformer; put {', '.join(wanted)} there "
                      f"or beside it, as Forge keeps them (an all-in-one file holds them all)")


def transformer_config(folder: Path, keys) -> dict:
    """The variant's transformer config with the depth the file holds (FLUX.1 has 19 + 38 blocks; distilled
    models such as FLUX.1 Lite fewer)."""
    from diffusers import FluxTransformer2DModel

    from studio.models.families.flux1_layout import count_blocks

    config = dict(FluxTransformer2DModel.load_config(str(folder), subfolder="transformer"))
    double, single = count_blocks(k.removeprefix(TRANSFORMER_PREFIX) for k in keys)
    config.update(num_layers=double, num_single_layers=single)
    return config


def load_transformer(checkpoint, folder: Path, *, dtype, quantization=None):
    """The transformer of a FLUX.1 file (BFL's or diffusers' names; a GGUF file stays quantized, computing in
    `dtype`, through diffusers' GGUF quantizer), read once; `quantization`: a diffusers quantization config (nf4 for
    training)."""
    from diffusers import FluxTransformer2DModel

    from studio.models.families.flux1_layout import bfl_to_diffusers, is_bfl
    from studio.models.files import read_tensors

    config = transformer_config(folder, checkpoint.shapes)
    prefix = TRANSFORMER_PREFIX if any(k.startswith(TRANSFORMER_PREFIX) for k in checkpoint.shapes) else ""
    if checkpoint.path.suffix == ".gguf":
        from diffusers import GGUFQuantizationConfig
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        state = {k[len(prefix):]: v for k, v in load_gguf_checkpoint(str(checkpoint.path)).items()
                 if k.startswith(prefix)}
        quantization = GGUFQuantizationConfig(compute_dtype=dtype)
    else:
        others = tuple(p for prefixes in INSIDE.values() for p in prefixes)
        state = read_tensors(checkpoint.path, prefix, dtype, skip=others)
    if is_bfl(state):
        state = bfl_to_diffusers(state, config["num_attention_heads"] * config["attention_head_dim"])
    if quantization is None:
        # Built empty and given the tensors as read: diffusers' single-file loading would first cast them to the
        # model's float32 and back, a second (and fourth) copy of the transformer.
        from accelerate import init_empty_weights

        with init_empty_weights():
            model = FluxTransformer2DModel.from_config(config)
        model.load_state_dict(state, strict=False, assign=True)
        return model.eval()
    return FluxTransformer2DModel.from_single_file(
        state, config=str(folder), subfolder="transformer", local_files_only=True, dtype=dtype,
        quantization_config=quantization, num_layers=config["num_layers"],
        num_single_layers=config["num_single_layers"])


def load_text_encoder(cls, config_dir: Path, part: Part, *, dtype):
    """A transformers text encoder (CLIPTextModel, T5EncoderModel) from a part's tensors, built empty from its
    config with the depth the file holds and given the tensors as they are read: one copy in memory (building it
    with from_pretrained(state_dict=...) kept the file's tensors and the model's apart, two copies of T5-XXL)."""
    import re

    from accelerate import init_empty_weights
    from transformers import AutoConfig

    from studio.models.files import read_tensors

    state = read_tensors(part.path, part.prefix, dtype)
    config = AutoConfig.from_pretrained(str(config_dir))
    layers = {int(m.group(2)) for k in state if (m := re.search(r"(encoder\.layers|encoder\.block)\.(\d+)\.", k))}
    if not layers:
        raise ValueError(f"{part.path.name} holds no {cls.__name__} layers under {part.prefix or 'its top level'}")
    setattr(config, "num_layers" if config.model_type == "t5" else "num_hidden_layers", len(layers))
    with init_empty_weights(include_buffers=False):
        model = cls(config)
    names = set(model.state_dict())
    if not any(n.startswith("text_model.") for n in names):  # transformers 5 dropped CLIP's text_model level
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    if "shared.weight" in state and "encoder.embed_tokens.weight" in names:  # T5's tied input embedding
        state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
    model.load_state_dict({k: v for k, v in state.items() if k in names}, strict=False, assign=True)
    return model.eval()


def load_flux_file(store, ref, *, dtype, without=()):
    """A FLUX.1 file's pipeline: its tokenizers (the T5 vocabulary named if it is not installed) before any weight
    is read, then each part once, in its own dtype (`dtype`: one, or a dict of them: base.part_dtype)."""
    import diffusers
    from transformers import CLIPTextModel, T5EncoderModel

    from studio.models.configs import load_tokenizers
    from studio.models.families.base import part_dtype
    from studio.models.files import read_checkpoint, read_tensors

    folder = store.single_file_config(ref)
    checkpoint = read_checkpoint(ref.path)
    parts = find_parts(store.settings.models_dir, checkpoint)
    missing = [p for p in FILES if p not in parts]
    if missing:
        raise missing_parts_error(checkpoint, missing, store.settings.models_dir)
    pipe = dict(load_tokenizers(folder))
    pipe["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder), subfolder="scheduler")
    vae = parts["vae"]
    of = {name: part_dtype(dtype, name) for name in ("transformer", "vae", "text_encoder", "text_encoder_2")}
    loaders = {"transformer": lambda: load_transformer(checkpoint, folder, dtype=of["transformer"]),
               "vae": lambda: diffusers.AutoencoderKL.from_single_file(
                   read_tensors(vae.path, vae.prefix, of["vae"]), config=str(folder), subfolder="vae",
                   local_files_only=True, dtype=of["vae"]),
               "text_encoder": lambda: load_text_encoder(CLIPTextModel, folder / "text_encoder", parts["clip"],
                                                         dtype=of["text_encoder"]),
               "text_encoder_2": lambda: load_text_encoder(T5EncoderModel, folder / "text_encoder_2", parts["t5"],
                                                           dtype=of["text_encoder_2"])}
    for name, load in loaders.items():
        pipe[name] = None if name in without else load()
    return diffusers.FluxPipeline(**pipe)


def file_states(pipe) -> dict[str, dict]:
    """A FLUX.1 pipeline's parts as Forge's files hold them: `transformer` (BFL's layout, as flux1-dev.safetensors),
    `clip_l` and `t5xxl` (transformers' names, CLIP's under text_model. as ComfyUI's clip_l.safetensors), `ae` (the
    original VAE layout, as ae.safetensors). An all-in-one file is these under model.diffusion_model., text_encoders.
    clip_l.transformer., text_encoders.t5xxl.transformer. and vae. (`all_in_one`)."""
    from studio.models.families.flux1_layout import diffusers_to_bfl
    from studio.models.families.sd_files import vae_to_original

    def plain(module, prefix=""):
        return {(k if k.startswith(prefix) else prefix + k): v.detach().contiguous()
                for k, v in module.state_dict().items() if not k.endswith("position_ids")}

    return {"transformer": {k: v.contiguous() for k, v in diffusers_to_bfl(pipe.transformer.state_dict()).items()},
            "clip_l": plain(pipe.text_encoder, "text_model."),
            "t5xxl": {k: v for k, v in plain(pipe.text_encoder_2).items() if k != "encoder.embed_tokens.weight"},
            "ae": {k: v.contiguous() for k, v in vae_to_original(pipe.vae.state_dict(), pipe.vae.config).items()}}


def all_in_one(states: dict[str, dict]) -> dict:
    """file_states' parts in one file, under the prefixes ComfyUI's and Forge's all-in-one files use."""
    prefixes = {"transformer": TRANSFORMER_PREFIX, "clip_l": INSIDE["clip"][0], "t5xxl": INSIDE["t5"][0],
                "ae": INSIDE["vae"][0]}
    return {prefixes[part] + k: v for part, state in states.items() for k, v in state.items()}
