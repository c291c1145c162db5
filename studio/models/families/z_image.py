"""Z-Image (Tongyi-MAI; Turbo and Base): a 6 B single-stream transformer trained by flow matching on FLUX.1's
16-channel latents, conditioned on the second-to-last hidden states of Qwen3-4B over the prompt's own tokens (no
padding), with classifier-free guidance. Turbo is step-distilled: 9 steps (8 forward passes), no CFG; Base takes CFG
and 28-50 steps. Both share every file but the transformer's weights, so which one a model is, is told by its name.

Two conventions differ from FLUX's: the transformer takes 1 - sigma as its time and predicts picture minus noise, so
the pipeline (and the objective here) negates its output; and diffusers' guidance_scale g means pos + g (pos - neg),
which is A1111's and ComfyUI's CFG scale g + 1 (the studio's `cfg` is that scale, so CFG 1 is off, as for FLUX).

Its single files (ComfyUI's layout) and tiny builtin are in z_image_files.py, its kohya LoRA keys in z_image_lora.py."""

from __future__ import annotations

import re

from studio.models.families.base import Conditioning, TrainingTarget
from studio.models.families.flow import FlowFamily, FlowObjective

# Keys only a Z-Image transformer has: ComfyUI's layout (maybe under model.diffusion_model.) and diffusers'.
_KEYS = ("noise_refiner.0.attention.k_norm.weight", "noise_refiner.0.attention.norm_k.weight")
# Key fragments only a Z-Image LoRA has: its blocks are `layers`, `noise_refiner`, `context_refiner` (diffusers', ai-
# toolkit's and ComfyUI's names, or kohya's with underscores).
_LORA = re.compile(r"(^|\.)(layers|noise_refiner|context_refiner)\.\d+\.(attention|feed_forward|adaLN_modulation)\."
                   r"|^lora_unet_(layers|noise_refiner|context_refiner)_\d+_")
_BLOCKS = r".*(layers|noise_refiner|context_refiner)\.\d+\."
# LoRA targets by `lora_layers`: attention (diffusers' training script's four projections, 136 layers), + the
# feed-forward (transformer), + the modulation (all), in the 30 main blocks and the refiners alike.
_TARGETS = {"attention": _BLOCKS + r"attention\.(to_q|to_k|to_v|to_out\.0)",
            "transformer": _BLOCKS + r"(attention\.(to_q|to_k|to_v|to_out\.0)|feed_forward\.(w1|w2|w3))",
            "all": _BLOCKS + r"(attention\.(to_q|to_k|to_v|to_out\.0)|feed_forward\.(w1|w2|w3)|adaLN_modulation\.0)"}

# Generation defaults, as the model cards and diffusers' examples give them (CFG in A1111's terms, see above).
TURBO = {"cfg": 1.0, "steps": 9}
BASE = {"cfg": 5.0, "steps": 28}


def is_turbo(name: str) -> bool:
    """Whether a model named `name` (a hub id, folder or file) is the step-distilled Turbo: its files are Base's
    but for the weights, so only its name tells (Tongyi-MAI/Z-Image-Turbo, z_image_turbo_bf16.safetensors)."""
    return "turbo" in str(name).lower()


class ZImage(FlowFamily):
    name = "zimage"
    label = "Z-Image"
    text_encoder_names = ("text_encoder",)  # Qwen3-4B (its base model)
    tokenizer_names = ("tokenizer",)
    guidance = "cfg"
    default_cfg = BASE["cfg"]
    default_steps = BASE["steps"]
    kohya_version = "z_image"  # musubi-tuner's architecture name
    kohya_keys = {"ss_network_module": "networks.lora_zimage", "ss_architecture": "z_image",
                  "modelspec.architecture": "z-image/lora"}
    transformer_class = "ZImageTransformer2DModel"
    block_lists = ("layers",)  # the 30 main blocks (the refiners are small)
    file_keys = _KEYS
    classes = r"ZImage\w*"
    hub_names = r"z[-_ ]?image"
    lora_width_key = r"attention[._](to_q|qkv)\.(lora_A|lora_down)\.weight$"
    priority = 45
    variants = ("zimage-turbo", "zimage-base")  # studio/models/configs/<variant>/: the same files but the weights
    parameter_counts = {v: {"transformer": 6_154_908_736, "text_encoder": 4_022_468_096, "vae": 83_819_683}
                        for v in variants}
    default_variant = "zimage-base"
    gpu_presets = ("zimage-12gb", "zimage-16gb", "zimage-24gb")

    # ---- identify -----------------------------------------------------------------------------------------
    def matches_lora(self, shapes: dict[str, list[int]]) -> bool:
        return any(_LORA.search(k.removeprefix("transformer.").removeprefix("diffusion_model.")) for k in shapes)

    # ---- load ---------------------------------------------------------------------------------------------
    def file_variant(self, checkpoint) -> str:
        """Turbo or Base, by the file's name (their tensors are alike), as ComfyUI names them."""
        return "zimage-turbo" if is_turbo(checkpoint.path.name) else "zimage-base"

    def load_single_file(self, store, ref, *, dtype, without=()):
        from studio.models.families.z_image_files import load_zimage_file

        return load_zimage_file(store, ref, dtype=dtype, without=without)

    def file_transformer(self, store, ref, *, dtype):
        from studio.models.families.z_image_files import zimage_transformer

        return zimage_transformer(store, ref, dtype=dtype)

    # ---- a loaded pipeline -------------------------------------------------------------------------------
    def native_size(self, pipe) -> int:
        return int(pipe.vae.config.sample_size)  # FLUX.1's VAE says 1024; the tiny builtin's 64

    # ---- memory plan ----------------------------------------------------------------------------------------
    def block_layout(self, config: dict) -> tuple[int, int, int]:
        """Single-stream blocks over text and picture tokens together; the refiners (image tokens alone, text
        alone) planned as whole blocks."""
        return config["dim"], 0, config["n_layers"] + 2 * config.get("n_refiner_layers", 0)

    # ---- training -----------------------------------------------------------------------------------------
    def training_notes(self, parts, config) -> list[str]:
        if not is_turbo(parts.base_id) and not is_turbo(parts.pipe.name_or_path):
            return []
        return ["Z-Image Turbo is step-distilled (9 steps, no CFG): trained plainly, a LoRA undoes the distillation as "
                "it learns, and its pictures need more steps and blur. ai-toolkit, musubi-tuner and SimpleTuner train "
                "on Z-Image (Base) or on de-distilled Turbo weights and apply the LoRA to Turbo; do that for more "
                "than a short run"]

    def encode_prompts(self, pipe, captions, *, encoders=None, max_sequence_length=0, distilled=False):
        """Qwen3's second-to-last hidden states over each prompt's own tokens (its chat template, up to 512): a
        batch of different lengths, padded and masked (Conditioning.mask)."""
        import torch

        with torch.no_grad():
            rows, _ = pipe.encode_prompt(prompt=list(captions), device=self.text_encoders(pipe)[0].device,
                                         do_classifier_free_guidance=False, max_sequence_length=512)
        return Conditioning.stack([Conditioning(row) for row in rows])

    def objective(self, parts, config):
        return ZImageObjective(self, parts, config)

    def lora_targets(self, layers: str) -> TrainingTarget:
        return TrainingTarget(_TARGETS[layers], None)

    def sampling_kwargs(self, pipe, *, prompt, encoded, cfg, distilled, negative=None):
        defaults = TURBO if is_turbo(pipe.name_or_path) else BASE
        scale = (cfg or defaults["cfg"]) - 1  # diffusers' guidance: A1111's CFG - 1
        kwargs = dict(guidance_scale=max(scale, 0.0))
        if encoded is None:
            return dict(kwargs, prompt=prompt)
        kwargs["prompt_embeds"] = [encoded.hidden]
        if scale > 0:
            kwargs["negative_prompt_embeds"] = [negative.hidden]
        return kwargs

    # ---- exports ------------------------------------------------------------------------------------------
    def lora_to_kohya(self, state: dict, *, alpha: float, denoiser_config) -> dict:
        from studio.models.families.z_image_lora import zimage_peft_to_kohya

        return zimage_peft_to_kohya(state, alpha=alpha, transformer_config=denoiser_config)

    # ---- LoRAs on a loaded pipeline ---------------------------------------------------------------------
    def transformer_width(self, pipe) -> int:
        return pipe.transformer.config.dim  # 3840

    # ---- generation ---------------------------------------------------------------------------------------
    def generation_defaults(self, store, ref) -> dict:
        return dict(TURBO if is_turbo(ref.id) or (ref.path is not None and is_turbo(ref.path.name)) else BASE)

    def guidance_kwargs(self, pipe, *, cfg, negative_prompt, distilled_cfg, max_sequence_length):
        """CFG above 1 guides with the negative prompt (at twice the time); Turbo is made for none."""
        self.refuse_flux_fields(distilled_cfg, max_sequence_length)
        notes = []
        if cfg > 1:
            return dict(guidance_scale=cfg - 1, negative_prompt=negative_prompt or ""), notes, None
        if negative_prompt:
            notes.append("the negative prompt was not used: Z-Image takes one only with a CFG scale above 1 "
                         "(Turbo is distilled to run without)")
        return dict(guidance_scale=0.0), notes, None

    def tiny_builtins(self) -> dict:
        from studio.models.families.z_image_files import build_tiny

        return {"tiny-zimage": build_tiny}


class ZImageObjective(FlowObjective):
    """The transformer takes a list of latents (C, 1, h, w) (frames of one), the time 1 - sigma and each caption's
    own states; it predicts picture minus noise, so the prediction of the velocity noise - picture is its negation."""

    def predict(self, denoiser, noisy, sigma, cond: Conditioning, autocast):
        import torch

        rows = [cond.row(i).hidden.to(noisy.device) for i in range(noisy.shape[0])]
        with autocast():
            out = denoiser(list(noisy.unsqueeze(2).unbind(0)), 1 - sigma, rows, return_dict=False)[0]
        return -torch.stack([o.float() for o in out]).squeeze(2)  # (B, C, h, w)


FAMILY = ZImage()
