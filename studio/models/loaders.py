"""Loading weights: the only place they are read from disk or the hub. The model cache calls these (and the
training child, which holds its own copy); nothing else does.

One pickle policy for every loader: `.safetensors` always; pickle files (`.bin`, `.ckpt`, `.pt`) only when the user
passed --allow-pickle, and then only where no safetensors file is offered beside them (upscalers: `.pth` only, read by
spandrel's restricted unpickler).
"""

from __future__ import annotations

from pathlib import Path

from studio.models import families, hub
from studio.models.files import safetensors_metadata
from studio.models.refs import ModelRef


def check_nf4(device: str) -> None:
    """Refuse nf4 where it cannot run (no CUDA device, no bitsandbytes), saying what to do; told without torch, so
    a run is refused before it is queued."""
    import importlib.util

    if not device.startswith("cuda"):
        raise ValueError(f"`base_precision` nf4 needs a CUDA GPU (bitsandbytes), but the device is {device!r}; use "
                         f"int8 or fp8 (torchao), which run on a CPU too")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("`base_precision` nf4 needs bitsandbytes, which is not installed here: pip install "
                         "bitsandbytes (requirements.txt installs it on Linux x86-64), or use int8 or fp8")


def nf4_config(device: str):
    """diffusers' 4-bit NormalFloat quantization (bitsandbytes): CUDA only; said so, with what to install."""
    check_nf4(device)
    import torch
    from diffusers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)


def place(module, device: str, *, stay: list = ()) -> None:
    """Put `module` on `device`, but for the submodules in `stay` (blocks kept on the CPU for block swapping), moving
    each tensor as `Module.to` does (quantized tensors too)."""
    held = {id(m) for block in stay for m in block.modules()}
    for m in module.modules():
        if id(m) not in held:
            m._apply(lambda t: t.to(device), recurse=False)


def last_blocks(family, denoiser, count: int) -> list:
    """The last `count` of the denoiser's blocks (the ones block swapping keeps on the CPU); a ValueError when the
    family has fewer or none."""
    if not count:
        return []
    blocks = family.blocks(denoiser)
    if count > len(blocks):
        have = f"only {len(blocks)} blocks" if blocks else "no blocks it can swap"
        raise ValueError(f"`blocks_to_swap` is {count}, but the {family.label} denoiser has {have}")
    return blocks[len(blocks) - count:]


class ModelLoading:
    """Mixed into ModelStore: loaders for each kind of weight, keyed by the kinds the cache knows (KINDS)."""

    settings: object  # Settings, set by ModelStore

    # ---- the pickle policy ---------------------------------------------------------------------------------

    def use_safetensors(self) -> bool | None:
        """What diffusers' and transformers' `use_safetensors` gets: True (safetensors or nothing) unless the user
        allowed pickles; then None (safetensors first, pickle files where a folder has no safetensors)."""
        return None if self.settings.allow_pickle else True

    def load_error(self, what: str, ref_id: str, error: Exception, *, local: bool) -> ValueError:
        """A ValueError for a failed load that says why in words: pickle weights refused, downloads off, or the
        loader's own message."""
        text = " ".join(str(error).split())
        if not self.settings.allow_pickle and local and (".bin" in text or "safetensors" in text):
            return ValueError(f"could not load {what} {ref_id!r}: its folder holds no .safetensors weights (only "
                              f"pickle files such as .bin, which can run code when loaded); convert them to "
                              f".safetensors or opt in with --allow-pickle ({text[:200]})")
        hint = "" if local else hub.offline_hint(self.settings.allow_downloads)
        return ValueError(f"could not load {what} {ref_id!r}{hint}: {text[:400]}")

    # ---- base pipelines and ControlNets ---------------------------------------------------------------------

    def load_base(self, ref: ModelRef, *, dtype, device: str, without: tuple[str, ...] = ()):
        """Load the txt2img pipeline of `ref`'s family, marked with its family (families.of(pipe)); components named
        in `without` are left out (None), e.g. FLUX's transformer while captions are encoded."""
        import diffusers

        hub.quiet_loaders()
        family = ref.family
        try:
            if ref.kind == "file":
                pipe = family.load_single_file(self, ref, dtype=dtype, without=without)
            else:
                source = str(ref.path) if ref.path is not None else ref.id
                index = diffusers.DiffusionPipeline.load_config(source, local_files_only=not self.settings.allow_downloads)
                family = family or families.from_index(index, ref.path)  # a hub id whose name did not tell
                extra = dict(safety_checker=None, requires_safety_checker=False) if "safety_checker" in index else {}
                pipe = diffusers.DiffusionPipeline.from_pretrained(
                    source, use_safetensors=self.use_safetensors(), local_files_only=not self.settings.allow_downloads,
                    dtype=dtype, **extra, **{name: None for name in without},
                )
        except (OSError, EnvironmentError) as e:
            raise self.load_error("model", ref.id, e, local=ref.path is not None) from e
        if ref.kind == "file":
            for name, module in pipe.components.items():
                self.require_weights(module, f"its {name}", ref)
        pipe.set_progress_bar_config(disable=True)
        return families.mark(pipe.to(device), family)

    @staticmethod
    def require_weights(module, what: str, ref: ModelRef) -> None:
        """A single file whose tensors did not fill a module the configs built (diffusers' single-file loading leaves
        such weights empty, to fail later in an unreadable way) is refused here, naming what is missing."""
        import torch

        if not isinstance(module, torch.nn.Module):
            return
        empty = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
        if empty:
            raise ValueError(f"model file {ref.path.name} does not fit the {ref.variant or ref.family.label} configs: "
                             f"{what} lacks {len(empty)} weights ({', '.join(empty[:3])}, ...)")

    def single_file_config(self, ref: ModelRef) -> Path:
        """The diffusers folder (without weights) a single file takes its configs and tokenizers from: the base a
        studio export names in its header, else the configs the studio carries for the file's variant."""
        from studio.models.configs import variant_folder

        base = self._export_base(ref.path)
        if base is not None:
            return Path(base)
        if not ref.variant:
            raise ValueError(f"{ref.path.name} is a {ref.family.label} file whose size matches none the studio "
                             f"carries configs for (see docs/models.md): load it from its diffusers folder")
        return variant_folder(ref.variant)

    def _export_base(self, path: Path) -> str | None:
        """A local diffusers folder to take configs from: the base a studio export names in its header, if any."""
        if path.suffix != ".safetensors":
            return None  # a pickle checkpoint the user opted into carries no readable header
        base_id = safetensors_metadata(path).get("studio.base_model")
        if base_id:
            try:
                ref = self.resolve(base_id)
            except ValueError:
                return None
            return str(ref.path) if ref.path is not None else None
        return None

    def load_controlnet(self, ref: ModelRef, *, dtype, device: str):
        from diffusers import ControlNetModel

        hub.quiet_loaders()
        try:
            if ref.kind == "file":
                model = ControlNetModel.from_single_file(str(ref.path), dtype=dtype,
                                                         local_files_only=not self.settings.allow_downloads)
            else:
                source, subfolder = (str(ref.path), None) if ref.path is not None else hub.repo_and_subfolder(ref.id)
                common = dict(subfolder=subfolder, dtype=dtype, use_safetensors=self.use_safetensors(),
                              local_files_only=not self.settings.allow_downloads)
                try:
                    model = ControlNetModel.from_pretrained(source, **common)
                except OSError:  # some repos ship only the half-precision variant of the weights
                    model = ControlNetModel.from_pretrained(source, variant="fp16", **common)
        except (OSError, EnvironmentError) as e:
            raise self.load_error("ControlNet", ref.id, e, local=ref.path is not None) from e
        return model.to(device)

    @staticmethod
    def store_frozen(module, base_precision: str, device: str) -> None:
        """Store a frozen denoiser small for LoRA training: bf16, or fp8 / int8 weight-only (torchao; the LoRA
        layers stay float32 beside them), nf4 being done at load time. Done where the module is: the training load
        does it on the CPU, before the module is placed on the GPU (`place`), so the GPU never holds it in bf16.
        Recorded on the module (studio_precision)."""
        import torch

        if base_precision in ("bf16", "fp8", "int8"):
            module.to(torch.bfloat16)
        if base_precision in ("fp8", "int8"):
            try:
                from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
            except ImportError as e:
                raise ValueError(f"`base_precision` {base_precision} needs torchao: pip install torchao==0.18.0 "
                                 f"(in requirements.txt)") from e
            quantize_(module, Float8WeightOnlyConfig() if base_precision == "fp8" else Int8WeightOnlyConfig())
        module.studio_precision = base_precision

        # ---- helper models: CLIP, captioners, the pocket checker, upscalers -------------------------------------

    def load_clip(self, model_id: str, *, device: str | None = None):
        """A CLIP model with its tokenizer and image processor, for CLIP scores (float32: scores are a comparison)."""
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        from studio.models.clip import ClipModel, resolve_clip

        hub.quiet_loaders()
        ref = resolve_clip(self.settings, model_id)
        device = device or self.settings.resolve_device()
        local_only = ref.local or not self.settings.allow_downloads
        try:
            model = CLIPModel.from_pretrained(ref.source, local_files_only=local_only,
                                              use_safetensors=self.use_safetensors())
            tokenizer = CLIPTokenizer.from_pretrained(ref.source, local_files_only=local_only)
            image_processor = CLIPImageProcessor.from_pretrained(ref.source, local_files_only=local_only)
        except OSError as e:
            where = self.settings.models_dir / "clip" / ref.id.rsplit("/", 1)[-1]
            hint = ("downloads are off (--offline)" if not self.settings.allow_downloads and not ref.local
                    else "its files could not be read")
            if ref.local and not self.settings.allow_pickle and any(Path(ref.source).glob("*.bin")):
                hint = "it holds pickle weights (.bin) and pickles need --allow-pickle"
            raise ValueError(f"could not load CLIP {ref.id!r}: {hint}. Put a transformers CLIP folder (config.json, "
                             f"model.safetensors, tokenizer and preprocessor files) in {where} and choose "
                             f"{where.name!r} ({type(e).__name__}: {str(e).splitlines()[0]})") from e
        model.eval().to(device)
        return ClipModel(ref, model, tokenizer, image_processor, device)

    def load_captioner(self, name: str, *, device: str | None = None):
        """A captioner (BLIP, Florence-2) from models/captioners/<name>/, else its hub id (the local hub cache only,
        unless downloads are allowed). A ValueError says where to put the weights when they are missing."""
        import transformers

        from studio.models.captioners import CAPTIONERS, Captioner, captioner_folder

        if name not in CAPTIONERS:
            raise ValueError(f"`captioner` must be one of template, {', '.join(CAPTIONERS)} but is {name!r}")
        hub.quiet_loaders()
        spec = CAPTIONERS[name]
        folder = captioner_folder(self.settings, name)
        source = str(folder) if (folder / "config.json").is_file() else spec.hub_id
        local_only = source == str(folder) or not self.settings.allow_downloads
        model_class = (transformers.BlipForConditionalGeneration if name == "blip"
                       else transformers.Florence2ForConditionalGeneration)
        try:
            processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=local_only)
            model = model_class.from_pretrained(source, local_files_only=local_only,
                                                use_safetensors=self.use_safetensors())
        except OSError as e:
            how = "" if self.settings.allow_downloads else ", or allow downloads (no --offline) to fetch it from the hub"
            raise ValueError(f"{name} captioner weights not found: put the files of {spec.hub_id} (config.json, "
                             f"model.safetensors, tokenizer and preprocessor files) in {folder}{how} "
                             f"({' '.join(str(e).split())[:160]})") from e
        device = device or self.settings.resolve_device()
        model = model.to(device=device, dtype=self.settings.resolve_dtype(device)).eval()
        return Captioner(spec, model, processor, device)

    def load_checker(self, folder: str, *, device: str | None = None):
        """A small image classifier saved as classifier.safetensors + classifier.json (the pocket checker), on
        the CPU: it is a few hundred kB and answers in milliseconds."""
        from studio.models.classifier import load_classifier

        return load_classifier(Path(folder))

    def load_upscaler(self, name: str, *, device: str | None = None):
        """A model upscaler from models/upscale/ (a file name, its stem, or a path), read by spandrel, which knows
        ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT and more. `.safetensors` always; `.pth` only with --allow-pickle (and
        then through spandrel's restricted unpickler). Half precision on the GPU where the network supports it."""
        import spandrel
        import torch

        from studio.models.store import safetensors_keys
        from studio.models.upscalers import UPSCALER_SUFFIXES, UpscalerModel

        # 1. The file, and whether the pickle policy lets it be read.
        path = self.upscaler_file(name)
        if path.suffix not in UPSCALER_SUFFIXES:
            raise ValueError(f"upscaler file {path} has suffix {path.suffix!r}; upscalers load from "
                             f"{' or '.join(UPSCALER_SUFFIXES)} files")
        if path.suffix == ".pth" and not self.settings.allow_pickle:
            raise ValueError(f"upscaler file {path} is a pickle file, which can run code when loaded; use its "
                             f".safetensors version or opt in with --allow-pickle")
        if path.suffix == ".safetensors":
            safetensors_keys(path)  # a clear error for a corrupt or truncated file

        # 2. The weights, then the architecture they fit.
        loader = spandrel.ModelLoader(device="cpu")
        try:
            state = loader.load_state_dict_from_file(path)
        except Exception as e:  # the restricted unpickler and torch raise many kinds for a bad or hostile file
            raise ValueError(f"could not read upscaler file {path} ({type(e).__name__}: {str(e)[:200]})") from e
        try:
            descriptor = _spandrel_model(loader, state)
        except Exception as e:  # keys of a known architecture whose shapes do not fit it: a damaged file
            raise ValueError(f"upscaler file {path} looks like a known architecture but its weights do not fit it "
                             f"({type(e).__name__}: {str(e)[:200]})") from e
        if descriptor is None:
            first = ", ".join(list(state)[:3])
            raise ValueError(f"upscaler file {path} is not an architecture spandrel knows (ESRGAN, Real-ESRGAN, "
                             f"SwinIR, HAT, DAT, ...): {len(state)} tensors, the first {first}")
        if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose not in ("SR", "Restoration"):
            raise ValueError(f"upscaler file {path} holds a {descriptor.architecture.name} model for "
                             f"{descriptor.purpose}, not an upscaler (face restorers such as GFPGAN need aligned "
                             f"faces; use Face fix instead)")

        # 3. On the device, in the studio's dtype when the network runs in it.
        device = device or self.settings.resolve_device()
        dtype = self.settings.resolve_dtype(device)
        if (dtype == torch.float16 and not descriptor.supports_half) or (
                dtype == torch.bfloat16 and not descriptor.supports_bfloat16):
            dtype = torch.float32
        descriptor.to(device, dtype).eval()
        return UpscalerModel(path.stem, path, descriptor.architecture.name, int(descriptor.scale),
                             descriptor.tiling.name, descriptor, descriptor.model, device, dtype)


def _spandrel_model(loader, state: dict):
    """spandrel's descriptor for a state dict, or None when no architecture matches. Some converted files keep a
    training wrapper's prefix on every key (`params_ema.`, `model.`); ESRGAN's own keys start with `model.`, so the
    prefix is taken off only when the keys as they are match nothing."""
    import spandrel

    prefix = next(iter(state), "").split(".", 1)[0] + "."
    attempts = [state]
    if prefix != "." and all(k.startswith(prefix) for k in state):
        attempts.append({k[len(prefix):]: v for k, v in state.items()})
    for attempt in attempts:
        try:
            return loader.load_from_state_dict(attempt)
        except spandrel.UnsupportedModelError:  # its message is empty; the caller says which file
            continue
    return None
