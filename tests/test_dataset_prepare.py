"""prepare_dataset end to end on real face photos: crops, identity flags, blur, captions, disk format, cache, library."""

import csv
import dataclasses
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut, astronaut_variants, face_photos, hopper, two_faces  # noqa: F401 (fixture)
from studio.data import (CaptionEdit, CheckRequest, PrepareRequest, check_dataset, delete_dataset, drop_flagged,
                         edit_captions, export_dataset, list_datasets, load_dataset, prepare_dataset, set_captions)
from studio.faces import detect_faces, face_distance, main_face
from studio.progress import Cancelled
from studio.settings import Settings
from studio.context import Studio


@pytest.fixture
def settings(tmp_path):
    return Settings(root=tmp_path, allow_downloads=False)


@pytest.fixture(scope="module")
def prepared_once(tmp_path_factory):
    """One preparation for the module (faces are the slow part); each test gets its own copy of the workspace."""
    root = tmp_path_factory.mktemp("once")
    photos = root / "photos"
    photos.mkdir()
    for i, im in enumerate(astronaut_variants(5)):
        im.save(photos / f"astro_{i}.jpg", quality=92)
    hopper().save(photos / "zz_hopper.jpg", quality=92)
    (photos / "broken.png").write_text("<html>not a picture</html>")
    settings = Settings(root=root, allow_downloads=False)
    return settings, photos, prepare_dataset(Studio.open(settings), PrepareRequest((photos,), "amari", "ohwx", blur_bystanders=True))


@pytest.fixture
def prepared(settings, prepared_once):
    source, _, result = prepared_once
    shutil.copytree(source.workspace_dir, settings.workspace_dir)
    return dataclasses.replace(result, dataset=load_dataset(settings, "amari"))  # the shared result stays as it was


def test_prepare_keeps_refuses_and_flags(prepared):
    ds = prepared.dataset
    assert [im.source for im in ds.images] == [f"astro_{i}.jpg" for i in range(5)] + ["zz_hopper.jpg"]
    assert [(r.name, r.reason[:12]) for r in prepared.refused] == [("broken.png", "not an image")]
    assert ds.images[-1].flags == ["far from set"] and ds.images[-1].to_set > 0.6
    assert all(im.to_set < 0.3 for im in ds.images[:5])
    assert "refused  broken.png" in prepared.summary() and "far from set" in prepared.summary()


def test_crops_are_square_centred_on_the_face_and_never_upscaled(prepared):
    ds = prepared.dataset
    hop = ds.images[-1]
    assert hop.size == (512, 512)  # 512 x 600 portrait: a 512 square fits, no flag
    left, top, right, bottom = hop.crop_box
    fx, fy = hop.faces[hop.subject].center
    assert right - left == bottom - top == 512 and left == 0
    assert top == max(0, min(round(fy - 256), 600 - 512))  # as near the face's centre as the picture allows
    small = ds.images[1]  # astronaut variants are cropped below 512 px on one side
    assert small.size[0] < 512 and any(f.startswith("small") for f in small.flags)
    out = Image.open(ds.path(hop))
    assert out.size == (512, 512) and out.mode == "RGB"
    face = main_face(detect_faces(out))
    assert abs(face.center[1] - (fy - top)) < 8 and abs(face.center[0] - (fx - left)) < 8


def test_captions_start_with_trigger_and_agree_with_metadata(prepared):
    ds = prepared.dataset
    with open(ds.folder / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file_name"] for r in rows] == [im.file_name for im in ds.images]
    for row in rows:
        sidecar = (ds.folder / row["file_name"]).with_suffix(".txt").read_text().strip()
        assert sidecar == row["text"] and row["text"].startswith("ohwx person")
        assert (ds.folder / row["file_name"]).is_file()


def test_dataset_json_and_originals(settings, prepared):
    ds = prepared.dataset
    meta = json.loads((ds.folder / "dataset.json").read_text())
    assert meta["trigger"] == "ohwx" and meta["settings"]["size"] == 512 and meta["settings"]["blur_bystanders"]
    first = meta["images"][0]
    assert len(first["faces"][first["subject"]]["encoding"]) == 128 and len(first["crop_box"]) == 4
    original = ds.folder / ds.images[0].original
    assert original.read_bytes()[:2] == b"\xff\xd8" and original.parent.name == ".originals"
    assert load_dataset(settings, "amari").encodings.shape == (6, 128)


def test_listed_after_restart_and_rerun_uses_the_face_cache(settings, prepared_once, prepared):
    again = Settings(root=settings.root, allow_downloads=False)  # a new process would build new Settings
    assert [(d.name, d.images) for d in list_datasets(again)] == [("amari", 6)]
    broken = settings.datasets_dir / "broken"
    broken.mkdir()
    (broken / "dataset.json").write_text("{not json")
    listed = list_datasets(again)
    assert [d.name for d in listed] == ["amari", "broken"] and "unreadable" in listed[1].problem
    shutil.rmtree(broken)
    assert prepared.faces_detected == 6 and prepared.faces_cached == 0
    photos = prepared_once[1]
    rerun = prepare_dataset(Studio.open(again), PrepareRequest((photos,), "amari2", "ohwx", blur_bystanders=True))
    assert rerun.faces_detected == 0 and rerun.faces_cached == 6
    a, b = prepared.dataset.folder, rerun.dataset.folder
    for name in ["0001.png", "0006.png", "0003.txt", "metadata.csv"]:
        assert (a / name).read_bytes() == (b / name).read_bytes()  # same input, same result
    ja, jb = (json.loads((d / "dataset.json").read_text()) for d in (a, b))
    for j in (ja, jb):
        j.pop("name"), j["settings"].pop("name")
    assert ja == jb


def test_worker_processes_give_the_same_dataset(settings, prepared_once):
    source_settings, photos, _ = prepared_once
    result = prepare_dataset(Studio.open(settings), PrepareRequest((photos,), "amari", "ohwx", blur_bystanders=True, workers=2))
    assert result.faces_detected == 6 and [r.name for r in result.refused] == ["broken.png"]
    a, b = source_settings.datasets_dir / "amari", result.dataset.folder
    assert a != b
    for name in ["0001.png", "0006.png", "0003.txt", "metadata.csv", "dataset.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_bystander_is_blurred_and_subject_kept(settings, tmp_path):
    folder = tmp_path / "group"
    folder.mkdir()
    two_faces().save(folder / "group.png")
    for i, im in enumerate(astronaut_variants(2)):
        im.save(folder / f"astro_{i}.png")
    ref = tmp_path / "ref.png"
    astronaut().save(ref)
    result = prepare_dataset(Studio.open(settings), PrepareRequest((folder,), "group", "ohwx", crop="keep-aspect",
                                                      blur_bystanders=True, reference=(ref,)))
    group = next(im for im in result.dataset.images if im.source == "group.png")
    assert group.blurred >= 1 and "several faces" in group.flags
    assert group.size == (640, 384)  # the 3:2 bucket of a 768 x 512 picture at 512
    out = Image.open(result.dataset.path(group))
    hopper_enc = main_face(detect_faces(hopper())).encoding
    astro_enc = main_face(detect_faces(astronaut())).encoding
    found = detect_faces(out)
    assert all(face_distance(hopper_enc[None], f.encoding)[0] > 0.5 for f in found)  # her face is gone
    assert min(face_distance(astro_enc[None], f.encoding)[0] for f in found) < 0.3  # the subject is intact
    assert group.to_reference < 0.2
    assert f"blurred  {group.file_name} (group.png): {group.blurred} other face" in result.summary()


def test_without_blur_bystanders_are_only_noted(settings, tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    two_faces().save(folder / "group.png")
    result = prepare_dataset(Studio.open(settings), PrepareRequest((folder,), "g", "ohwx", crop="center"))
    im = result.dataset.images[0]
    assert im.blurred == 0 and any("not blurred" in n for n in im.notes)


def test_a_photo_without_a_face_is_left_out_of_a_face_crop_and_kept_by_a_centre_crop(settings, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 900, 3), dtype=np.uint8)).save(folder / "n.png")
    astronaut().save(folder / "a.png")
    studio = Studio.open(settings)
    # Cropped around the face (the default), the noise shows no subject: left out, and said why and what to do
    result = prepare_dataset(studio, PrepareRequest((folder,), "faces", "ohwx"))
    assert [im.source for im in result.dataset.images] == ["a.png"]
    assert [(r.name, r.reason.split(":")[0]) for r in result.refused] == [("n.png", "no face found")]
    assert "refused  n.png: no face found: left out (crop 'face' keeps" in result.summary()
    assert "crop 'center' to keep it" in result.summary()
    # Centre crops keep every picture
    result = prepare_dataset(studio, PrepareRequest((folder,), "all", "ohwx", crop="center"))
    noise = next(im for im in result.dataset.images if im.source == "n.png")
    assert noise.crop_box == (150, 0, 750, 600) and result.refused == []
    # No face anywhere with a face crop is an error that names the crops to use, and writes nothing
    (folder / "a.png").unlink()
    with pytest.raises(ValueError, match="`crop` is 'face' but no face was found in any of the 1 pictures: choose "
                                         "crop 'center' or 'keep-aspect'"):
        prepare_dataset(studio, PrepareRequest((folder,), "none", "ohwx"))
    assert not (settings.datasets_dir / "none").exists()


def _cut_like(original: Image.Image, im) -> np.ndarray:
    """The unblurred original, cut and resized as the training picture was."""
    return np.asarray(original.crop(im.crop_box).resize(im.size, Image.Resampling.LANCZOS), dtype=np.int16)


def test_a_face_like_badge_is_not_blurred_but_a_faint_real_face_is(settings, tmp_path):
    from PIL import ImageEnhance, ImageFilter

    # The astronaut's round mission patch is a weak dlib "face" (score ~0.1, at 126,335-216,426): MediaPipe's face
    # detector does not see a face there, so the patch stays sharp, and the picture's notes say so
    folder = tmp_path / "patch"
    folder.mkdir()
    astronaut().save(folder / "a.png")
    studio = Studio.open(settings)
    im = prepare_dataset(studio, PrepareRequest((folder,), "patch", "ohwx", crop="keep-aspect",
                                                blur_bystanders=True)).dataset.images[0]
    assert im.blurred == 0 and any(n.startswith("not blurred: a weak face-like pattern") for n in im.notes)
    out = np.asarray(Image.open(settings.datasets_dir / "patch" / im.file_name), dtype=np.int16)
    assert np.array_equal(out, _cut_like(astronaut(), im))

    # A dim, soft group photo: the astronaut's face is as weak to dlib as the patch (score ~0.1), but it is a face to
    # MediaPipe, so with Grace Hopper as the subject it is blurred; the patch below it is not
    dim = ImageEnhance.Contrast(two_faces()).enhance(0.5).filter(ImageFilter.GaussianBlur(2.5))
    folder = tmp_path / "dim"
    folder.mkdir()
    dim.save(folder / "group.png")
    ref = tmp_path / "hopper.png"
    hopper().save(ref)
    im = prepare_dataset(studio, PrepareRequest((folder,), "dim", "ohwx", crop="keep-aspect", blur_bystanders=True,
                                                reference=(ref,))).dataset.images[0]
    assert im.blurred == 1
    out = np.asarray(Image.open(settings.datasets_dir / "dim" / im.file_name), dtype=np.int16)
    changed = np.abs(out - _cut_like(dim, im)).max(axis=-1) > 8
    scale = im.size[0] / (im.crop_box[2] - im.crop_box[0])
    face = [round(v * scale) for v in (175, 76, 266, 167)]  # the astronaut's face box in the 768 x 512 photo
    assert changed[face[1]:face[3], face[0]:face[2]].mean() > 0.5  # her face is blurred
    assert changed.mean() < 0.2  # and little else


def test_near_duplicates_and_exif_rotation_in_a_batch(settings, tmp_path):
    folder = tmp_path / "dups"
    folder.mkdir()
    astronaut().save(folder / "a.png")
    astronaut().resize((400, 400)).save(folder / "b_copy.jpg", quality=80)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored sideways: "rotate 90 CCW to view"
    astronaut().rotate(-90).save(folder / "c_sideways.jpg", exif=exif, quality=92)
    result = prepare_dataset(Studio.open(settings), PrepareRequest((folder,), "dups", "ohwx"))
    a, b, c = result.dataset.images
    assert b.flags[-1] == "near-duplicate of 0001.png (a.png)" and not any("duplicate" in f for f in a.flags)
    assert any("EXIF orientation 8" in n for n in c.notes) and c.subject is not None
    assert abs(c.faces[c.subject].center[0] - a.faces[a.subject].center[0]) < 8  # found upright, like a.png


def test_check_with_reference_and_drop_flagged(settings, prepared, tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    astronaut().save(ref / "a.png")
    result = check_dataset(settings, CheckRequest("amari", tolerance=0.4, reference=(ref,)))
    assert result.rows[0].source == "zz_hopper.jpg" and "far from reference" in result.rows[0].flags
    assert [r.score for r in result.rows] == sorted([r.score for r in result.rows], reverse=True)
    assert len(result.flagged) == 1
    dropped = drop_flagged(settings, "amari")
    assert dropped == ["0006.png"]
    ds = load_dataset(settings, "amari")
    assert len(ds.images) == 5 and not (ds.folder / "0006.png").exists() and not (ds.folder / "0006.txt").exists()
    assert "0006.png" not in (ds.folder / "metadata.csv").read_text()


def test_caption_edits_keep_the_trigger_first(settings, prepared):
    ds = set_captions(settings, "amari", {"0001.png": "ohwx person, smiling in a space suit"})
    assert (ds.folder / "0001.txt").read_text().strip() == "ohwx person, smiling in a space suit"
    with pytest.raises(ValueError, match="must start with the trigger"):
        set_captions(settings, "amari", {"0002.png": "a person"})
    ds = edit_captions(settings, "amari", CaptionEdit(prefix="close-up", suffix="film grain", find="photo",
                                                      replace="picture"))
    assert ds.images[1].caption == "ohwx person, close-up, a picture, film grain"
    assert ds.images[0].caption == "ohwx person, close-up, smiling in a space suit, film grain"
    with pytest.raises(ValueError, match="trigger"):
        edit_captions(settings, "amari", CaptionEdit(find="ohwx", replace="sks"))
    assert load_dataset(settings, "amari").images[1].caption.startswith("ohwx")  # nothing half-applied


def test_export_and_delete(settings, prepared):
    path = export_dataset(settings, "amari")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert "amari/0001.png" in names and "amari/metadata.csv" in names and "amari/dataset.json" in names
    assert not any(".originals" in n for n in names)
    delete_dataset(settings, "amari")
    assert list_datasets(settings) == []
    with pytest.raises(ValueError, match="not found"):
        load_dataset(settings, "amari")


def test_cancel_leaves_nothing_behind(settings, face_photos):  # noqa: F811
    calls = []
    with pytest.raises(Cancelled):
        prepare_dataset(Studio.open(settings), PrepareRequest((face_photos,), "stopped", "ohwx"),
                        progress=lambda f, m: calls.append(f), should_stop=lambda: len(calls) >= 3)
    assert not settings.datasets_dir.exists() or list(settings.datasets_dir.iterdir()) == []


@pytest.mark.parametrize("kwargs, word", [
    (dict(trigger="two words"), "trigger"), (dict(size=600), "size"), (dict(crop="zoom"), "crop"),
    (dict(name="../x"), "name"), (dict(tolerance=0), "tolerance"), (dict(captioner="gpt"), "captioner"),
    (dict(margin=-1), "margin"), (dict(inputs=()), "inputs"),
])
def test_bad_requests_name_the_argument(kwargs, word, tmp_path):
    args = dict(inputs=(tmp_path,), name="ok", trigger="ohwx") | kwargs
    with pytest.raises(ValueError, match=word):
        PrepareRequest(**args)


def test_a_plain_folder_reads_metadata_csv_text_or_caption_column(tmp_path):
    """A folder as diffusers' imagefolder has it: captions in metadata.csv, under `text` or (as seed 001's and many
    published sets have it) `caption`; a kohya sidecar wins; a missing caption is the trigger alone."""
    from studio.data.library import captioned_images

    for column in ("text", "caption"):
        folder = tmp_path / column
        folder.mkdir()
        for name in ("a.png", "b.png", "c.png"):
            Image.new("RGB", (64, 64), "white").save(folder / name)
        (folder / "metadata.csv").write_text(f"file_name,{column}\na.png,sks on a beach\nb.png,a photo of sks\n")
        (folder / "c.txt").write_text("sks in a hat\n")
        captions = {im.path.name: im.caption for im in captioned_images(folder, "sks")}
        assert captions == {"a.png": "sks on a beach", "b.png": "a photo of sks", "c.png": "sks in a hat"}, column
    (tmp_path / "other").mkdir()
    Image.new("RGB", (64, 64), "white").save(tmp_path / "other" / "a.png")
    (tmp_path / "other" / "metadata.csv").write_text("file_name,prompt\na.png,on a beach\n")
    assert [im.caption for im in captioned_images(tmp_path / "other", "sks")] == ["sks"]
