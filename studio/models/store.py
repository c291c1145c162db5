"""The model store: turns a model id into a ModelRef, lists models/ on disk, and loads weights (the only loader)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from studio.models import builtin
from studio.models.hashes import HashCache
from studio.models.refs import Family, ModelRef
from studio.settings import Settings

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
# owner/name, optionally followed by a subfolder of the repo (CrucibleAI/ControlNetMediaPipeFace/diffusion_sd15).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.-]+)*$")
# Cross-attention width of each family's UNet (and ControlNet): how LoRAs and ControlNets are matched to a base.
CROSS_ATTENTION_FAMILY = {768: Family.SD1, 1024: Family.SD2, 2048: Family.SDXL}


@dataclass
class ModelListing:
    base: list[str] = field(default_factory=list)
    lora: list[Path] = field(default_factory=list)
    embeddings: list[Path] = field(default_factory=list)
    controlnet: list[str] = field(default_factory=list)


class ModelStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.hashes = HashCache(settings.workspace_dir / ".cache" / "hashes.json")

    # ---- identifying ----------------------------------------------------------------------------------------

    def resolve(self, model_id: str, *, subfolder: str = "base") -> ModelRef:
        """Resolve a base model (or, with subfolder="controlnet", a ControlNet) id to a ModelRef."""
        model_id = (model_id or "").strip()
        if not model_id:
            raise ValueError("`model` is empty: give builtin:NAME, a hub id (owner/name) or a local path")
        if model_id.startswith("builtin:"):
            name = model_id.split(":", 1)[1]
            folder = builtin.ensure_builtin(name, self.settings.models_dir)
            return ModelRef(model_id, "builtin", folder, self._folder_family(folder))
        path = self._local_path(model_id, subfolder)
        if path is not None:
            if path.is_dir():
                if not ((path / "model_index.json").is_file() or (path / "config.json").is_file()):
                    raise ValueError(f"model folder {path} has no model_index.json or config.json: not a diffusers model")
                return ModelRef(model_id, "folder", path, self._folder_family(path))
            self._check_weight_file(path)
            return ModelRef(model_id, "file", path, single_file_family(path))
        # A repo subfolder can hold one model component (a ControlNet), not a whole pipeline.
        if _HUB_ID.match(model_id) and (model_id.count("/") == 1 or subfolder == "controlnet"):
            return ModelRef(model_id, "hub", None, None)
        raise ValueError(
            f"model {model_id!r} not found: it is not a builtin ({', '.join('builtin:' + n for n in builtin.builtin_names())}), "
            f"not a file or folder (also looked in {self.settings.models_dir / subfolder}), and not a hub id (owner/name)"
        )

    def _local_path(self, model_id: str, subfolder: str) -> Path | None:
        for candidate in (Path(model_id).expanduser(), self.settings.models_dir / subfolder / model_id):
            if candidate.exists():
                return candidate.resolve()
        return None

    def _check_weight_file(self, path: Path) -> None:
        if path.suffix not in WEIGHT_SUFFIXES:
            raise ValueError(f"model file {path} has suffix {path.suffix!r}; expected one of {', '.join(WEIGHT_SUFFIXES)}")
        if path.suffix in PICKLE_SUFFIXES and not self.settings.allow_pickle:
            raise ValueError(
                f"model file {path} is a pickle checkpoint, which can run code when loaded; convert it to "
                f".safetensors or opt in with --allow-pickle"
            )
        if path.suffix == ".safetensors":
            safetensors_keys(path)  # raises a clear error for a corrupt or truncated file

    @staticmethod
    def _folder_family(folder: Path) -> Family | None:
        index = folder / "model_index.json"
        if index.is_file():
            if "XL" in json.loads(index.read_text()).get("_class_name", ""):
                return Family.SDXL
            unet_config = folder / "unet" / "config.json"
            dim = json.loads(unet_config.read_text()).get("cross_attention_dim") if unet_config.is_file() else None
        else:  # a single component such as a ControlNet
            dim = json.loads((folder / "config.json").read_text()).get("cross_attention_dim")
        return CROSS_ATTENTION_FAMILY.get(dim, Family.SD1 if index.is_file() else None)

    # ---- listing -------------------------------------------------------------------------------------------

    def list_models(self) -> ModelListing:
        root = self.settings.models_dir
        not_bases = ("tiny-controlnet", "tiny-clip")
        listing = ModelListing(base=[f"builtin:{n}" for n in builtin.builtin_names() if n not in not_bases])
        if builtin.shipped_folder("pocket", root) is None:
            listing.base.remove("builtin:pocket")
        listing.controlnet = ["builtin:tiny-controlnet"]
        for sub, out in (("base", listing.base), ("controlnet", listing.controlnet)):
            folder = root / sub
            if folder.is_dir():
                for p in sorted(folder.iterdir()):
                    if (p.is_dir() and ((p / "model_index.json").is_file() or (p / "config.json").is_file())) or (
                        p.is_file() and p.suffix in WEIGHT_SUFFIXES
                    ):
                        out.append(p.name)
        for sub, out in (("lora", listing.lora), ("embeddings", listing.embeddings)):
            folder = root / sub
            if folder.is_dir():
                out.extend(sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES))
        return listing

    def lora_file(self, name_or_path: str) -> Path:
        return self._named_file(name_or_path, "lora")

    def embedding_file(self, name_or_path: str) -> Path:
        return self._named_file(name_or_path, "embeddings")

    def _named_file(self, name_or_path: str, sub: str) -> Path:
        """A LoRA/embedding by path, by file name in models/<sub>/, or by stem (A1111's `<lora:name:w>`)."""
        folder = self.settings.models_dir / sub
        candidates = [Path(name_or_path).expanduser(), folder / name_or_path]
        candidates += [folder / f"{name_or_path}{s}" for s in WEIGHT_SUFFIXES]
        if folder.is_dir() and "/" not in name_or_path:
            candidates += sorted(folder.rglob(f"{name_or_path}.safetensors"))
        for c in candidates:
            if c.is_file():
                self._check_weight_file(c)
                return c.resolve()
        raise ValueError(f"{sub} file {name_or_path!r} not found (looked for a path and in {folder})")

    # ---- hashing -------------------------------------------------------------------------------------------

    def model_hash(self, ref: ModelRef) -> str:
        """A1111's `Model hash`: sha256 of the checkpoint file; for a diffusers folder, of its UNet weights."""
        weights = self._unet_weights(ref)
        return self.hashes.model_hash(weights) if weights else ""

    def _unet_weights(self, ref: ModelRef) -> Path | None:
        if ref.kind == "file":
            return ref.path
        if ref.path is not None:
            found = sorted((ref.path / "unet").glob("*.safetensors")) or sorted(ref.path.glob("*.safetensors"))
            return found[0] if found else None
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref.id, "unet/diffusion_pytorch_model.safetensors")
        return Path(cached) if isinstance(cached, str) else None

    # ---- loading (the only place weights are read from disk or the hub) --------------------------------------

    def load_base(self, ref: ModelRef, *, dtype, device: str):
        """Load a txt2img pipeline (StableDiffusionPipeline or StableDiffusionXLPipeline) for `ref`."""
        import diffusers

        _quiet_loaders()
        common = dict(dtype=dtype)
        no_safety = dict(safety_checker=None, requires_safety_checker=False)
        try:
            if ref.kind == "file":
                cls = diffusers.StableDiffusionXLPipeline if ref.family == Family.SDXL else diffusers.StableDiffusionPipeline
                extra = {} if ref.family == Family.SDXL else no_safety
                config = self._single_file_config(ref.path)
                pipe = cls.from_single_file(
                    str(ref.path), config=config, local_files_only=config is not None or not self.settings.allow_downloads,
                    **common, **extra,
                )
            else:
                source = str(ref.path) if ref.path is not None else ref.id
                index = diffusers.DiffusionPipeline.load_config(source, local_files_only=not self.settings.allow_downloads)
                extra = no_safety if "safety_checker" in index else {}
                pipe = diffusers.DiffusionPipeline.from_pretrained(
                    source,
                    use_safetensors=not self.settings.allow_pickle,
                    local_files_only=not self.settings.allow_downloads,
                    **common,
                    **extra,
                )
        except (OSError, EnvironmentError) as e:
            hint = ""
            if ref.kind == "file" and not self.settings.allow_downloads:
                hint = (f" (a single-file checkpoint takes its {ref.family.label if ref.family else 'model'} configs from "
                        "the hub: run once without --offline so they are cached)")
            raise ValueError(f"could not load model {ref.id!r}{hint or self._offline_hint(ref)}: {e}") from e
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)

    def _offline_hint(self, ref: ModelRef) -> str:
        if ref.kind == "hub" and not self.settings.allow_downloads:
            return (" (downloads are off and it is not in the local hub cache: run once without --offline, or put "
                    "its files in a folder and give that path)")
        return ""

    def _single_file_config(self, path: Path) -> str | None:
        """A local diffusers folder to take configs from: the base a studio export names in its header, if any."""
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

        _quiet_loaders()
        try:
            if ref.kind == "file":
                model = ControlNetModel.from_single_file(str(ref.path), dtype=dtype,
                                                         local_files_only=not self.settings.allow_downloads)
            else:
                source, subfolder = (str(ref.path), None) if ref.path is not None else hub_repo_and_subfolder(ref.id)
                common = dict(subfolder=subfolder, dtype=dtype, use_safetensors=not self.settings.allow_pickle,
                              local_files_only=not self.settings.allow_downloads)
                try:
                    model = ControlNetModel.from_pretrained(source, **common)
                except OSError:  # some repos ship only the half-precision variant of the weights
                    model = ControlNetModel.from_pretrained(source, variant="fp16", **common)
        except (OSError, EnvironmentError) as e:
            raise ValueError(f"could not load ControlNet {ref.id!r}{self._offline_hint(ref)}: {e}") from e
        return model.to(device)

    def load_clip(self, model_id: str, *, device: str | None = None):
        """A CLIP model with its tokenizer and image processor, for CLIP scores (see models/clip.py)."""
        from studio.models.clip import load_clip

        return load_clip(self, model_id, device=device)


def hub_repo_and_subfolder(model_id: str) -> tuple[str, str | None]:
    """Split owner/name[/sub/folder] into the repo id and the subfolder inside it."""
    parts = model_id.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None


def _quiet_loaders() -> None:
    # Loading bars from diffusers/transformers would interleave with the studio's own progress lines.
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise ValueError(f"file {path} is not a valid safetensors file ({type(e).__name__}: {e})") from e


def safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise ValueError(f"file {path} is not a valid safetensors file ({type(e).__name__}: {e})") from e


def single_file_family(path: Path) -> Family | None:
    """Tell an A1111-style checkpoint's family from its key names (only safetensors can be read without loading)."""
    if path.suffix != ".safetensors":
        return None
    keys = safetensors_keys(path)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return Family.SDXL
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return Family.SD2
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return Family.SD1
    raise ValueError(f"model file {path} is not a Stable Diffusion checkpoint: no text-encoder keys found")
