"""Evaluation pieces: variant specs, request checks, sim-score summaries on known numbers, CLIP score, charts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut, hopper
from studio.context import Studio


def _request(**changes):
    from studio.evaluate import EvaluationRequest, parse_variant

    fields = dict(name="run", prompts=["a photo of a man"], seeds=[1, 2], reference="folder",
                  variants=[parse_variant("control=builtin:tiny"), parse_variant("mine=+lora:mine:0.6")])
    return EvaluationRequest(**{**fields, **changes})


def test_variant_specs_are_read_and_written_back():
    from studio.evaluate import Variant, parse_variant
    from studio.generate import LoraChoice

    v = parse_variant("mine@0.6=builtin:tiny+lora:mine:0.6+lora:style+embedding:amari")
    assert v == Variant("mine@0.6", "builtin:tiny", [LoraChoice("mine", 0.6), LoraChoice("style", 1.0)], ["amari"])
    assert parse_variant(v.spec()) == v
    assert parse_variant("control=") == Variant("control", "")
    assert parse_variant("lora:mine:0.8") == Variant("lora:mine:0.8", "", [LoraChoice("mine", 0.8)])
    with pytest.raises(ValueError, match="part 'builtin:tiny' is neither"):
        parse_variant("x=+lora:a:1+builtin:tiny")


@pytest.mark.parametrize("changes, message", [
    (dict(name="../up"), "`name` must be"),
    (dict(prompts=[]), "`prompts` must hold"),
    (dict(prompts=["a", "a"]), "a prompt twice"),
    (dict(seeds=[1, 1]), "distinct seeds"),
    (dict(seeds=[-1]), "holds -1"),
    (dict(reference=" "), "`reference` is empty"),
    (dict(steps=0), "`steps` must be between 1 and 150 but is 0"),
    (dict(width=100), "`width` is 100"),
    (dict(tolerance=0), "`tolerance` must be"),
])
def test_bad_requests_name_the_argument(changes, message):
    with pytest.raises(ValueError, match=message):
        _request(**changes).check()


def test_variants_must_be_two_or_more_with_distinct_labels():
    from studio.evaluate import parse_variant

    with pytest.raises(ValueError, match="at least 2 variants"):
        _request(variants=[parse_variant("a=")]).check()
    with pytest.raises(ValueError, match="labels must differ"):
        _request(variants=[parse_variant("a="), parse_variant("a=+lora:x")]).check()
    with pytest.raises(ValueError, match="LoRA weight for 'x' must be between -4 and 4 but is 9"):
        _request(variants=[parse_variant("a="), parse_variant("b=+lora:x:9")]).check()


def test_study_seeds_start_with_seed_000s_and_are_fixed():
    from studio.evaluate import STUDY_SEEDS, study_seeds

    assert study_seeds(5) == list(STUDY_SEEDS) and study_seeds(2) == [335728730, 691007764]
    assert study_seeds(8)[:5] == list(STUDY_SEEDS) and study_seeds(8) == study_seeds(8)
    assert len(set(study_seeds(8))) == 8
    with pytest.raises(ValueError, match="`n_seeds` must be between 1 and 100 but is 0"):
        study_seeds(0)


def test_summaries_on_known_numbers():
    from studio.evaluate import ImageScore, format_table
    from studio.evaluate.scoring import summarise

    rows = [ImageScore("a-312", "p1", 1, "f", 0.4181), ImageScore("a-312", "p1", 2, "f", 0.3952),
            ImageScore("a-312", "p2", 1, "f", None), ImageScore("a-312", "p2", 2, "f", 0.4767),
            ImageScore("ctrl", "p1", 1, "f", 0.8654, 20.0), ImageScore("ctrl", "p1", 2, "f", None, 30.0),
            ImageScore("ctrl", "p2", 1, "f", None, 10.0), ImageScore("ctrl", "p2", 2, "f", 0.7520, 0.0)]
    a, ctrl = summarise(rows, ["a-312", "ctrl"], None, 0.40)
    assert (a.images, a.faces, a.no_face, a.alike) == (4, 3, 1, 1)
    assert a.mean_sim == pytest.approx((0.4181 + 0.3952 + 0.4767) / 3) and a.best_sim == 0.3952 and a.mean_clip is None
    assert (ctrl.faces, ctrl.no_face, ctrl.alike) == (2, 2, 0) and ctrl.mean_sim == pytest.approx((0.8654 + 0.7520) / 2)
    assert ctrl.mean_clip == pytest.approx(15.0)
    per_prompt = summarise(rows, ["a-312", "ctrl"], ["p1", "p2"], 0.40)
    assert [(s.prompt, s.variant, s.no_face) for s in per_prompt] == [
        ("p1", "a-312", 0), ("p1", "ctrl", 1), ("p2", "a-312", 1), ("p2", "ctrl", 1)]
    assert per_prompt[2].mean_sim == pytest.approx(0.4767)
    table = format_table([a, ctrl], 0.40).splitlines()
    assert table[0].split() == ["variant", "images", "faces", "no", "face", "<=", "0.4", "mean", "sim", "best", "sim",
                                "mean", "CLIP"]
    assert table[1].split() == ["a-312", "4", "3", "1", "1", "0.4300", "0.3952", "-"]
    assert table[2].split() == ["ctrl", "4", "2", "2", "0", "0.8087", "0.7520", "15.00"]
    assert ImageScore("ctrl", "p", 1, "f", None).caption == "ctrl : no face"
    assert ImageScore("a-312", "p", 1, "f", 0.41812).caption == "a-312 : 0.4181"


def test_real_faces_score_by_sim_score(settings, tmp_path):
    from studio.evaluate.scoring import face_scores, load_reference

    folder = tmp_path / "reference"
    folder.mkdir()
    astronaut().save(folder / "a.jpg", quality=95)
    reference = load_reference(settings, str(folder))
    assert reference.encodings.shape == (1, 128) and "1 faces" in reference.source
    itself, other, nothing = face_scores([astronaut(), hopper(), Image.new("RGB", (64, 64))], reference)
    assert itself < 0.1 and other > 0.6 and nothing is None


def test_reference_can_be_a_dataset_name(settings, tmp_path):
    from fixtures_faces import astronaut_variants
    from studio.data import PrepareRequest, prepare_dataset
    from studio.evaluate.scoring import load_reference

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, im in enumerate(astronaut_variants(2)):
        im.save(photos / f"{i}.jpg", quality=92)
    prepare_dataset(Studio.open(settings), PrepareRequest((photos,), "amari", "ohwx"))
    reference = load_reference(settings, "amari")
    assert reference.encodings.shape == (2, 128) and reference.source == "dataset amari (2 faces)"
    with pytest.raises(ValueError, match="`reference` 'nobody' not found"):
        load_reference(settings, "nobody")
    with pytest.raises(ValueError, match="not a dataset in .* nor a folder of photos"):
        load_reference(settings, "no/such/folder")


def test_clip_score_on_tiny_clip_follows_torchmetrics_and_the_prompt(session_studio):
    import torch

    from studio.evaluate.scoring import clip_scores

    clip = session_studio.store.load_clip("builtin:tiny-clip", device="cpu")
    assert clip.ref.meaningful is False
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    prompts = ["a photo of a man", "a red dog", "a blue cat on the face"]
    scores = clip_scores(clip, images, prompts, batch_size=2)
    assert all(0 <= s <= 100 for s in scores) and len(set(np.round(scores, 4))) == 3
    assert clip_scores(clip, images[:1], ["a red dog"])[0] != pytest.approx(scores[0], abs=0.01)
    # torchmetrics' definition, through CLIPModel's own forward: 100 * max(cos, 0), cos = logits / exp(logit_scale).
    with torch.no_grad():
        text = clip.tokenizer(prompts[:1], return_tensors="pt")
        pixels = clip.image_processor(images=images[:1], return_tensors="pt")["pixel_values"]
        out = clip.model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels)
        cosine = (out.logits_per_image / clip.model.logit_scale.exp()).item()
    assert scores[0] == pytest.approx(100 * max(cosine, 0.0), abs=1e-3)


def test_clip_ids_are_resolved_or_refused_with_where_to_put_weights(settings):
    from studio.models.clip import HUB_CLIP, TINY_CLIP, list_clip_models, resolve_clip
    from studio.models.store import ModelStore

    store = ModelStore(settings)
    assert list_clip_models(settings) == [TINY_CLIP, HUB_CLIP]
    assert "builtin:tiny-clip" not in store.list_models().base
    (settings.models_dir / "clip" / "half").mkdir(parents=True, exist_ok=True)
    with pytest.raises(ValueError, match="needs config.json and model.safetensors"):
        resolve_clip(settings, "half")
    with pytest.raises(ValueError, match="`clip_model` 'nope' not found"):
        resolve_clip(settings, "nope")
    where = r"could not load CLIP 'openai/clip-vit-base-patch16': downloads are off.*/clip/clip-vit-base-patch16 and"
    with pytest.raises(ValueError, match=where):
        store.load_clip(HUB_CLIP, device="cpu")  # downloads are off in the test settings


def test_charts_are_written_as_pngs(tmp_path):
    from studio.evaluate import ImageScore
    from studio.evaluate.charts import CLIP_PER_VARIANT, write_charts
    from studio.evaluate.scoring import summarise

    rows = [ImageScore(v, p, s, "f", None if (v == "ctrl" and s == 1) else 0.4 + 0.1 * s, 20.0 + s)
            for v in ("mine", "ctrl") for p in ("a photo of amari", "a side profile image of amari") for s in (1, 2)]
    names = write_charts(tmp_path, summarise(rows, ["mine", "ctrl"], None, 0.4),
                         summarise(rows, ["mine", "ctrl"], ["a photo of amari", "a side profile image of amari"], 0.4),
                         0.4, with_clip=True)
    assert len(names) == 4 and names[-1] == CLIP_PER_VARIANT
    for name in names:
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.width >= 600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary files left


@pytest.mark.weights
def test_real_clip_prefers_the_true_caption(session_studio):
    """Needs openai/clip-vit-base-patch16 in models/clip/ or the hub cache."""
    from studio.evaluate.scoring import clip_scores
    from studio.models.clip import HUB_CLIP

    clip = session_studio.store.load_clip(HUB_CLIP, device="cpu")
    true, false = clip_scores(clip, [astronaut(), astronaut()], ["a photo of an astronaut", "a photo of a dog"])
    assert 20 < true <= 100 and true > false + 5
