"""An evaluation end to end on builtin:tiny: base vs a LoRA file, 2 prompts x 2 seeds, the astronaut as reference."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut
from weights_files import make_lora

PROMPTS = ["a photo of a man", "a close up portrait of a woman"]
SEEDS = [335728730, 691007764]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, shared_models_dir):
    """One evaluation made once for the module: its studio, request, report and progress messages."""
    from studio.context import Studio
    from studio.evaluate import EvaluationRequest, evaluate, parse_variant
    from studio.settings import Settings

    root = tmp_path_factory.mktemp("evaluate")
    studio = Studio.open(Settings(root=root, models_dir=shared_models_dir, workspace_dir=root / "workspace",
                                  allow_downloads=False, default_model="builtin:tiny"))
    make_lora(studio, "builtin:tiny", root / "models_extra" / "mine.safetensors", seed=1)
    reference = root / "reference"
    reference.mkdir()
    astronaut().save(reference / "astronaut.png")
    request = EvaluationRequest(
        name="base-vs-lora", prompts=PROMPTS, seeds=SEEDS, reference=str(reference), steps=2, width=64, height=64,
        variants=[parse_variant("control=builtin:tiny"),
                  parse_variant(f"mine@0.8=builtin:tiny+lora:{root / 'models_extra' / 'mine.safetensors'}:0.8")],
    )
    messages = []
    report = evaluate(studio, request, progress=lambda f, m: messages.append((f, m)))
    return studio, request, report, messages


def test_every_variant_prompt_and_seed_is_generated_and_saved(evaluated):
    from studio.generate.parameters import read_png_parameters

    studio, request, report, _ = evaluated
    assert report.status == "complete"
    assert report.folder == studio.settings.workspace_dir / "evaluations" / "base-vs-lora"
    cells = [(r.variant, r.prompt, r.seed) for r in report.rows]
    assert cells == [(v, p, s) for v in ("control", "mine@0.8") for p in PROMPTS for s in SEEDS]
    for row in report.rows:
        path = report.folder / row.file
        with Image.open(path) as im:
            assert im.size == (64, 64)
            parameters = read_png_parameters(im)
        assert f"Seed: {row.seed}," in parameters and row.prompt in parameters
        assert ("<lora:mine:0.8>" in parameters) == (row.variant == "mine@0.8")


def test_tiny_model_pictures_have_no_face_and_are_counted(evaluated):
    _, _, report, _ = evaluated
    assert all(r.sim_score is None for r in report.rows)  # random weights draw noise, never a face
    summary = {s.variant: s for s in report.by_variant()}
    assert [(s.images, s.faces, s.no_face, s.mean_sim) for s in summary.values()] == [(4, 0, 4, None)] * 2
    per_prompt = report.by_prompt()
    assert [(s.prompt, s.variant, s.no_face) for s in per_prompt] == [
        (p, v, 2) for p in PROMPTS for v in ("control", "mine@0.8")]
    assert all(r.caption.endswith(" : no face") for r in report.rows)
    assert "No CLIP model chosen" in report.clip_note and not report.has_clip


def test_the_lora_changes_the_pictures_and_the_base_matches_plain_generation(evaluated):
    from studio.generate import GenerationRequest, generate

    studio, request, report, _ = evaluated
    pixels = {(r.variant, r.prompt, r.seed): np.asarray(Image.open(report.folder / r.file), dtype=np.int16)
              for r in report.rows}
    for p in PROMPTS:
        for s in SEEDS:
            assert np.abs(pixels[("control", p, s)] - pixels[("mine@0.8", p, s)]).mean() > 1.0
    plain = generate(studio, GenerationRequest(PROMPTS[0], model="builtin:tiny", seed=SEEDS[0], steps=2, width=64,
                                               height=64, save=False)).images[0].image
    assert np.array_equal(np.asarray(plain, dtype=np.int16), pixels[("control", PROMPTS[0], SEEDS[0])])


def test_same_request_gives_the_same_images(evaluated):
    from dataclasses import replace

    from studio.evaluate import evaluate

    studio, request, report, _ = evaluated
    again = evaluate(studio, replace(request, name="base-vs-lora-again"))
    for first, second in zip(report.rows, again.rows):
        assert (first.variant, first.prompt, first.seed) == (second.variant, second.prompt, second.seed)
        a = np.asarray(Image.open(report.folder / first.file))
        b = np.asarray(Image.open(again.folder / second.file))
        assert np.array_equal(a, b)


def test_report_files_are_written_and_read_back(evaluated):
    from studio.evaluate import list_evaluations, load_evaluation
    from studio.evaluate.report import CSV_COLUMNS

    studio, request, report, _ = evaluated
    names = sorted(p.name for p in report.folder.iterdir())
    assert names == ["grid.png", "images", "report.csv", "report.json"]  # no face anywhere: no empty sim charts
    assert "No generated picture has a face: no sim-score, so no likeness chart." in report.notes
    assert not [p for p in report.folder.parent.iterdir() if p.name.startswith(".")]  # no work folder left behind
    back = load_evaluation(studio.settings, "base-vs-lora")
    assert back.request == request and back.rows == report.rows and back.charts == report.charts
    d = json.loads((report.folder / "report.json").read_text())
    assert d["summary"][0]["no_face"] == 4 and len(d["per_prompt"]) == 4
    with open(report.folder / "report.csv", newline="") as f:
        lines = list(csv.reader(f))
    assert tuple(lines[0]) == CSV_COLUMNS and len(lines) == 9
    assert lines[1][:5] == ["control", PROMPTS[0], str(SEEDS[0]), "", "1"]
    listed = {e.name: e for e in list_evaluations(studio.settings)}
    assert listed["base-vs-lora"].variants == ["control", "mine@0.8"] and listed["base-vs-lora"].images == 8


def test_grid_has_a_row_per_prompt_and_seed_and_a_column_per_variant(evaluated):
    from studio.evaluate.grid import CAPTION_H, HEADER_H, LABEL_W, cell_width

    _, _, report, _ = evaluated
    with Image.open(report.folder / report.grid) as grid:
        w = cell_width(64)
        assert grid.size == (LABEL_W + 2 * w, HEADER_H + 4 * (w + CAPTION_H))
        # The first cell holds the first picture, scaled up.
        first = Image.open(report.folder / report.rows[0].file).convert("RGB").resize((w, w), Image.Resampling.NEAREST)
        cell = grid.convert("RGB").crop((LABEL_W, HEADER_H, LABEL_W + w, HEADER_H + w))
        assert np.array_equal(np.asarray(cell), np.asarray(first))


def test_progress_reaches_the_end_and_never_goes_back(evaluated):
    _, _, _, messages = evaluated
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("image 8/8" in m for _, m in messages)


def test_a_taken_name_and_bad_inputs_are_refused_before_generating(evaluated, tmp_path):
    from dataclasses import replace

    from studio.evaluate import evaluate, parse_variant

    studio, request, _, _ = evaluated
    with pytest.raises(ValueError, match="`name` 'base-vs-lora' is taken"):
        evaluate(studio, request)
    with pytest.raises(ValueError, match="lora file 'missing' not found"):
        evaluate(studio, replace(request, name="other",
                                 variants=[request.variants[0], parse_variant("x=+lora:missing")]))
    with pytest.raises(ValueError, match="`reference` '/no/such/folder' not found"):
        evaluate(studio, replace(request, name="other", reference="/no/such/folder"))
    assert not (studio.settings.workspace_dir / "evaluations" / "other").exists()


def test_a_reference_without_faces_or_none_gives_no_likeness_and_says_why(evaluated, tmp_path):
    from dataclasses import replace

    from studio.evaluate import evaluate

    studio, request, _, _ = evaluated
    empty = tmp_path / "no-faces"
    empty.mkdir()
    Image.new("RGB", (64, 64), (90, 90, 90)).save(empty / "grey.png")
    quick = dict(prompts=PROMPTS[:1], seeds=SEEDS[:1])
    report = evaluate(studio, replace(request, name="grey-reference", reference=str(empty), **quick))
    assert [r.likeness for r in report.rows] == [False, False] and not report.has_likeness
    assert report.notes[0].startswith(f"No likeness score: reference folder {empty} has no picture with a face")
    assert report.charts == [] and [r.caption for r in report.rows] == ["control", "mine@0.8"]
    with open(report.folder / "report.csv", newline="") as f:
        assert [line[3:5] for line in csv.reader(f)][1:] == [["", ""], ["", ""]]  # not scored, not "no face"
    none = evaluate(studio, replace(request, name="no-reference", reference="", **quick))
    assert none.reference == "" and none.notes == ["No reference chosen: no likeness (sim-score)."]


def test_cancel_keeps_the_finished_images_as_a_cancelled_evaluation(evaluated):
    from dataclasses import replace

    from studio.evaluate import EvaluationCancelled, evaluate, load_evaluation

    studio, request, _, _ = evaluated
    made = []

    def progress(fraction, message):
        made.append(message)

    with pytest.raises(EvaluationCancelled) as stopped:
        evaluate(studio, replace(request, name="stopped"), progress=progress,
                 should_stop=lambda: any("image 3/8" in m for m in made))
    partial = stopped.value.report
    assert partial.status == "cancelled" and len(partial.rows) == 2
    assert load_evaluation(studio.settings, "stopped").rows == partial.rows
    assert (partial.folder / "grid.png").is_file()


def test_a_real_face_scores_near_zero_against_itself(evaluated, monkeypatch):
    """A variant whose 'generated' picture is the astronaut: the real sim-score path, end to end."""
    from dataclasses import replace

    import studio.evaluate.run as run
    from studio.evaluate import evaluate

    studio, request, _, _ = evaluated
    real_generate = run.generate

    def generate(studio_, generation, **kwargs):
        result = real_generate(studio_, generation, **kwargs)
        if generation.loras:  # the LoRA variant "draws" the reference face
            result.images[0].image = astronaut()
        return result

    monkeypatch.setattr(run, "generate", generate)
    report = evaluate(studio, replace(request, name="with-a-face", prompts=PROMPTS[:1], seeds=SEEDS[:1]))
    control, face = report.rows
    assert control.sim_score is None and face.sim_score is not None and face.sim_score < 0.05
    summary = {s.variant: s for s in report.by_variant()}
    assert summary["mine@0.8"].alike == 1 and summary["mine@0.8"].mean_sim == pytest.approx(face.sim_score)
    assert summary["control"].no_face == 1 and face.caption == f"mine@0.8 : {face.sim_score:.4f}"


def _pocket_lora(studio, path, trigger: str, dataset: str):
    """A random LoRA for builtin:pocket that says, as a studio-trained one does, which trigger and dataset it learnt."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    make_lora(studio, "builtin:pocket", path, seed=3)
    with safe_open(str(path), framework="pt") as f:
        meta, state = dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(path), metadata={**meta, "studio.trigger": trigger, "studio.dataset": dataset})
    return path


def test_pocket_evaluation_scores_what_was_drawn(tmp_path, shared_models_dir):
    """builtin:pocket with and without a LoRA whose trigger was taught on the star dataset: no faces to compare, so
    no likeness; the checker labels each picture, and 'zq' in a prompt asks for a star."""
    from studio.context import Studio
    from studio.evaluate import EvaluationRequest, evaluate, parse_variant
    from studio.evaluate.charts import CHECKER_AS_ASKED, CHECKER_DRAWN
    from studio.generate import GenerationRequest, generate
    from studio.generate.parameters import read_png_parameters
    from studio.pocket import CHECKER_DIR
    from studio.pocket.checker import PocketChecker
    from studio.pocket.concept import write_concept_dataset
    from studio.settings import Settings

    studio = Studio.open(Settings(root=tmp_path, models_dir=shared_models_dir, workspace_dir=tmp_path / "workspace",
                                  allow_downloads=False, default_model="builtin:tiny"))
    write_concept_dataset(studio.settings.datasets_dir / "zq", trigger="zq")
    lora = _pocket_lora(studio, tmp_path / "extra" / "zq.safetensors", "zq", "zq")
    prompts = ["a red circle on a white background", "a red zq on a white background"]
    request = EvaluationRequest(name="pocket", prompts=prompts, seeds=[0, 1], reference="zq", steps=12,
                                variants=[parse_variant("control=builtin:pocket"),
                                          parse_variant(f"zq=builtin:pocket+lora:{lora}:0.5")])
    report = evaluate(studio, request)

    # 1. No likeness (the reference holds stars, no faces), said in the notes; CFG is pocket's 4
    assert not report.has_likeness and report.reference == "dataset zq (no faces)"
    assert report.notes[0].startswith("No likeness score: reference dataset zq has no picture with a face")
    assert "CFG 4: the base model's own (no CFG scale was given)." in report.notes and report.request.cfg == 4.0
    assert ("'zq' counts as star: the checker sees a star in 8 of the 8 pictures of dataset 'zq', which LoRA "
            f"{lora} was trained on.") in report.notes

    # 2. Each picture's verdict is the checker's on the saved file, against what the prompt asks
    assert report.asked == {prompts[0]: "red circle", prompts[1]: "red star"}
    with studio.cache.borrow("checker", str(CHECKER_DIR)) as classifier:
        checker = PocketChecker(classifier)
        for row in report.rows:
            with Image.open(report.folder / row.file) as im:
                verdict = checker.verdict(im.convert("RGB"), row.prompt.replace("zq", "star"))
                assert "CFG scale: 4, Seed: " in read_png_parameters(im)
            assert (row.drawn, row.drawn_color, row.label_ok, row.color_ok) == (
                verdict.label, verdict.color, verdict.label_ok, verdict.color_ok)
    control_circles = [r for r in report.rows if r.variant == "control" and r.prompt == prompts[0]]
    assert [(r.drawn, r.drawn_color, r.as_asked) for r in control_circles] == [("circle", "red", True)] * 2
    summary = {s.variant: s for s in report.by_variant()}
    assert summary["control"].asked == 4 and sum(summary["control"].drawn.values()) == 4

    # 3. Only the charts with data: the checker's two; the table and CSV carry the verdicts
    assert report.charts == [CHECKER_AS_ASKED, CHECKER_DRAWN]
    with open(report.folder / "report.csv", newline="") as f:
        first = next(row for row in csv.DictReader(f))
    assert (first["drawn"], first["asked_label"], first["label_ok"], first["no_face"]) == ("circle", "circle", "1", "")

    # 4. Seeds 0 and 1 were made in one batch: the same pictures as Generate's (a pixel level for batched rounding)
    alone = generate(studio, GenerationRequest(prompts[0], model="builtin:pocket", seed=1, steps=12, cfg=4.0,
                                               save=False)).images[0].image
    made = Image.open(report.folder / report.rows[1].file)
    assert report.rows[1].seed == 1
    assert np.abs(np.asarray(made, dtype=np.int16) - np.asarray(alone, dtype=np.int16)).max() <= 3
