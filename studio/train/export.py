"""Exports of a run: LoRA (kohya/A1111 in models/lora/, diffusers/peft in the run folder), textual-inversion
embeddings (A1111 in models/embeddings/, diffusers in the run folder), DreamBooth and finetune (diffusers folder and
single file in models/base/); a sweep cell's kept weights the same way (export_step). Training facts go in every safetensors header."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio import fileio
from studio.models import families


@dataclass
class Facts:
    base_model: str
    method: str
    trigger: str
    name: str
    dataset: str
    dataset_hash: str
    resolution: int
    rank: int
    alpha: float
    family: str
    lora_layers: str = "attention"
    # With several subjects: [{dataset, trigger, dataset_hash}] for each (the first is also `dataset`, `trigger`)
    subjects: list = field(default_factory=list)

    def header(self, steps: int, epoch: int) -> dict[str, str]:
        """safetensors metadata (strings only): studio.* keys, and kohya's ss_* keys A1111 shows. Several subjects
        add studio.subjects, studio.datasets and studio.triggers (JSON), and every trigger in ss_tag_frequency."""
        meta = {f"studio.{k}": str(v) for k, v in asdict(self).items() if k != "subjects"}
        triggers = [s["trigger"] for s in self.subjects] or [self.trigger]
        meta.update({"studio.steps": str(steps), "studio.epoch": str(epoch), "ss_output_name": self.name,
                     "ss_sd_model_name": self.base_model, "ss_steps": str(steps), "ss_epoch": str(epoch),
                     "ss_resolution": str(self.resolution),
                     "ss_tag_frequency": json.dumps({t: 1 for t in triggers})})
        if self.subjects:
            meta.update({"studio.subjects": json.dumps(self.subjects),
                         "studio.datasets": json.dumps([s["dataset"] for s in self.subjects]),
                         "studio.triggers": json.dumps(triggers)})
        if self.method == "lora":
            meta.update(families.get(self.family).kohya_header(rank=self.rank, alpha=self.alpha,
                                                               lora_layers=self.lora_layers))
        return meta


def _save(state: dict, path: Path, meta: dict) -> Path:
    from safetensors.torch import save_file

    with fileio.atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp), metadata=meta)
    return path


def export_lora(state: dict, meta: dict, *, models_dir: Path, run_dir: Path, denoiser_config, family,
                out_name: str | None = None) -> list[Path]:
    """models/lora/<name>.safetensors (kohya) and <run>/export/<name>/pytorch_lora_weights.safetensors (diffusers)."""
    name = out_name or meta["studio.name"]
    alpha, rank = float(meta["studio.alpha"]), int(meta["studio.rank"])
    adapter_meta = {}
    for prefix in sorted({k.split(".", 1)[0] for k in state}):
        modules = sorted({k.split(".", 1)[1].split(".lora_")[0] for k in state if k.startswith(prefix + ".")})
        adapter_meta.update({f"{prefix}.r": rank, f"{prefix}.lora_alpha": alpha, f"{prefix}.target_modules": modules})
    diffusers_meta = dict(meta, format="pt", lora_adapter_metadata=json.dumps(adapter_meta, sort_keys=True))
    kohya = family.lora_to_kohya(state, alpha=alpha, denoiser_config=denoiser_config)
    return [_save(kohya, Path(models_dir) / "lora" / f"{name}.safetensors", meta),
            _save(state, Path(run_dir) / "export" / name / "pytorch_lora_weights.safetensors", diffusers_meta)]


def export_embedding(vectors: list, token: str, meta: dict, *, models_dir: Path, run_dir: Path, family,
                     out_name: str | None = None) -> list[Path]:
    """models/embeddings/<token>.safetensors in A1111's layout (`emb_params`, or SDXL's `clip_l` + `clip_g`: the
    family's embedding_layout), and diffusers' learned_embeds.safetensors ({token: vectors}; a second text encoder
    adds learned_embeds_2.safetensors)."""
    name = out_name or token
    a1111 = family.embedding_layout(vectors)
    files = [_save(a1111, Path(models_dir) / "embeddings" / f"{name}.safetensors", meta)]
    folder = Path(run_dir) / "export" / name
    for i, v in enumerate(vectors):
        files.append(_save({token: v}, folder / f"learned_embeds{'' if i == 0 else '_2'}.safetensors", meta))
    return files


def export_dreambooth(pipe, meta: dict, *, models_dir: Path, name: str) -> list[Path]:
    """models/base/<name>/ (diffusers folder, renamed into place whole) and, where the family writes one,
    models/base/<name>.safetensors (original single-file layout; `studio.base_model` tells the store where to find
    configs offline)."""
    base = Path(models_dir) / "base"
    base.mkdir(parents=True, exist_ok=True)
    folder = base / name
    with fileio.atomic_dir(folder) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        fileio.write_json(tmp / "studio_training.json", meta)
    single = families.of(pipe).single_file_state(pipe)
    if single is None:
        return [folder]
    return [folder, _save(single, base / f"{name}.safetensors", meta)]


def export_final(method, parts, config, models_dir: Path, run_dir: Path, meta: dict) -> list[Path]:
    """Export the weights the run ends with, by method."""
    if config.method == "lora":
        return export_lora(method.state(), meta, models_dir=models_dir, run_dir=run_dir,
                           denoiser_config=parts.denoiser.config, family=parts.family)
    if config.method == "textual-inversion":
        if not config.extra_subjects:
            return export_embedding(method.vectors(), method.token, meta, models_dir=models_dir, run_dir=run_dir,
                                    family=parts.family)
        return [f for token, vectors in method.subject_vectors()  # one embedding file per subject's token
                for f in export_embedding(vectors, token, meta, models_dir=models_dir, run_dir=run_dir,
                                          family=parts.family)]
    return export_dreambooth(parts.pipe, meta, models_dir=models_dir, name=config.name)


def export_epoch(run_dir: Path, epoch: int, models_dir: Path) -> list[Path]:
    """Export the weights saved after `epoch` (LoRA or embedding), named `<run>-e<epoch>`, for the epoch picker."""
    from studio.train.checkpoints import epoch_file

    path = epoch_file(run_dir, epoch)
    if not path.is_file():
        if not (Path(run_dir) / "run.json").is_file():
            raise ValueError(f"`epoch` {epoch} has no saved weights in {run_dir}: no run is there")
        raise ValueError(f"`epoch` {epoch} of run {Path(run_dir).name} has no saved weights: "
                         f"{saved_epochs_note(run_dir)}")
    meta, state = _read_saved(path)
    return _export_small(state, meta, run_dir, models_dir, f"{meta['studio.name']}-e{epoch:03d}")


def saved_epochs_note(run_dir: Path) -> str:
    """Which epochs of the run in `run_dir` can be exported, or why none can, in words."""
    from studio.train.checkpoints import saved_epochs
    from studio.train.config import RunConfig

    saved = saved_epochs(run_dir)
    if saved:
        return f"the epochs saved are {', '.join(map(str, saved))} (Save every N epochs, Keep last N epochs)"
    config = RunConfig.load(Path(run_dir) / "run.json")
    if config.whole_model:
        return (f"{config.method} keeps no weights per epoch, only the final model, which is exported when the run "
                f"ends")
    return "no epoch is saved yet (weights are saved at each validation and when the run ends)"


def export_step(store, run_dir: Path, step: int, models_dir: Path, out_name: str) -> list[Path]:
    """Export the weights a run kept at `step` (validate_at_steps: a sweep's cell) as `out_name`: a base model in
    models/base/ for finetune and DreamBooth (their denoiser put into the base, loaded through the store), a LoRA
    or an embedding for the others."""
    import torch

    from studio.train.checkpoints import step_file
    from studio.train.choices import WHOLE_MODEL

    path = step_file(run_dir, step)
    if not path.is_file():
        raise ValueError(f"`step` {step} has no kept weights in {run_dir} (only the steps of validate_at_steps "
                         f"whose pictures passed the collapse guard are kept)")
    meta, state = _read_saved(path)
    if meta["studio.method"] not in WHOLE_MODEL:
        return _export_small(state, meta, run_dir, models_dir, out_name)
    pipe = store.load_base(store.resolve(meta["studio.base_model"]), dtype=torch.float32, device="cpu")
    for prefix in sorted({k.split(".", 1)[0] for k in state}):  # pipeline attributes: the trained modules
        getattr(pipe, prefix).load_state_dict({k[len(prefix) + 1:]: v.float() for k, v in state.items()
                                               if k.startswith(prefix + ".")})
    return export_dreambooth(pipe, dict(meta, **{"studio.name": out_name}), models_dir=models_dir, name=out_name)


def _read_saved(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}


def _export_small(state: dict, meta: dict, run_dir: Path, models_dir: Path, name: str) -> list[Path]:
    """A LoRA's or an embedding's saved weights to the model store, as `name`."""
    from types import SimpleNamespace

    if meta["studio.method"] == "lora":
        saved = Path(run_dir) / "denoiser_config.json"
        saved = saved if saved.is_file() else Path(run_dir) / "unet_config.json"  # what runs before FLUX wrote
        config = SimpleNamespace(**json.loads(saved.read_text()))
        return export_lora(state, meta, models_dir=models_dir, run_dir=run_dir, denoiser_config=config,
                           family=families.get(meta["studio.family"]), out_name=name)
    vectors = [state[f"emb.{i}"] for i in range(len(state))]
    family = families.get(meta["studio.family"])
    if "studio.triggers" not in meta:
        return export_embedding(vectors, meta["studio.trigger"].lower(), meta, models_dir=models_dir, run_dir=run_dir,
                                family=family, out_name=name)
    triggers = json.loads(meta["studio.triggers"])  # one embedding per subject, `vectors` rows each
    n = vectors[0].shape[0] // len(triggers)
    return [f for k, t in enumerate(triggers)
            for f in export_embedding([v[k * n:(k + 1) * n] for v in vectors], t.lower(), meta, models_dir=models_dir,
                                      run_dir=run_dir, family=family, out_name=f"{name}-{t.lower()}")]
