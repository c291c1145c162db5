"""Delete subject: a prepared dataset, a run on it with its exports, a picture made with its LoRA, an evaluation against
it and its exported zip; one command removes every file of the subject under workspace/ and models/ and lists it."""

from __future__ import annotations

import hashlib
import json
import os

from fixtures_faces import astronaut, astronaut_variants, two_faces
from tests.train_helpers import make_dataset, tiny_config, train_in_process


def _files(root):
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(studio, config):
    """A run as start_run leaves it (run.json, which names its dataset), trained in this process."""
    from studio.fileio import write_json

    write_json(studio.settings.runs_dir / config.name / "run.json", config.to_json())
    train_in_process(studio, config)


def test_delete_subject_leaves_no_file_of_them_under_workspace_and_models(studio, tmp_path, capsys):
    from studio.cli import main
    from studio.data import PrepareRequest, export_dataset, prepare_dataset
    from studio.evaluate import EvaluationRequest, evaluate, parse_variant
    from studio.generate import GenerationRequest, LoraChoice, generate
    from studio.train.checkpoints import saved_epochs
    from studio.train.export import export_epoch

    settings = studio.settings
    # 1. Everything a user makes of one subject: the dataset (faces cached, masks, blurred uploads kept) ...
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, im in enumerate(astronaut_variants(2)):
        im.save(photos / f"jefpajot_{i}.jpg", quality=90)
    two_faces().save(photos / "jefpajot_party.png")
    ref = tmp_path / "ref.png"
    astronaut().save(ref)
    dataset = prepare_dataset(studio, PrepareRequest((photos,), "jefpajot", "ohwx", blur_bystanders=True,
                                                     reference=(ref,), workers=0)).dataset
    outside = tmp_path / "outside.png"  # a link in the dataset to a file elsewhere: the link goes, the file stays
    astronaut().resize((64, 64)).save(outside)
    os.symlink(outside, dataset.folder / "linked.png")
    subject_bytes = {_sha(p) for p in _files(dataset.folder) if not p.is_symlink()}
    shas = [im.sha256 for im in dataset.images]
    faces = settings.workspace_dir / ".cache" / "faces"
    assert all(list((faces / s[:2]).glob(f"{s}-*.json")) for s in shas)
    # ... a run on it (latents cached), its final and epoch exports, a picture made with the LoRA, an evaluation, a zip
    _train(studio, tiny_config(name="jefpajot-lora", dataset="jefpajot", trigger="ohwx", max_steps=2))
    run = settings.runs_dir / "jefpajot-lora"
    export_epoch(run, saved_epochs(run)[-1], settings.models_dir)
    made = generate(studio, GenerationRequest(prompt="ohwx", model="builtin:tiny", steps=2, width=64, height=64,
                                              loras=[LoraChoice("jefpajot-lora", 1.0)])).images[0].path
    evaluate(studio, EvaluationRequest(name="jefpajot-eval", prompts=["ohwx"], seeds=[1], reference="jefpajot", steps=2,
                                       width=64, height=64,
                                       variants=[parse_variant("base=builtin:tiny"),
                                                 parse_variant("jef=builtin:tiny+lora:jefpajot-lora:1")]))
    export_dataset(settings, "jefpajot")
    studio.store.hashes.lora_hash(settings.models_dir / "lora" / "jefpajot-lora.safetensors")
    # Someone else's dataset and run, which must survive
    make_dataset(settings, "other", [astronaut().resize((64, 64))], ["sks"])
    _train(studio, tiny_config(name="other-lora", dataset="other", max_steps=1))
    survivors = [settings.datasets_dir / "other" / "000.png", settings.runs_dir / "other-lora" / "run.json",
                 settings.models_dir / "lora" / "other-lora.safetensors", outside, made]
    cached = [p for p in (settings.workspace_dir / ".cache" / "train").glob("latents-*.safetensors")]
    assert len(cached) == 2

    # 2. Without --yes: the list, and nothing removed
    root = ["--root", str(settings.root), "--workspace", str(settings.workspace_dir), "--models-dir",
            str(settings.models_dir)]
    assert main(["delete-subject", "jefpajot", *root]) == 1
    listed = capsys.readouterr().out
    assert "would remove dataset:" in listed and "nothing was deleted: add --yes" in listed
    assert dataset.folder.is_dir() and (settings.models_dir / "lora" / "jefpajot-lora.safetensors").is_file()

    # 3. With --yes: gone, and said
    assert main(["delete-subject", "jefpajot", "--yes", *root]) == 0
    said = capsys.readouterr().out
    for what in ("removed dataset:", "removed run:", "removed exported LoRA:", "removed evaluation:",
                 "removed dataset export:", "removed face cache:", "removed training cache:"):
        assert what in said, what
    assert f"kept {made}: made with the subject's model; your picture" in said
    everything = _files(settings.workspace_dir) + _files(settings.models_dir)
    left = [p for p in everything if "jefpajot" in str(p.relative_to(settings.root if p.is_relative_to(settings.root)
                                                                else settings.models_dir))]
    assert left == [], left
    assert not [p for p in everything if not p.is_symlink() and p.stat().st_size < 50_000_000
                and _sha(p) in subject_bytes]
    assert not [s for s in shas if list((faces / s[:2]).glob(f"{s}-*.json"))]
    for p in (settings.workspace_dir / ".cache" / "train").glob("*.safetensors"):
        with open(p, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        assert header.get("__metadata__", {}).get("studio.dataset") != str(dataset.folder), p
    assert "jefpajot-lora" not in (settings.workspace_dir / ".cache" / "hashes.json").read_text()
    assert all(p.exists() for p in survivors), [p for p in survivors if not p.exists()]
    assert main(["delete-subject", "jefpajot", "--yes", *root]) == 2  # nothing by that name any more
    assert "`dataset` 'jefpajot' not found" in capsys.readouterr().err
