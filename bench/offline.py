"""Benchmark: single files as A1111, Forge and ComfyUI users keep them, at their real sizes, with no hub.

    .venv/bin/python bench/offline.py --part sd15|sdxl|flux [--root bench/out/offline] [--steps N] [--size PX]

Each part builds its model from the configs the studio carries (studio/models/configs/<variant>/; random weights,
seeded, nothing downloaded), writes it as the single file users have (SD: A1111's layout through the studio's
single_file_state, which diffusers' own key maps read back when it loads; FLUX.1: Forge's set, the transformer in
BFL's layout with clip_l, t5xxl_fp16 and ae files in models/text_encoder/ and models/vae/) and as a diffusers folder,
then runs one child process per phase, each with HF_HOME at an empty folder:

  generate  `python -m studio --offline generate --model <the file>` at --size px, --steps steps
  online    the same without --offline, the hub unreachable (HTTPS_PROXY at a closed local port), at 128 px, 1 step:
            a hub request would fail, so finishing says none was made
  train     the training child (`python -m studio.train.child RUN --offline`) on a LoRA run of the file, one --size
            px picture, --train-steps steps in --precision (bfloat16: the base stored in bf16 under bf16 autocast),
            the collapse guard off (its base-loss forward would double a one-step run)
  stock     stock diffusers on the diffusers-folder form: the run's kohya LoRA through load_lora_weights, the same
            seed with and without it (pixel differences printed)
  load-*    (flux) the whole file set through the store (bf16), and T5 alone as the studio reads it now and as it
            did before (the file's state dict, then transformers' from_pretrained(state_dict=...)), against the
            parts' file sizes

It prints what each phase did and its child's peak resident set (wait4's ru_maxrss). Real sizes: SD 1.5 (UNet 860 M,
fp16 file 2.1 GB), SDXL (UNet 2.6 B, bf16 file 6.9 GB); FLUX.1 at real widths with --double/--single transformer
blocks and --t5-layers of T5-XXL's 24 (CLIP-L and the VAE whole). Run one part at a time, with nothing else heavy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
REPO = Path(__file__).resolve().parent.parent
VARIANT = {"sd15": "sd15", "sdxl": "sdxl-base", "flux": "flux1-dev"}
PROMPT = "a photo of a cat"


# ---- children -----------------------------------------------------------------------------------------------------

def run_child(label: str, argv: list[str], root: Path, *, offline_env: bool = True, extra_env: dict | None = None,
              log: Path | None = None) -> dict:
    """Run `python *argv` as a child with an empty hub cache; its peak RSS from wait4."""
    env = dict(os.environ, HF_HOME=str(root / "empty-hub-cache"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    env.pop("HF_HUB_OFFLINE", None)  # nothing but the studio's own flag keeps it off the hub
    env.update(extra_env or {})
    (root / "empty-hub-cache").mkdir(parents=True, exist_ok=True)
    out = open(log or root / f"{label}.log", "w")
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *argv], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(root))
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    out.close()
    seconds = time.perf_counter() - started
    hub_files = [p for p in (root / "empty-hub-cache").rglob("*") if p.is_file()]
    result = {"phase": label, "exit": child.returncode, "seconds": round(seconds, 1),
              "peak_rss_mb": round(usage.ru_maxrss / 1024), "hub_cache_files": len(hub_files)}
    print(json.dumps(result), flush=True)
    if child.returncode != 0:
        print((log or root / f"{label}.log").read_text()[-3000:])
        raise SystemExit(f"phase {label} failed")
    return result


def phase(name: str, root: Path, args) -> list[str]:
    """argv that runs one of this file's own phases in a child."""
    return [str(Path(__file__).resolve()), "--phase", name, "--root", str(root.parent), "--part", args.part,
            "--size", str(args.size), "--double", str(args.double), "--single", str(args.single),
            "--t5-layers", str(args.t5_layers), "--precision", args.precision]


# ---- building the model ----------------------------------------------------------------------------------------------

def build(root: Path, args) -> None:
    """The part's model from the carried configs, random and seeded, saved as a single file and a diffusers folder."""
    import torch
    from safetensors.torch import save_file

    from studio.models import configs, families

    torch.manual_seed(0)
    variant = VARIANT[args.part]
    folder = configs.variant_folder(variant)
    dtype = torch.float16 if args.part == "sd15" else torch.bfloat16  # A1111's SD 1.5 fp16 file; SDXL, FLUX.1 bf16
    pipe = _random_pipeline(folder, dtype, args)
    pipe.save_pretrained(root / "folder", safe_serialization=True)
    base = root / "models" / "base"
    base.mkdir(parents=True, exist_ok=True)
    if args.part == "flux":
        from studio.models.families.flux1_files import file_states

        states = file_states(pipe)
        for part in ("clip_l", "t5xxl"):  # as Forge's guide has them: clip_l.safetensors, t5xxl_fp16.safetensors
            states[part] = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in states[part].items()}
        save_file(states["transformer"], str(base / "flux1-dev-bench.safetensors"))
        for part, folder_name, file in (("clip_l", "text_encoder", "clip_l.safetensors"),
                                        ("t5xxl", "text_encoder", "t5xxl_fp16.safetensors"),
                                        ("ae", "vae", "ae.safetensors")):
            (root / "models" / folder_name).mkdir(parents=True, exist_ok=True)
            save_file(states[part], str(root / "models" / folder_name / file))
    else:
        family = families.get("sd1" if args.part == "sd15" else "sdxl")
        save_file(family.single_file_state(pipe), str(base / f"{args.part}-bench.safetensors"))


def _random_pipeline(folder: Path, dtype, args):
    """Every component of the carried folder built from its config with random weights in `dtype` (FLUX.1: the
    transformer with --double/--single blocks, T5 with --t5-layers)."""
    import diffusers
    import torch
    import transformers

    from studio.models.configs import load_tokenizers

    index = json.loads((folder / "model_index.json").read_text())
    parts = dict(load_tokenizers(folder))
    torch.set_default_dtype(dtype)  # built in the dtype it is saved in: no float32 copy on the way
    try:
        for name, spec in index.items():
            if not isinstance(spec, list) or spec[0] is None or name in parts:
                continue
            library, cls = spec
            if library == "diffusers":
                model_cls = getattr(diffusers, cls)
                config = dict(model_cls.load_config(str(folder / name)))
                if name == "transformer":
                    config.update(num_layers=args.double, num_single_layers=args.single)
                parts[name] = model_cls.from_config(config)
            else:
                config = transformers.AutoConfig.from_pretrained(str(folder / name))
                if config.model_type == "t5":
                    config.num_layers = args.t5_layers
                parts[name] = getattr(transformers, cls)(config)
    finally:
        torch.set_default_dtype(torch.float32)
    scheduler = parts.pop("scheduler", None) or getattr(diffusers, index["scheduler"][1]).from_pretrained(
        str(folder), subfolder="scheduler")
    cls = getattr(diffusers, index["_class_name"])
    extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} \
        if index["_class_name"] == "StableDiffusionPipeline" else {}
    return cls(scheduler=scheduler, **parts, **extra)


# ---- phases run in children ------------------------------------------------------------------------------------------

def stock(root: Path, args) -> None:
    """Stock diffusers on the folder form, the run's kohya LoRA loaded by load_lora_weights; a picture with and
    without it at one seed."""
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    torch.set_num_threads(2)
    pipe = DiffusionPipeline.from_pretrained(str(root / "folder"), dtype=getattr(torch, args.precision))
    size = min(args.size, 256)
    kwargs = dict(num_inference_steps=1, height=size, width=size, output_type="np")

    def picture():
        return pipe(PROMPT, generator=torch.Generator().manual_seed(1), **kwargs).images[0].astype(np.float64) * 255

    from safetensors import safe_open

    before = picture()
    lora = root / "models" / "lora" / "bench-lora.safetensors"
    pipe.load_lora_weights(str(lora))
    after = picture()
    with safe_open(str(lora), "pt") as f:
        in_file = sum(k.endswith(".lora_down.weight") for k in f.keys())
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer")
    attached = sum(1 for name, _ in denoiser.named_modules() if name.endswith(".lora_A"))
    print(json.dumps({"stock_diffusers": type(pipe).__name__, "lora": lora.name, "size": size,
                      "kohya_layers_in_file": in_file, "lora_layers_attached": attached,
                      "max_pixel_change": round(float(np.abs(after - before).max()), 2),
                      "mean_pixel_change": round(float(np.abs(after - before).mean()), 3)}), flush=True)


def load(root: Path, args, how: str) -> None:
    """FLUX.1: the whole file set through the store (bf16; `set`), or T5 alone as the studio reads it now (`t5`) and
    as it did before (`t5-before`: the file's state dict, then transformers' from_pretrained(state_dict=...))."""
    import torch
    import transformers

    from studio.models.configs import variant_folder

    folder = variant_folder("flux1-dev")
    t5_file = root / "models" / "text_encoder" / "t5xxl_fp16.safetensors"
    if how == "set":
        from studio.context import Studio
        from studio.settings import Settings

        studio = Studio.open(Settings(root=root, models_dir=root / "models", allow_downloads=False))
        ref = studio.store.resolve(str(root / "models" / "base" / "flux1-dev-bench.safetensors"))
        model = studio.store.load_base(ref, dtype=torch.bfloat16, device="cpu")
    elif how == "t5":
        from studio.models.families.flux1_files import Part, load_text_encoder

        model = load_text_encoder(transformers.T5EncoderModel, folder / "text_encoder_2", Part(t5_file, ""),
                                  dtype=torch.bfloat16)
    else:
        from safetensors.torch import load_file

        config = transformers.AutoConfig.from_pretrained(str(folder / "text_encoder_2"))
        config.num_layers = args.t5_layers
        model = transformers.T5EncoderModel.from_pretrained(None, config=config, state_dict=load_file(str(t5_file)),
                                                            dtype=torch.bfloat16)
    print(json.dumps({"loaded": type(model).__name__, "how": how}), flush=True)


def run_config(root: Path, args) -> Path:
    """A LoRA run on the file, written as `python -m studio train` writes it (run.json), for the training child."""
    from PIL import Image
    from skimage import data as skdata

    from studio import fileio
    from studio.train.config import RunConfig

    size = args.size
    dataset = root / "workspace" / "datasets" / "bench-photos"
    dataset.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skdata.astronaut()).resize((size, size)).save(dataset / "000.png")
    (dataset / "000.txt").write_text("sks, a photo of a person")
    model = str(root / "models" / "base" / ("flux1-dev-bench.safetensors" if args.part == "flux"
                                            else f"{args.part}-bench.safetensors"))
    config = RunConfig(name="bench-lora", dataset="bench-photos", model=model, trigger="sks", resolution=size,
                       max_steps=args.train_steps, epochs=0, validation_every=0, rank=4, alpha=4.0, lr=1e-3,
                       mixed_precision="no" if args.precision == "float32" else "bf16",
                       base_precision="auto" if args.precision == "float32" else "bf16",
                       buckets=False, guard_loss_factor=0.0).check()  # a step or two: no collapse to watch for
    folder = root / "workspace" / "runs" / "bench-lora"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    fileio.write_json(folder / "run.json", config.to_json())
    return folder


# ---- the part, phase by phase ------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=tuple(VARIANT), required=True)
    parser.add_argument("--root", type=Path, default=REPO / "bench" / "out" / "offline")
    parser.add_argument("--steps", type=int, default=2, help="sampling steps of the generate phase")
    parser.add_argument("--train-steps", type=int, default=1)
    parser.add_argument("--size", type=int, default=512, help="picture side of the generate phase")
    parser.add_argument("--double", type=int, default=2, help="FLUX.1 double-stream blocks (the real one: 19)")
    parser.add_argument("--single", type=int, default=4, help="FLUX.1 single-stream blocks (the real one: 38)")
    parser.add_argument("--t5-layers", type=int, default=4, help="T5-XXL layers (the real one: 24)")
    parser.add_argument("--reuse", action="store_true", help="keep the model an earlier run of the part built")
    parser.add_argument("--phases", default="load,generate,online,train,stock", help="which phases to run")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default=None,
                        help="what generation, training and stock diffusers compute in (default: bfloat16 for SDXL, "
                             "which float32 would not fit in 24 GB; float32 for the others: a CPU without bf16 "
                             "instructions emulates bf16, ~10x slower)")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.precision = args.precision or ("bfloat16" if args.part == "sdxl" else "float32")
    root = args.root / args.part
    if args.phase == "build":
        build(root, args)
    elif args.phase == "stock":
        stock(root, args)
    elif args.phase.startswith("load-") if args.phase else False:
        load(root, args, args.phase.removeprefix("load-"))
    if args.phase:
        return 0

    print(f"# {args.part} at real size (variant {VARIANT[args.part]}), root {root}, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    results = []
    if not (args.reuse and (root / "folder" / "model_index.json").is_file()):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        results.append(run_child("build", phase("build", root, args), root))
    shutil.rmtree(root / "empty-hub-cache", ignore_errors=True)
    sizes = {p.relative_to(root / "models").as_posix(): round(p.stat().st_size / 2**20)
             for p in sorted((root / "models").rglob("*.safetensors"))}
    print(json.dumps({"files_mb": sizes}), flush=True)
    model = str(next((root / "models" / "base").glob("*.safetensors")))
    dtype = ["--dtype", args.precision]
    common = ["-m", "studio", "--root", str(root), *dtype]
    generate = ["generate", "--model", model, "--prompt", PROMPT, "--seed", "1", "--out", str(root / "pictures")]
    wanted = args.phases.split(",")
    if args.part == "flux" and "load" in wanted:
        for how in ("set", "t5", "t5-before"):
            results.append(run_child(f"load-{how}", phase(f"load-{how}", root, args), root))
    if "generate" in wanted:
        results.append(run_child("generate", [*common, "--offline", *generate, "--steps", str(args.steps),
                                              "--width", str(args.size), "--height", str(args.size)], root))
    if "online" in wanted:
        results.append(run_child("online", [*common, *generate, "--steps", "1", "--width", "128", "--height", "128"],
                                 root, extra_env={"HTTPS_PROXY": "http://127.0.0.1:9",
                                                  "HTTP_PROXY": "http://127.0.0.1:9"}))
    if "train" in wanted:
        folder = run_config(root, args)
        results.append(run_child("train", ["-m", "studio.train.child", str(folder), "--root", str(root),
                                           "--models-dir", str(root / "models"), "--workspace",
                                           str(root / "workspace"), "--device", "cpu", "--offline"], root))
    if "stock" in wanted:
        results.append(run_child("stock", phase("stock", root, args), root))
    print(json.dumps({"summary": {r["phase"]: r["peak_rss_mb"] for r in results}, "files_mb": sizes}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
