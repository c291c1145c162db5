"""Tests for builtin:pocket: procedural scenes, the shipped weights, prompt following, LoRA learning and face to dog."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from studio.pocket import POCKET_DIR, load_pocket_pipeline
from studio.pocket.scenes import SHAPE_COLORS, SHAPES, human_face_scene, make_scenes, shape_scene

CHECKER_DIR = POCKET_DIR / "checker"


@pytest.fixture(scope="module")
def pipe():
    import torch

    torch.manual_seed(0)
    return load_pocket_pipeline()


@pytest.fixture(scope="module")
def checker():
    from studio.pocket.checker import PocketChecker

    return PocketChecker(CHECKER_DIR)


def test_scenes_are_seeded_and_captioned():
    a, b = make_scenes(12, seed=5), make_scenes(12, seed=5)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b))
    assert [s.caption for s in make_scenes(12, seed=6)] != [s.caption for s in a]
    for scene in make_scenes(40, seed=1):
        assert scene.image.size == (64, 64)
        if scene.kind == "shape":
            assert f"a {scene.color} {scene.label}" in scene.caption
        else:
            assert "cartoon" in scene.caption and (("dog" in scene.caption) == (scene.kind == "dog"))
    with pytest.raises(ValueError, match="color"):
        shape_scene(random.Random(0), color="teal")
    with pytest.raises(ValueError, match="count"):
        make_scenes(-1)


def test_pocket_folder_is_small_safetensors_and_loads(pipe):
    files = [p for p in POCKET_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 1024**2
    assert not [p for p in files if p.suffix in (".bin", ".ckpt", ".pt", ".pth")]
    assert (POCKET_DIR / "model_index.json").is_file()
    assert pipe.safety_checker is None and pipe.config.requires_safety_checker is False
    assert pipe.vae_scale_factor == 4
    tokenizer = pipe.tokenizer
    # The shipped tokenizer is the one the text encoder was trained with (written before the writer made every
    # listed word a single token, so some words are two): it must match the encoder and fit every caption.
    assert len(tokenizer) == pipe.text_encoder.config.vocab_size
    for scene in make_scenes(40, seed=3):
        assert len(tokenizer(scene.caption).input_ids) <= 77, scene.caption
    assert tokenizer.bos_token_id == len(tokenizer) - 2 and tokenizer.eos_token_id == len(tokenizer) - 1


def test_checker_reads_drawings(checker):
    from studio.pocket.checker import foreground_color, prompt_targets

    rng = random.Random(3)
    for shape in SHAPES + ("star",):
        for color in SHAPE_COLORS:
            scene = shape_scene(rng, shape=shape, color=color)
            verdict = checker.verdict(scene.image, f"a {color} {shape} on a white background")
            assert verdict.ok, (shape, color, verdict)
    assert checker.labels([human_face_scene(rng).image])[0][0] == "human"
    assert foreground_color(shape_scene(rng, shape="circle", color="blue").image) == "blue"
    assert prompt_targets("a purple triangle on a black background") == ("purple", "triangle")
    assert prompt_targets("a cartoon dog face with brown fur") == (None, "dog")


@pytest.mark.parametrize("prompt", ["a red circle on a white background", "a blue square on a black background",
                                    "a yellow triangle on a gray background"])
def test_pocket_follows_colour_and_shape_prompts(pipe, checker, prompt):
    from studio.pocket.evaluate import Sampling, score_prompt

    score, _ = score_prompt(pipe, checker, prompt, list(range(10)), Sampling(steps=15))
    assert score.both_right >= 0.8, score


def test_face_turns_into_dog_with_img2img(pipe, checker):
    from studio.pocket.evaluate import face_to_dog

    faces = [human_face_scene(random.Random(100 + i)).image for i in range(6)]
    assert [label for label, _ in checker.labels(faces)] == ["human"] * 6
    dogs = [face_to_dog(pipe, face, [i])[0] for i, face in enumerate(faces)]
    assert sum(label == "dog" for label, _ in checker.labels(dogs)) >= 5


@pytest.mark.slow
def test_lora_teaches_a_new_shape_by_trigger_word(checker):
    from studio.pocket.evaluate import generate
    from studio.pocket.lora import ConceptLora, concept_images, train_concept_lora

    pipe = load_pocket_pipeline()  # its own copy: the adapter stays in this UNet
    prompt, seeds = "a red zq on a white background", list(range(10))
    before = sum(label == "star" for label, _ in checker.labels(generate(pipe, prompt, seeds)))
    train_concept_lora(pipe, concept_images("zq", "star", count=8), ConceptLora(steps=300))
    after = sum(label == "star" for label, _ in checker.labels(generate(pipe, prompt, seeds)))
    assert before <= 2 and after >= 7, (before, after)
