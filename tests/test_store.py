"""The model store: ids to refs, families, listing, refusing pickles and naming broken files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from studio.models import families


def test_builtin_refs_and_families(session_studio):
    store = session_studio.store
    assert store.resolve("builtin:tiny").family is families.get("sd1")
    assert store.resolve("builtin:tiny-xl").family is families.get("sdxl")
    with pytest.raises(ValueError, match="unknown builtin model 'huge'; builtin models are: pocket, tiny"):
        store.resolve("builtin:huge")


def test_builtin_is_built_once_and_deterministically(tmp_path, session_studio):
    from studio.models.builtin import ensure_builtin

    first = ensure_builtin("tiny", tmp_path)
    weights = first / "unet" / "diffusion_pytorch_model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert ensure_builtin("tiny", tmp_path) == first and weights.stat().st_mtime_ns == mtime
    other = session_studio.settings.models_dir / "builtin" / "tiny" / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.read_bytes() == other.read_bytes()  # fixed seeds: every machine builds the same model


def test_hub_ids_and_unknown_names(session_studio):
    ref = session_studio.store.resolve("stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert ref.kind == "hub" and ref.path is None and ref.name == "stable-diffusion-v1-5"
    with pytest.raises(ValueError, match="not found: it is not a builtin"):
        session_studio.store.resolve("no such model")
    with pytest.raises(ValueError, match="`model` is empty"):
        session_studio.store.resolve(" ")


def test_offline_hub_id_fails_clearly(session_studio):
    with pytest.raises(ValueError, match="could not load model 'someone/not-downloaded' \\(downloads are off"):
        with session_studio.cache.pipeline("someone/not-downloaded"):
            pass
    with pytest.raises(ValueError, match="could not load ControlNet 'someone/cn/diffusion_sd15' \\(downloads are off"):
        with session_studio.cache.pipeline("builtin:tiny", controlnets=["someone/cn/diffusion_sd15"]):
            pass


def test_no_way_to_the_hub_is_said_as_such(monkeypatch):
    import socket

    from studio.models import hub

    real_reachable = hub.reachable
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert real_reachable("127.0.0.1", port, timeout_s=2)
    assert not real_reachable("127.0.0.1", port, timeout_s=2)  # closed now: refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.invalid")
    monkeypatch.setattr(hub, "reachable", lambda host, **kw: host != "hub.example.invalid")
    assert "the hub, hub.example.invalid, cannot be reached from this machine" in hub.offline_hint(True)
    monkeypatch.setattr(hub, "reachable", lambda host, **kw: True)
    assert hub.offline_hint(True) == ""  # reachable: the loader's own message (a wrong id...) is the news
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "downloads are off" in hub.offline_hint(True)


def test_hub_ids_may_name_a_subfolder():
    from studio.models.hub import repo_and_subfolder

    assert repo_and_subfolder("CrucibleAI/ControlNetMediaPipeFace/diffusion_sd15") == (
        "CrucibleAI/ControlNetMediaPipeFace", "diffusion_sd15")
    assert repo_and_subfolder("lllyasviel/control_v11p_sd15_canny") == ("lllyasviel/control_v11p_sd15_canny", None)


def test_pickle_checkpoints_need_opt_in(settings, tmp_path):
    from studio.models import ModelStore

    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"cond_stage_model.transformer.text_model.x": torch.zeros(1),
                               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3)}}, ckpt)
    with pytest.raises(ValueError, match="is a pickle checkpoint.*--allow-pickle"):
        ModelStore(settings).resolve(str(ckpt))
    ref = ModelStore(settings.with_(allow_pickle=True)).resolve(str(ckpt))
    assert ref.kind == "file" and ref.family is families.get("sd1")  # keys read by the weights-only unpickler


def test_corrupt_and_wrong_files_are_named(settings, tmp_path):
    from studio.models import ModelStore

    store = ModelStore(settings)
    truncated = tmp_path / "truncated.safetensors"
    save_file({"cond_stage_model.transformer.x": torch.zeros(64)}, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:-50])
    with pytest.raises(ValueError, match=f"{truncated} is not a valid safetensors file"):
        store.resolve(str(truncated))
    not_sd = tmp_path / "random.safetensors"
    save_file({"weight": torch.zeros(2)}, str(not_sd))
    with pytest.raises(ValueError, match="matches no family the studio knows"):
        store.resolve(str(not_sd))
    folder = tmp_path / "empty_model"
    folder.mkdir()
    with pytest.raises(ValueError, match="has no model_index.json"):
        store.resolve(str(folder))


@pytest.mark.parametrize("key, family", [
    ("cond_stage_model.transformer.text_model.embeddings.position_ids", "sd1"),
    ("cond_stage_model.model.positional_embedding", "sd2"),
    ("conditioner.embedders.1.model.positional_embedding", "sdxl"),
])
def test_single_file_family_from_keys(settings, tmp_path, key, family):
    from studio.models import ModelStore

    path = tmp_path / "checkpoint.safetensors"
    save_file({key: torch.zeros(1), "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
               "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias": torch.zeros(8)}, str(path))
    assert ModelStore(settings).resolve(str(path)).family is families.get(family)


def test_listing_finds_what_users_drop_in(settings):
    from studio.models import ModelStore

    models = settings.models_dir
    (models / "lora").mkdir(parents=True, exist_ok=True)
    save_file({"x": torch.zeros(1)}, str(models / "lora" / "listed_lora.safetensors"))
    listing = ModelStore(settings).list_models()
    assert "builtin:tiny" in listing.base and "builtin:tiny-xl" in listing.base
    assert models / "lora" / "listed_lora.safetensors" in listing.lora
    assert listing.controlnet[0] == "builtin:tiny-controlnet"


def test_model_hash_is_a1111_short_sha256(session_studio):
    import hashlib

    ref = session_studio.store.resolve("builtin:tiny")
    unet = ref.path / "unet" / "diffusion_pytorch_model.safetensors"
    assert session_studio.store.model_hash(ref) == hashlib.sha256(unet.read_bytes()).hexdigest()[:10]
