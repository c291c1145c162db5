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
    assert table[0].split() == ["variant", "images", "faces", "found", "no", "face", "sim", "<=", "0.4", "mean",
                                "sim-score", "best", "sim-score", "mean", "CLIP", "score"]
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
                         0.4, clip=True)
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


def _lora_with_facts(folder, name: str, **facts):
    """A LoRA-named safetensors file carrying the studio.* metadata a studio-trained LoRA has (no real weights)."""
    import torch
    from safetensors.torch import save_file

    path = folder / "lora" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"unused": torch.zeros(1)}, str(path), metadata={f"studio.{k}": v for k, v in facts.items()})
    return path


def test_no_reference_or_one_without_faces_means_no_likeness_not_an_error(settings, tmp_path):
    from studio.evaluate.scoring import NO_REFERENCE, load_reference
    from studio.pocket.concept import write_concept_dataset

    none = load_reference(settings, "")
    assert not none.scores and none.source == "" and none.note == NO_REFERENCE
    write_concept_dataset(settings.datasets_dir / "zq", trigger="zq")  # 8 stars: a plain caption folder
    stars = load_reference(settings, "zq")
    assert not stars.scores and stars.source == "dataset zq (no faces)"
    assert stars.note.startswith("No likeness score: reference dataset zq has no picture with a face (8 looked at)")
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.new("RGB", (64, 64), (90, 90, 90)).save(grey / "grey.png")
    assert "(1 looked at)" in load_reference(settings, str(grey)).note
    with pytest.raises(ValueError, match="`reference` 'nobody' not found"):  # a typo is still an error
        load_reference(settings, "nobody")


def test_checker_rows_are_summarised_tabled_and_captioned():
    from studio.evaluate import ImageScore, format_table
    from studio.evaluate.scoring import summarise

    def row(variant, seed, drawn, color, asked=("red", "star")):
        return ImageScore(variant, "a red zq", seed, "f", None, likeness=False, drawn=drawn, drawn_color=color,
                          asked_color=asked[0], asked_label=asked[1], label_ok=drawn == asked[1],
                          color_ok=color == asked[0])

    rows = [row("base", 0, "square", "red"), row("base", 1, "square", "red"), row("zq", 0, "star", "red"),
            row("zq", 1, "star", "blue")]
    base, zq = summarise(rows, ["base", "zq"], None, 0.4)
    assert (base.asked, base.label_right, base.color_right, base.as_asked, base.drawn) == (2, 0, 2, 0, {"square": 2})
    assert (zq.label_right, zq.color_asked, zq.color_right, zq.as_asked, zq.drawn) == (2, 2, 1, 1, {"star": 2})
    assert (zq.no_face, zq.faces) == (0, 0)  # not scored for likeness: not "no face"
    table = format_table([base, zq], 0.4, likeness=False, clip=False, checker=True).splitlines()
    assert table[0].split() == ["variant", "images", "drawn", "as", "asked", "shape", "right", "colour", "right",
                                "drawn", "(pocket", "checker)"]
    assert table[1].split() == ["base", "2", "0/2", "0/2", "2/2", "square", "2"]
    assert table[2].split() == ["zq", "2", "1/2", "2/2", "1/2", "star", "2"]
    assert rows[3].caption == "zq : blue star" and rows[3].as_asked is False and rows[2].as_asked is True
    unasked = ImageScore("zq", "a zq", 0, "f", None, likeness=False, drawn="star", drawn_color=None)
    assert unasked.as_asked is None and unasked.caption == "zq : star"
    assert ImageScore("zq", "p", 0, "f", None, 31.25, likeness=False).caption == "zq : CLIP 31.2"


def test_what_a_prompt_asks_the_checker_for():
    from studio.pocket.checker import PocketChecker

    asked_for = PocketChecker(classifier=None).asked_for  # reading prompts needs no classifier

    assert asked_for("a red zq on a white background", {"zq": "star"}) == ("red", "star")
    assert asked_for("a blue ZQ on a black background", {"zq": "star"}) == ("blue", "star")
    assert asked_for("a red circle on a white background", {"zq": "star"}) == ("red", "circle")
    assert asked_for("a cartoon dog face with brown fur", {}) == (None, "dog")
    assert asked_for("a red zq on a white background", {}) == (None, None)  # the trigger's meaning is not known
    assert asked_for("a red zq", {"zq": "human"}) == (None, "human")  # a face has no shape colour


def test_a_trigger_word_means_what_the_checker_sees_in_its_training_pictures(session_studio, tmp_path):
    from studio.evaluate.checking import taught_labels
    from studio.pocket import CHECKER_DIR
    from studio.pocket.checker import PocketChecker
    from studio.pocket.concept import write_concept_dataset

    write_concept_dataset(session_studio.settings.datasets_dir / "stars", trigger="zq", shape="star")
    write_concept_dataset(session_studio.settings.datasets_dir / "hearts", trigger="vlx", shape="heart", count=5)
    with session_studio.cache.borrow("checker", str(CHECKER_DIR)) as classifier:
        taught = taught_labels(session_studio, PocketChecker(classifier),
                               [("zq", "zq", "stars"), ("zq-e002", "zq", "stars"), ("vlx", "vlx", "hearts"),
                                ("gone", "qwe", "deleted-since")])
    assert [(t.trigger, t.label, t.seen, t.pictures) for t in taught] == [
        ("zq", "star", 8, 8), ("vlx", "heart", 5, 5), ("qwe", None, 0, 0)]
    assert taught[0].note == ("'zq' counts as star: the checker sees a star in 8 of the 8 pictures of dataset "
                              "'stars', which LoRA zq was trained on.")
    assert "its dataset 'deleted-since' is not on disk" in taught[2].note


def test_the_pocket_checker_is_found_through_the_scorers(session_studio):
    """Training and evaluation find builtin:pocket's checker by asking studio.scorers (the pocket package registers
    it); other bases ship none."""
    from studio.pocket import CHECKER_DIR
    from studio.scorers import find_checker

    found = find_checker(session_studio.store.resolve("builtin:pocket"))
    assert found is not None and found.kind.name == "pocket" and found.folder == CHECKER_DIR
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(picture).ellipse((12, 12, 52, 52), fill=(220, 30, 30))
    checker = found.load(session_studio.store)
    assert "star" in checker.labels_known and checker.color(picture) == "red"
    assert checker.labels([picture])[0][0] == "circle"
    assert find_checker(session_studio.store.resolve("builtin:tiny")) is None


def test_defaults_follow_the_model_and_the_loras(settings):
    from studio.evaluate import STUDY_PROMPTS, STUDY_SEEDS, parse_variant
    from studio.evaluate.defaults import defaults_for

    studio = Studio.open(settings)
    lora_dir = settings.root / "models_extra"
    _lora_with_facts(lora_dir, "zq", trigger="zq", dataset="zq", base_model="builtin:pocket")
    (settings.datasets_dir / "amari").mkdir(parents=True)
    astronaut().save(settings.datasets_dir / "amari" / "a.png")
    _lora_with_facts(lora_dir, "ohwx", trigger="ohwx", dataset="amari", base_model="builtin:tiny")
    zq, ohwx = str(lora_dir / "lora" / "zq.safetensors"), str(lora_dir / "lora" / "ohwx.safetensors")

    pocket = defaults_for(studio, [parse_variant("control=builtin:pocket"),
                                   parse_variant(f"zq=builtin:pocket+lora:{zq}:1")])
    assert pocket.prompts == ["a red circle on a white background", "a red zq on a white background",
                              "a blue zq on a black background"]
    assert (pocket.seeds, pocket.cfg, pocket.reference) == ([0, 1, 2, 3], 4.0, "")
    assert "trigger word 'zq'" in pocket.why
    plain = defaults_for(studio, [parse_variant("a=builtin:pocket"), parse_variant("b=builtin:pocket")])
    assert plain.prompts[-1] == "a cartoon dog face with brown fur" and plain.seeds == [0, 1, 2, 3]

    real = defaults_for(studio, [parse_variant("control=builtin:tiny"), parse_variant(f"o=+lora:{ohwx}:1")])
    assert real.prompts == [p.replace("amari", "ohwx") for p in STUDY_PROMPTS] and real.seeds == list(STUDY_SEEDS)
    assert (real.cfg, real.reference) == (None, "amari")  # the LoRA's dataset, listed: likeness against it
    assert defaults_for(studio, [parse_variant("a=no/such-model"), parse_variant("b=")]).prompts == list(STUDY_PROMPTS)


def test_default_variants_are_the_base_and_the_newest_loras_for_it(tmp_path):
    import os

    from studio.evaluate import parse_variant
    from studio.evaluate.defaults import default_variants
    from studio.settings import Settings

    settings = Settings(root=tmp_path, models_dir=tmp_path / "models", workspace_dir=tmp_path / "workspace",
                        allow_downloads=False, default_model="builtin:tiny")  # a models/ of its own: only these LoRAs
    studio = Studio.open(settings)
    assert default_variants(studio) == [parse_variant("control=")]
    for age, (name, base) in enumerate([("zq", "builtin:pocket"), ("zq-e100", "builtin:pocket"),
                                        ("mine", "builtin:tiny"), ("old-zq", "builtin:pocket")]):
        path = _lora_with_facts(settings.models_dir, name, trigger="zq", dataset="zq", base_model=base)
        os.utime(path, (1e9 - age * 100, 1e9 - age * 100))  # zq newest
    assert default_variants(studio) == [parse_variant("control=builtin:pocket"),
                                        parse_variant("zq=builtin:pocket+lora:zq:1"),
                                        parse_variant("zq-e100=builtin:pocket+lora:zq-e100:1")]


def test_clip_default_is_a_real_clip_on_disk_never_the_random_one(tmp_path):
    from studio.models.clip import default_clip, real_clip_models
    from studio.settings import Settings

    settings = Settings(root=tmp_path, models_dir=tmp_path / "models", allow_downloads=False)
    assert default_clip(settings) == "" and real_clip_models(settings) == []
    folder = settings.models_dir / "clip" / "my-clip"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert real_clip_models(settings) == []  # no weights: not a CLIP to score with
    (folder / "model.safetensors").write_bytes(b"")
    assert default_clip(settings) == "my-clip"
