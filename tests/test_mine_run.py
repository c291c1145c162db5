"""Mining in this process on real photos (skimage's astronaut, matplotlib's Grace Hopper): one identity from a folder
of two people, near misses kept apart, a drifting seed dropped, stop and continue (and a crash) against one
uninterrupted run, the generator path on builtin:tiny, and the group turned into a dataset the Train tab reads."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut, astronaut_to_hopper, astronaut_variants, hopper_variants
from studio.mine import GroupDataset, MiningRequest, group_to_dataset, mine
from studio.mine import disk
from studio.mine.disk import mining_folder, read_lines
from studio.progress import Cancelled


@pytest.fixture(scope="module")
def mining_studio(tmp_path_factory, shared_models_dir):
    """One workspace for the module, so its face cache holds each photo's faces once."""
    from studio.context import Studio
    from studio.settings import Settings

    root = tmp_path_factory.mktemp("mining")
    return Studio.open(Settings(root=root, models_dir=shared_models_dir, workspace_dir=root / "workspace",
                                allow_downloads=False, default_model="builtin:tiny"))


def blurred_astronaut() -> Image.Image:
    """The astronaut seen at 96 px and blown up again: the same person, but dlib puts her ~0.47 from herself."""
    return astronaut().resize((96, 96), Image.Resampling.LANCZOS).resize((512, 512), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Two people in one folder, in name order: five astronauts, three Grace Hoppers, a blurred astronaut (a near
    miss), a photo without a face and a truncated file."""
    from skimage import data

    folder = tmp_path_factory.mktemp("mixed")
    astronauts, hoppers = iter(astronaut_variants(5)), iter(hopper_variants(3))
    for name in ("00-astro", "01-hopper", "02-astro", "03-coffee", "04-astro-blurred", "05-hopper", "06-astro",
                 "07-broken", "08-hopper", "09-astro", "10-astro"):
        path = folder / f"{name}.jpg"
        if "coffee" in name:
            Image.fromarray(data.coffee()).save(path, quality=90)
        elif "blurred" in name:
            blurred_astronaut().save(path, quality=90)
        elif "broken" in name:
            astronaut().save(path, quality=90)
            path.write_bytes(path.read_bytes()[:3000])
        else:
            next(astronauts if "astro" in name else hoppers).save(path, quality=90)
    return folder


@pytest.fixture(scope="module")
def morphs(tmp_path_factory):
    """The astronaut, then morphs towards Grace Hopper (alpha 0.3, 0.35 mirrored, 0.5): a group that walks away
    from its seed."""
    folder = tmp_path_factory.mktemp("morphs")
    for i, (alpha, flip, crop) in enumerate([(0.0, False, 0), (0.3, False, 0), (0.35, True, 20), (0.5, False, 0)]):
        astronaut_to_hopper(alpha, flip, crop).save(folder / f"{i:02d}-morph-{alpha}.png")
    return folder


def report_of(studio, name: str) -> dict:
    return json.loads((mining_folder(studio.settings, name) / "report.json").read_text())


def test_a_folder_of_two_people_ends_with_one_identity_and_near_misses_kept_apart(mining_studio, mixed):
    studio = mining_studio
    result = mine(studio, MiningRequest("two-people", candidates=mixed), mining_folder(studio.settings, "two-people"))
    assert result.ended == "every picture in the folder was looked at"
    report = report_of(studio, "two-people")
    folder = mining_folder(studio.settings, "two-people")
    # 1. One identity: every astronaut and nobody else; the first face seeded the group
    assert [m["source"] for m in report["members"]] == ["00-astro.jpg", "02-astro.jpg", "06-astro.jpg", "09-astro.jpg",
                                                        "10-astro.jpg"]
    assert report["members"][0]["distance"] is None and all(m["distance"] <= 0.4 for m in report["members"][1:])
    assert report["group_mean"] < 0.3
    # 2. The blurred astronaut is a near miss, kept apart with its picture; Grace Hopper is rejected
    (near,) = report["near_misses"]
    assert near["source"] == "04-astro-blurred.jpg" and 0.4 < near["distance"] <= 0.6
    assert (folder / near["file"]).is_file()
    counts = report["counts"]
    assert (counts["seed"], counts["admitted"], counts["near_miss"], counts["rejected"]) == (1, 4, 1, 3)
    assert (counts["no_face"], counts["refused"], counts["candidates"], counts["faces"]) == (1, 1, 11, 9)
    decisions = {e["source"]: e for e in read_lines(folder / "events.jsonl") if e["type"] == "candidate"}
    assert all(decisions[f"{n}-hopper.jpg"]["decision"] == "rejected" for n in ("01", "05", "08"))
    assert decisions["07-broken.jpg"]["decision"] == "refused" and "truncated" in decisions["07-broken.jpg"]["reason"]
    assert decisions["03-coffee.jpg"]["decision"] == "no face"
    # 3. Kept: the members' and the near miss's pictures, as they were (the face cache knows them), and face crops
    kept = sorted(p.name for p in (folder / "images").iterdir())
    assert len(kept) == 6 and all((folder / "faces" / (name.rsplit(".", 1)[0] + ".jpg")).is_file() for name in kept)
    assert (folder / report["members"][1]["file"]).read_bytes() == (mixed / "02-astro.jpg").read_bytes()
    assert len(read_lines(folder / "encodings.jsonl")) == 9  # one per face found

    # 4. To a dataset: the Dataset tab's format, identity check done, no face detected again; the Train tab reads it
    from studio.data import list_datasets, load_dataset
    from studio.data.check import IDENTITY_FLAGS
    from studio.data.library import find_dataset
    from studio.train.data import load_items

    prepared = group_to_dataset(studio, GroupDataset("two-people", "astro-set", "ohwx"))
    assert prepared.faces_detected == 0 and prepared.faces_cached == 5
    dataset = load_dataset(studio.settings, "astro-set")
    assert [im.source for im in dataset.images] == [m["file"].split("/")[1] for m in report["members"]]
    assert all(im.caption.startswith("ohwx person") for im in dataset.images)
    assert not [f for im in dataset.images for f in im.flags if f.startswith(IDENTITY_FLAGS)]  # one person
    assert dataset.settings["tolerance"] == 0.4 and dataset.images[0].to_set is not None
    assert [d.name for d in list_datasets(studio.settings)] == ["astro-set"]
    assert len(load_items(find_dataset(studio.settings, "astro-set"), "ohwx")) == 5
    with pytest.raises(ValueError, match="`trigger` must be one word"):
        group_to_dataset(studio, GroupDataset("two-people", "x", "two words"))


def test_a_drifting_seed_is_dropped_when_the_rules_say_so(mining_studio, morphs):
    studio = mining_studio
    mine(studio, MiningRequest("drift", candidates=morphs), mining_folder(studio.settings, "drift"))
    report = report_of(studio, "drift")
    assert [m["source"] for m in report["members"]] == ["01-morph-0.3.png", "02-morph-0.35.png", "03-morph-0.5.png"]
    (dropped,) = report["dropped"]
    assert dropped["source"] == "00-morph-0.0.png" and dropped["at"] == 3 and 0.4 < dropped["mean"] < 0.5
    assert dropped["reason"] == (f"mean distance {dropped['mean']:.4f} to the other 3 members exceeds 0.4 after "
                                 "candidate 3 was admitted")
    assert report["history"][-1] == [3, 3, pytest.approx(report["group_mean"], abs=1e-4)]
    assert (mining_folder(studio.settings, "drift") / "images" / "000000-00-morph-0_0.png").is_file()  # still kept
    # pinned, the seed stays (and its faces came from the cache: nothing was encoded again)
    mine(studio, MiningRequest("drift-pinned", candidates=morphs, pin_seed=True),
         mining_folder(studio.settings, "drift-pinned"))
    pinned = report_of(studio, "drift-pinned")
    assert len(pinned["members"]) == 4 and pinned["dropped"] == []
    assert pinned["counts"]["encoded"] == 0 and pinned["counts"]["cached"] == 4


def test_a_seed_face_the_user_gives_founds_the_group(mining_studio, mixed, tmp_path):
    studio = mining_studio
    face = tmp_path / "her.jpg"
    hopper_variants(4)[3].save(face, quality=90)  # a fourth Grace Hopper, not in the folder
    request = MiningRequest("from-seed", candidates=mixed, seed_face=str(face))
    mine(studio, request, mining_folder(studio.settings, "from-seed"))
    report = report_of(studio, "from-seed")
    assert [m["source"] for m in report["members"]] == ["seed face her.jpg", "01-hopper.jpg", "05-hopper.jpg",
                                                        "08-hopper.jpg"]
    assert report["members"][0]["file"] == "images/seed-face.jpg" and report["counts"]["seed"] == 1
    assert report["counts"]["rejected"] == 6 and report["counts"]["candidates"] == 11  # the astronauts, blurred too


def test_stop_crash_and_continue_give_the_same_group_as_one_uninterrupted_run(mining_studio, mixed, morphs,
                                                                              tmp_path, monkeypatch):
    studio = mining_studio
    both = tmp_path / "both"  # the morphs (a drop), then the two people
    both.mkdir()
    for prefix, source in [("a", p) for p in morphs.iterdir()] + [("b", p) for p in mixed.iterdir()]:
        (both / f"{prefix}{source.name}").write_bytes(source.read_bytes())
    whole_folder, parts_folder = (mining_folder(studio.settings, n) for n in ("whole", "parts"))
    mine(studio, MiningRequest("whole", candidates=both), whole_folder)

    # 1. Stop before the sixth candidate
    calls = iter(range(1000))
    with pytest.raises(Cancelled):
        mine(studio, MiningRequest("parts", candidates=both), parts_folder, should_stop=lambda: next(calls) >= 5)
    stopped = report_of(studio, "parts")
    assert stopped["counts"]["candidates"] == 5 and stopped["ended"] == "cancelled"
    with pytest.raises(ValueError, match="holds mining job 'parts' with other candidates or rules"):
        mine(studio, MiningRequest("parts", candidates=both, tolerance=0.45), parts_folder)

    # 2. A crash in the middle of the ninth: its picture written and its face admitted in memory, nothing recorded;
    #    and a line half written when the process died
    original = disk.write_face

    def power_cut(folder, picture, image, face):
        if picture.startswith("images/000008"):
            raise OSError("power cut")
        original(folder, picture, image, face)

    monkeypatch.setattr(disk, "write_face", power_cut)
    with pytest.raises(OSError, match="power cut"):
        mine(studio, MiningRequest("parts", candidates=both), parts_folder)
    monkeypatch.setattr(disk, "write_face", original)
    with open(parts_folder / "events.jsonl", "a") as f:
        f.write('{"type": "candidate", "step": 99, "ind')
    assert json.loads((parts_folder / "state.json").read_text())["next"] == 8

    # 3. Continue to the end: the same decisions, the same group to the last bit, nothing encoded twice
    mine(studio, MiningRequest("parts", candidates=both), parts_folder)
    whole, parts = report_of(studio, "whole"), report_of(studio, "parts")
    for key in ("members", "dropped", "near_misses", "history", "group_mean"):
        assert parts[key] == whole[key], key
    assert whole["dropped"] and whole["near_misses"]  # the case is not trivial
    counts = {k: v for k, v in parts["counts"].items() if k not in ("encoded", "cached")}
    assert counts == {k: v for k, v in whole["counts"].items() if k not in ("encoded", "cached")}
    assert parts["counts"]["encoded"] == 0
    decided = [[(e["index"], e["source"], e["decision"], e.get("distance")) for e in read_lines(f / "events.jsonl")
                if e["type"] == "candidate"] for f in (whole_folder, parts_folder)]
    assert decided[0] == decided[1] and len(decided[0]) == 15
    state = [json.loads((f / "state.json").read_text())["group"] for f in (whole_folder, parts_folder)]
    assert state[0] == state[1]


def test_the_generator_path_counts_faces_not_found_and_records_seeds(mining_studio):
    from studio.generate import generate

    studio = mining_studio
    # 1. An upscaler that is not in models/upscale/ is refused before any candidate is drawn
    request = MiningRequest("tiny", prompt="a photo of a face", model="builtin:tiny", steps=2, seed_start=100,
                            batch_size=2, max_candidates=3, upscaler="4x-esrgan")
    folder = mining_folder(studio.settings, "tiny")
    with pytest.raises(ValueError, match="upscaler '4x-esrgan' not found: put its .safetensors file in"):
        mine(studio, request, folder)
    assert not (folder / "events.jsonl").exists() or not read_lines(folder / "events.jsonl")
    # builtin:tiny draws no faces: each candidate (upscaled by Lanczos) is counted, none crashes the job
    request = replace(request, upscaler="lanczos")
    assert mine(studio, request, folder).ended == "candidate budget spent: 3 candidates"
    events = read_lines(folder / "events.jsonl")
    assert [(e["index"], e["seed"], e["decision"]) for e in events if e["type"] == "candidate"] == [
        (0, 100, "no face"), (1, 101, "no face"), (2, 102, "no face")]
    report = report_of(studio, "tiny")
    assert report["counts"]["no_face"] == 3 and report["members"] == [] and report["seconds_per_stage"]["generate"] > 0
    # continuing draws batch [102, 103] again and decides 103 only
    mine(studio, request.continued(max_candidates=4), folder)
    assert [e["seed"] for e in read_lines(folder / "events.jsonl") if e["type"] == "candidate"] == [100, 101, 102, 103]

    # 2. Faces: an "upscaler" that turns candidates 1 and 3 into photos; members are recorded with their seeds, and
    #    each seed regenerates the very picture the upscaler was given
    given = {}
    photos = iter(astronaut_variants(2))

    def upscale(image):
        seed = 200 + len(given)
        given[seed] = np.asarray(image)
        return next(photos) if seed in (201, 203) else image

    request = MiningRequest("tiny-faces", prompt="a photo of a face", model="builtin:tiny", steps=2, seed_start=200,
                            max_candidates=4)
    folder = mining_folder(studio.settings, "tiny-faces")
    mine(studio, request, folder, upscale=upscale)
    report = report_of(studio, "tiny-faces")
    assert [(m["seed"], m["source"]) for m in report["members"]] == [(201, "seed 201"), (203, "seed 203")]
    assert report["counts"]["no_face"] == 2
    assert all("upscale" in e["seconds"] for e in read_lines(folder / "events.jsonl") if e["type"] == "candidate")
    with Image.open(folder / report["members"][0]["file"]) as kept:
        assert "Seed: 201," in kept.info["parameters"]
    again = generate(studio, request.generation(report["members"][1]["seed"])).images[0].image
    assert np.array_equal(np.asarray(again), given[203])


@pytest.mark.parametrize("knobs, message", [
    (dict(prompt="a face", candidates="/tmp"), "give either `prompt`"),
    (dict(), "not neither"),
    (dict(prompt="a face", tolerance=0.7), "`near_miss` must be at least the tolerance (0.7)"),
    (dict(prompt="a face", target=0), "`target` must be between 1 and 100000"),
    (dict(prompt="a face", steps=0), "`steps` must be between 1 and 150"),
    (dict(prompt="a face", max_minutes=-1), "`max_minutes` must be 0 (no limit) or more"),
    (dict(name="../x", prompt="a face"), "`name` must be 1-64 letters"),
])
def test_bad_requests_name_the_argument(knobs, message):
    with pytest.raises(ValueError) as raised:
        MiningRequest(**{"name": "job", **knobs})
    assert message in str(raised.value)
    with pytest.raises(ValueError, match="only target, max_candidates, max_minutes can change, not prompt"):
        MiningRequest("job", prompt="a face").continued(prompt="another")
