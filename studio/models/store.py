"""The model store: turns a model id into a ModelRef, lists models/ on disk, hashes files; its loaders (the only
place weights are read) are in models/loaders.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from studio.fileio import inside
from studio.models import builtin, families, hub
from studio.models.families import ModelFamily
from studio.models.files import read_checkpoint, safetensors_keys
from studio.models.hashes import HashCache
from studio.models.loaders import ModelLoading, last_blocks, place
from studio.models.refs import ModelRef
from studio.models.upscalers import UPSCALER_SUFFIXES
from studio.settings import Settings

SHARED = "shared"  # models/users/<user>/lora/shared/: the LoRAs a user shares with everyone (studio.models.sharing)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
BASE_SUFFIXES = WEIGHT_SUFFIXES + (".gguf",)  # a base model may also be a GGUF file (quantized, as ComfyUI's)


@dataclass
class ModelListing:
    base: list[str] = field(default_factory=list)
    lora: list[Path] = field(default_factory=list)
    embeddings: list[Path] = field(default_factory=list)
    controlnet: list[str] = field(default_factory=list)
    upscale: list[Path] = field(default_factory=list)  # model upscalers in models/upscale/ (Lanczos needs none)


class ModelStore(ModelLoading):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.hashes = HashCache(settings.workspace_dir / ".cache" / "hashes.json")

    # ---- identifying ----------------------------------------------------------------------------------------

    @property
    def default_model(self) -> str:
        """The base model id every tab uses when the user names none: the configured one, else the best builtin
        (builtin:pocket when its weights are installed, which they are in a checkout)."""
        if self.settings.default_model:
            return self.settings.default_model
        return "builtin:pocket" if builtin.shipped_folder("pocket", self.settings.models_dir) else "builtin:tiny"

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
            self._check_weight_file(path, BASE_SUFFIXES)
            checkpoint = read_checkpoint(path)
            family = families.from_keys(checkpoint.shapes, path)
            return ModelRef(model_id, "file", path, family, family.file_variant(checkpoint))
        # A repo subfolder can hold one model component (a ControlNet), not a whole pipeline.
        if hub.is_hub_id(model_id) and (model_id.count("/") == 1 or subfolder == "controlnet"):
            return ModelRef(model_id, "hub", None, self._hub_family(model_id) if subfolder == "base" else None)
        builtins = ", ".join("builtin:" + n for n in builtin.builtin_names())
        where = (f"not a file or folder (also looked in {self.settings.models_dir / subfolder})"
                 if self.settings.server_paths else f"not a name in {subfolder}/ of the model store")
        raise ValueError(f"model {model_id!r} not found: it is not a builtin ({builtins}), {where}, and not a hub id "
                         f"(owner/name)")

    def _local_path(self, model_id: str, subfolder: str) -> Path | None:
        """A file or folder by name in models/<subfolder>/ (the user's own first), or (server paths allowed, or the
        default the studio was started with) any path."""
        candidates = [inside(folder, model_id) for folder in self.model_folders(subfolder)]
        if self.settings.server_paths or model_id == self.settings.default_model:
            candidates.insert(0, Path(model_id).expanduser())
        for candidate in candidates:
            if candidate is not None and candidate.exists():
                return candidate.resolve()
        return None

    def _check_weight_file(self, path: Path, suffixes: tuple[str, ...] = WEIGHT_SUFFIXES) -> None:
        if path.suffix not in suffixes:
            raise ValueError(f"model file {path} has suffix {path.suffix!r}; expected one of {', '.join(suffixes)}")
        if path.suffix in PICKLE_SUFFIXES and not self.settings.allow_pickle:
            raise ValueError(
                f"model file {path} is a pickle checkpoint, which can run code when loaded; convert it to "
                f".safetensors or opt in with --allow-pickle"
            )
        if path.suffix == ".safetensors":
            safetensors_keys(path)  # raises a clear error for a corrupt or truncated file

    @staticmethod
    def _folder_family(folder: Path) -> ModelFamily | None:
        index = folder / "model_index.json"
        if index.is_file():
            return families.from_index(json.loads(index.read_text()), folder)
        return families.from_component(json.loads((folder / "config.json").read_text()))  # a ControlNet, say

    def _hub_family(self, repo_id: str) -> ModelFamily | None:
        """A hub model's family without downloading: from its model_index.json when the hub cache has it, else
        from its name (FLUX.1 repos say so); None when nothing tells (the load then reads the index it fetches)."""
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "model_index.json")
        if isinstance(cached, str):
            return families.from_index(json.loads(Path(cached).read_text()), None)
        return families.from_hub_id(repo_id)

    # ---- listing -------------------------------------------------------------------------------------------

    def model_folders(self, sub: str) -> list[Path]:
        """Where models of `sub` (base, controlnet, lora, embeddings) are found, in the order names are looked up:
        what the user trained (models/users/<user>/<sub>/) first, then models/<sub>/ (everyone's), then for LoRAs
        those other users share (models/users/<other>/lora/shared/). The studio's owner trains into models/ itself."""
        settings = self.settings
        folders = [settings.own_models_dir / sub] if settings.user and sub != "controlnet" else []
        folders.append(settings.models_dir / sub)
        if sub == "lora":
            mine = settings.own_models_dir / sub / SHARED
            folders += [p for p in sorted((settings.models_dir / "users").glob(f"*/lora/{SHARED}"))
                        if p != mine and not p.is_symlink()]
        return folders

    def owner_of(self, model_id: str, sub: str = "base") -> str:
        """Whose model `model_id` names: this user's when it is one of their own (a fine-tuned base of theirs), else ""
        (everyone's). The model cache keeps the two apart, so one user's name never reaches another's weights."""
        own = inside(self.settings.own_models_dir / sub, model_id) if self.settings.user and model_id else None
        return self.settings.user if own is not None and own.exists() else ""

    def list_models(self) -> ModelListing:
        root = self.settings.models_dir
        not_bases = ("tiny-controlnet", "tiny-clip")
        listing = ModelListing(base=[f"builtin:{n}" for n in builtin.builtin_names() if n not in not_bases])
        if builtin.shipped_folder("pocket", root) is None:
            listing.base.remove("builtin:pocket")
        listing.controlnet = ["builtin:tiny-controlnet"]
        for sub, out in (("base", listing.base), ("controlnet", listing.controlnet)):
            for folder in self.model_folders(sub):
                for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                    if (p.is_dir() and ((p / "model_index.json").is_file() or (p / "config.json").is_file())) or (
                        p.is_file() and p.suffix in (BASE_SUFFIXES if sub == "base" else WEIGHT_SUFFIXES)
                    ):
                        out.append(p.name)
        listing.base = list(dict.fromkeys(listing.base))  # a name of the user's own hides an equal one of everyone's
        for sub, out in (("lora", listing.lora), ("embeddings", listing.embeddings)):
            for folder in self.model_folders(sub):
                if folder.is_dir():
                    out.extend(sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES))
        folder = root / "upscale"
        if folder.is_dir():
            listing.upscale = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in UPSCALER_SUFFIXES)
        return listing

    def lora_file(self, name_or_path: str) -> Path:
        return self._named_file(name_or_path, "lora")

    def embedding_file(self, name_or_path: str) -> Path:
        return self._named_file(name_or_path, "embeddings")

    def takes_distilled_guidance(self, ref: ModelRef) -> bool:
        """Whether `ref` takes a distilled guidance value as an input (FLUX.1-dev), told without loading weights."""
        return ref.family is not None and ref.family.takes_distilled_guidance(self, ref)

    def load_denoiser(self, ref: ModelRef, *, device: str, base_precision: str = "auto", dtype=None,
                      blocks_on_cpu: int = 0):
        """The denoiser alone (a staged training load; see the family's), read in `dtype`, stored as
        `base_precision` asks on the CPU and only then put on `device`, but for its last `blocks_on_cpu` blocks
        (block swapping brings those in as they run)."""
        model = ref.family.load_denoiser(self, ref, device=device, base_precision=base_precision, dtype=dtype)
        place(model, device, stay=last_blocks(ref.family, model, blocks_on_cpu))
        return model

    def upscaler_file(self, name_or_path: str) -> Path:
        """A model upscaler by file name in models/upscale/, by stem (what the parameters text calls it), or (server
        paths allowed: the command line) by path; a ValueError says where to put it when it is not there. Without
        server paths a name that leaves the folder is not looked up at all, so the answer is the same whether such a
        file exists or not."""
        folder = self.settings.models_dir / "upscale"
        name = (name_or_path or "").strip()
        if not name:
            raise ValueError("`upscaler` is empty: choose Lanczos or a model in models/upscale/")
        candidates = [inside(folder, n) for n in (name, *(f"{name}{s}" for s in UPSCALER_SUFFIXES))]
        if self.settings.server_paths:
            candidates.insert(0, Path(name).expanduser())
        for c in candidates:
            if c is not None and c.is_file():
                return c.resolve()
        path = " or give a path" if self.settings.server_paths else ""
        raise ValueError(f"upscaler {name!r} not found: put its .safetensors file in {folder} (it is then called by "
                         f"its file name without the suffix){path}; Lanczos needs no file")

    def _named_file(self, name_or_path: str, sub: str) -> Path:
        """A LoRA/embedding by file name in models/<sub>/ (the user's own first, see model_folders), by stem
        (A1111's `<lora:name:w>`), or (server paths allowed) by path."""
        folders = self.model_folders(sub)
        candidates = [c for folder in folders for c in
                      [inside(folder, name_or_path), *(inside(folder, f"{name_or_path}{s}") for s in WEIGHT_SUFFIXES)]]
        if self.settings.server_paths:
            candidates.insert(0, Path(name_or_path).expanduser())
        if "/" not in name_or_path and ".." not in name_or_path:
            candidates += [c for folder in folders if folder.is_dir()
                           for c in sorted(folder.rglob(f"{name_or_path}.safetensors"))]
        for c in candidates:
            if c is not None and c.is_file():
                self._check_weight_file(c)
                return c.resolve()
        raise ValueError(f"{sub} file {name_or_path!r} not found (looked in {self.settings.models_dir / sub}"
                         f"{' and for a path' if self.settings.server_paths else ''})")

    # ---- hashing -------------------------------------------------------------------------------------------

    def model_hash(self, ref: ModelRef) -> str:
        """A1111's `Model hash`: sha256 of the checkpoint file; for a diffusers folder, of its UNet weights."""
        weights = self._unet_weights(ref)
        return self.hashes.model_hash(weights) if weights else ""

    def _unet_weights(self, ref: ModelRef) -> Path | None:
        """The file A1111's model hash is taken of: the checkpoint, or a folder's UNet (FLUX.1: transformer) weights."""
        if ref.kind == "file":
            return ref.path
        part = ref.family.denoiser_name if ref.family is not None else "unet"
        if ref.path is not None:
            found = sorted((ref.path / part).glob("*.safetensors")) or sorted(ref.path.glob("*.safetensors"))
            return found[0] if found else None
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref.id, f"{part}/diffusion_pytorch_model.safetensors")
        return Path(cached) if isinstance(cached, str) else None
