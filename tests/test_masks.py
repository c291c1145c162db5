"""Masks: written by "Protect bystanders" over exactly the blurred pixels, kept in step with crops, resizes, buckets
and flips, cached beside the latents, and the masked loss itself (all-ones = plain, weight 0 = ignored)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fixtures_faces import astronaut, two_faces
from tests.train_helpers import make_dataset, tiny_config, train_in_process


def test_protect_bystanders_masks_exactly_the_blurred_pixels_through_crop_and_resize(settings, tmp_path):
    from studio.context import Studio
    from studio.data import PrepareRequest, load_dataset, prepare_dataset

    folder = tmp_path / "group"
    folder.mkdir()
    two_faces().save(folder / "group.png")
    ref = tmp_path / "ref.png"
    astronaut().save(ref)
    # keep-aspect: the 768 x 512 picture goes to the 640 x 384 bucket, so crop and LANCZOS resize both apply
    result = prepare_dataset(Studio.open(settings), PrepareRequest((folder,), "group", "ohwx", crop="keep-aspect",
                                                                   blur_bystanders=True, reference=(ref,)))
    im = result.dataset.images[0]
    assert im.size == (640, 384) and im.blurred >= 1 and im.mask == "0001.mask.png"
    picture = np.asarray(Image.open(result.dataset.path(im)), dtype=np.float64)
    mask = np.asarray(Image.open(result.dataset.folder / im.mask))
    assert mask.shape == picture.shape[:2] and set(np.unique(mask)) <= {0, 255}
    # The unblurred photo cut and resized the same way: every pixel the blur changed is black in the mask
    unblurred = np.asarray(two_faces().crop(im.crop_box).resize(im.size, Image.LANCZOS), dtype=np.float64)
    changed = np.abs(unblurred - picture).max(axis=-1) > 1
    assert changed.sum() > 10_000 and not (changed & (mask > 0)).any()
    assert (mask == 0).sum() < 1.3 * changed.sum()  # black is the blur (and a few pixels of LANCZOS reach), no more
    # ...and the subject's face, cut and scaled into the picture, is all white
    left, top, right, bottom = im.faces[im.subject].box
    sx = im.size[0] / (im.crop_box[2] - im.crop_box[0])
    face = mask[round((top - im.crop_box[1]) * sx):round((bottom - im.crop_box[1]) * sx),
                round((left - im.crop_box[0]) * sx):round((right - im.crop_box[0]) * sx)]
    assert face.size > 1000 and (face == 255).all()
    # The mask is in dataset.json and metadata.csv (imagefolder's mask_file_name column), not taken for a picture
    with open(result.dataset.folder / "metadata.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [{"file_name": "0001.png", "mask_file_name": "0001.mask.png",
                                            "text": im.caption}]
    assert load_dataset(settings, "group").images[0].mask == "0001.mask.png"
    from studio.data.library import captioned_images

    listed = captioned_images(result.dataset.folder, "ohwx")
    assert [(c.path.name, c.mask.name) for c in listed] == [("0001.png", "0001.mask.png")]
    assert "masks    1 written" in result.summary()
    # The kept upload is blurred too: no stored picture shows the bystander
    kept = np.asarray(Image.open(result.dataset.folder / im.original).convert("RGB"), dtype=np.float64)
    assert np.abs(kept - np.asarray(two_faces(), dtype=np.float64)).max(axis=-1).__gt__(1).sum() > 10_000


def _marked(size=(96, 64)) -> tuple[Image.Image, Image.Image]:
    """A picture with a dark square in its top-left area and the mask that marks that square black."""
    picture = Image.new("RGB", size, (240, 240, 240))
    ImageDraw.Draw(picture).rectangle((8, 6, 31, 29), fill=(10, 10, 10))
    mask = Image.new("L", size, 255)
    ImageDraw.Draw(mask).rectangle((8, 6, 31, 29), fill=0)
    return picture, mask


@pytest.mark.parametrize("size, buckets, resolution", [((96, 64), True, 64), ((96, 64), False, 64),
                                                       ((64, 96), True, 128), ((128, 128), True, 64)])
def test_training_masks_follow_the_pictures_buckets_crops_and_flips(settings, size, buckets, resolution):
    from studio.train.data import latent_mask, load_items, load_mask, load_pixels

    picture, mask = _marked(size)
    folder = make_dataset(settings, "ds", [picture], ["sks"])
    mask.save(folder / "000.mask.png")
    item = load_items(folder, "sks")[0]
    assert item.mask == folder / "000.mask.png"
    bucket = item.bucket(resolution, buckets)
    for flip in (False, True):
        pixels, _ = load_pixels(item, bucket, flip)
        weights = load_mask(item, bucket, flip)
        assert weights.shape == (1, bucket[1], bucket[0])
        dark = pixels.mean(dim=0) < -0.5  # the square, wherever crop, resize and flip put it
        assert dark.sum() > 50
        assert (weights[0][dark] < 0.5).float().mean() > 0.97 and (weights[0][~dark] > 0.5).float().mean() > 0.97
        assert (weights[0, :, : bucket[0] // 2] < 0.5).any() != flip  # a flip moves it to the right half
        small = latent_mask(weights, (bucket[1] // 8, bucket[0] // 8))
        # each latent pixel takes the smallest weight of the 8 x 8 pixels it covers
        blocks = weights[0].reshape(bucket[1] // 8, 8, bucket[0] // 8, 8).amin(dim=(1, 3))
        assert small.shape == (1, bucket[1] // 8, bucket[0] // 8) and (small[0] == blocks).all()


def test_a_mask_of_another_size_is_refused(settings):
    from studio.train.data import load_items, load_mask

    picture, _ = _marked()
    folder = make_dataset(settings, "ds", [picture], ["sks"])
    Image.new("L", (50, 50), 255).save(folder / "000.mask.png")
    with pytest.raises(ValueError, match="000.mask.png is 50x50 but its picture is 96x64"):
        load_mask(load_items(folder, "sks")[0], (64, 64), False)


def test_latent_cache_keeps_the_masks_and_its_key_follows_them(studio):
    import time

    from studio.train.data import load_items
    from studio.train.latents import Latents
    from studio.train.parts import load_parts

    picture, mask = _marked()
    folder = make_dataset(studio.settings, "ds", [picture, picture], ["sks", "sks"])
    mask.save(folder / "000.mask.png")  # the second picture has none
    parts = load_parts(studio.store, "builtin:tiny", "cpu")
    items = load_items(folder, "sks")
    cache = studio.settings.workspace_dir / ".cache" / "train"
    first = Latents(parts, items, resolution=64, buckets=True, masks=True)
    assert first.fill(cache, True, lambda f, m: None) is False
    again = Latents(parts, items, resolution=64, buckets=True, masks=True)
    assert again.fill(cache, True, lambda f, m: None) is True  # read back: masks with the latents
    mean, _ = again.batch([0, 1], [False, True])
    masks = again.mask_batch([0, 1], [False, True], tuple(mean.shape[-2:]))
    assert masks.shape == (2, 1, *mean.shape[-2:])
    assert (masks[1] == 1).all() and (masks[0] == first.masks[(0, False)]).all() and (masks[0] == 0).any()
    assert (again.masks[(0, True)] == again.masks[(0, False)].flip(-1)).all()  # the flipped copy's mask is mirrored
    unmasked = Latents(parts, items, resolution=64, buckets=True)
    assert unmasked.mask_batch([0], [False], (16, 24)) is None  # a run without masked loss keeps its own key
    written = first.cache_file(cache, True)
    assert unmasked.cache_file(cache, True) != written
    time.sleep(0.01)
    mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "000.mask.png")  # repainted: a new cache
    assert Latents(parts, load_items(folder, "sks"), resolution=64, buckets=True,
                   masks=True).cache_file(cache, True) != written


def test_masked_loss_is_the_plain_loss_with_ones_and_ignores_weight_zero_pixels():
    import torch

    from studio.train.objectives import mask_weights, reduce

    generator = torch.Generator().manual_seed(0)
    error = torch.rand((3, 4, 8, 8), generator=generator)
    weight = torch.tensor([1.0, 0.5, 2.0])
    ones = torch.ones((3, 1, 8, 8))
    assert torch.allclose(reduce(error, weight, ones), reduce(error, weight), rtol=1e-6)
    mask = ones.clone()
    mask[:, :, :3, :5] = 0
    changed = error.clone()
    changed[:, :, :3, :5] = torch.rand((3, 4, 3, 5), generator=generator) * 100
    assert reduce(changed, weight, mask) == reduce(error, weight, mask)  # what is masked out changes nothing
    changed.requires_grad_(True)
    reduce(changed, weight, mask).backward()
    assert (changed.grad[:, :, :3, :5] == 0).all() and (changed.grad[:, :, 3:, :] > 0).all()
    # the loss keeps its scale whatever share of the picture is masked: a uniform error is that error
    for share in (0.1, 0.5, 0.9):
        m = (torch.rand((3, 1, 8, 8), generator=generator) > share).float()
        m[:, :, 0, 0] = 1
        assert torch.allclose(reduce(torch.full((3, 4, 8, 8), 0.25), torch.ones(3), m), torch.tensor(0.25))
    assert reduce(error, weight, torch.zeros((3, 1, 8, 8))) == 0  # a picture masked entirely adds nothing
    # unmasked_weight lifts black to it, grey in proportion, white stays 1
    lifted = mask_weights(torch.tensor([0.0, 0.5, 1.0]), 0.1)
    assert torch.allclose(lifted, torch.tensor([0.1, 0.55, 1.0])) and mask_weights(mask, 0.0) is mask


def test_training_with_an_all_white_mask_trains_as_without_and_a_black_one_differently(studio):
    # The one loop, SD 1.x: an all-ones mask gives the same weights as no mask; masking the picture's left half
    # gives other weights (its error no longer counts); --no-masked-loss trains as without masks. The log says which.
    from safetensors.torch import load_file

    from studio.train.runlog import read_events

    def trained(name, mask, **changes):
        folder = studio.settings.datasets_dir / name
        picture, _ = _marked((64, 64))
        make_dataset(studio.settings, name, [picture], ["sks"])
        if mask is not None:
            mask.save(folder / "000.mask.png")
        train_in_process(studio, tiny_config(name=name, dataset=name, max_steps=2, **changes))
        run = studio.settings.runs_dir / name
        said = [e["text"] for e in read_events(run) if e["type"] == "message" and "masked loss" in e["text"]]
        return load_file(str(run / "epochs" / "epoch-002.safetensors")), said

    plain, said_plain = trained("plain", None)
    white, said_white = trained("white", Image.new("L", (64, 64), 255))
    half = Image.new("L", (64, 64), 255)
    half.paste(0, (0, 0, 32, 64))
    black, said_black = trained("half", half)
    off, said_off = trained("off", half, masked_loss=False)
    assert said_plain == ["masked loss: the dataset has no masks (<stem>.mask.png), every pixel counts"]
    assert said_white[0].startswith("masked loss: 1 of 1 pictures have masks; black pixels weigh 0")
    assert said_off == ["masked loss off: the 1 masks of the dataset are not used"]
    for key in plain:
        assert torch_close(plain[key], white[key]) and torch_close(plain[key], off[key])
    assert any(not torch_close(plain[key], black[key]) for key in plain)


def torch_close(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-7))


@pytest.mark.parametrize("model", ["builtin:tiny-xl", "builtin:tiny-flux", "builtin:tiny-zimage", "builtin:tiny-flux2",
                                   "builtin:tiny-qwenimage"])
def test_masked_loss_in_the_sdxl_and_transformer_objectives(studio, model):
    # Each family's loss map is (B, C, h, w) at the latents' size, so the cached latent-size mask weighs it; the
    # masked pixels' error adds nothing, for packed tokens too (unpacked before the loss).
    from contextlib import nullcontext

    import torch

    from studio.train.config import RunConfig
    from studio.train.config_checks import family_defaults
    from studio.train.data import load_items
    from studio.train.latents import Latents
    from studio.train.objectives import make_objective, reduce
    from studio.train.parts import encode_text, load_parts

    picture, mask = _marked((64, 64))
    folder = make_dataset(studio.settings, "ds", [picture], ["sks"])
    mask.save(folder / "000.mask.png")
    parts = load_parts(studio.store, model, "cpu")
    config = family_defaults(RunConfig(name="r", dataset="ds", model=model, resolution=64), parts.family)
    latents = Latents(parts, load_items(folder, "sks"), resolution=64, buckets=True, masks=True)
    mean, std = latents.batch([0], [False])
    weights = latents.mask_batch([0], [False], tuple(mean.shape[-2:]))
    lat = parts.family.normalize_latents(parts.vae, mean)
    cond = encode_text(parts, ["sks"])
    with torch.no_grad():
        error, weight = make_objective(parts, config).loss_map(parts.denoiser, lat, cond, [(64, 64, 0, 0)], (64, 64),
                                                              torch.Generator().manual_seed(0), nullcontext)
    assert error.shape[-2:] == weights.shape[-2:] == mean.shape[-2:] and (weights == 0).any()
    poked = error.clone()
    poked[weights.expand_as(error) == 0] = 1e6
    assert reduce(poked, weight, weights) == reduce(error, weight, weights)
    assert reduce(error, weight, torch.ones_like(weights)).item() == pytest.approx(reduce(error, weight).item(),
                                                                                 rel=1e-6)


def test_the_dataset_tab_shows_paints_and_saves_masks_and_asks_before_deleting(studio):
    from types import SimpleNamespace

    from studio.data.library import Dataset, DatasetImage, load_dataset, save_dataset
    from studio.ui import dataset_tab
    from studio.ui.common import TabContext

    folder = studio.settings.datasets_dir / "painted"
    folder.mkdir(parents=True)
    picture, _ = _marked((64, 64))
    picture.save(folder / "0001.png")
    save_dataset(Dataset("painted", folder, "sks", "person", {"size": 512},
                         [DatasetImage("0001.png", "sks person", "a.png", None, "0" * 64, (0, 0, 64, 64), (64, 64))]))
    ctx = TabContext(studio)
    value = dataset_tab.pick(ctx, SimpleNamespace(name_="painted", file_name_="0001.png"))["painter"]
    # the painter is handed served copies (files Delete subject can find); gradio gives them back as pictures
    value = {"background": Image.open(value["background"]), "layers": [Image.open(value["layers"][0])]}
    assert value["background"].size == (64, 64) and value["layers"][0].getbbox() is None  # no mask yet
    layer = value["layers"][0].copy()
    ImageDraw.Draw(layer).rectangle((40, 40, 63, 63), fill=(230, 30, 30, 255))  # the user paints a corner red
    shown = dataset_tab.save_mask(ctx, SimpleNamespace(name_="painted", file_name_="0001.png",
                                                       painted_={"background": value["background"], "layers": [layer]}))
    mask = np.asarray(Image.open(folder / "0001.mask.png"))
    assert (mask[40:, 40:] == 0).all() and (mask[:40] == 255).all() and (mask[:, :40] == 255).all()
    assert load_dataset(studio.settings, "painted").images[0].mask == "0001.mask.png"
    assert "0001.png,0001.mask.png,sks person" in (folder / "metadata.csv").read_text()
    item, caption = shown["gallery"][0]
    # the overlay is a served copy kept with its picture's, so Delete subject removes it too (issue 32)
    item = np.asarray(Image.open(item).convert("RGB"))
    assert caption.endswith("[mask: 14% not learnt]")
    assert item[50, 50, 0] > item[50, 50, 1] + 60  # masked-out pixels tinted red
    again = dataset_tab.pick(ctx, SimpleNamespace(name_="painted", file_name_="0001.png"))["painter"]["layers"][0]
    assert Image.open(again).getbbox() == (40, 40, 64, 64)  # the painter shows the saved mask in red
    erased = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    dataset_tab.save_mask(ctx, SimpleNamespace(name_="painted", file_name_="0001.png",
                                               painted_={"background": value["background"], "layers": [erased]}))
    assert (np.asarray(Image.open(folder / "0001.mask.png")) == 255).all()  # erased: learnt again

    # kohya's layout: the mask under its picture's own name in the conditioning folder, and the toml naming both
    import zipfile

    exported = dataset_tab.export(ctx, SimpleNamespace(name_="painted", kohya_=True))["exported"]
    with zipfile.ZipFile(exported) as z:
        assert sorted(z.namelist()) == ["painted-kohya/dataset.toml", "painted-kohya/img/1_sks person/0001.png",
                                        "painted-kohya/img/1_sks person/0001.txt",
                                        "painted-kohya/mask/1_sks person/0001.png"]
        toml = z.read("painted-kohya/dataset.toml").decode()
        assert z.read("painted-kohya/mask/1_sks person/0001.png") == (folder / "0001.mask.png").read_bytes()
    assert 'image_dir = "img/1_sks person"' in toml and 'conditioning_data_dir = "mask/1_sks person"' in toml
    with pytest.raises(ValueError, match="`confirm` must be the dataset's name, 'painted'"):
        dataset_tab.delete(ctx, SimpleNamespace(name_="painted", confirm_="paint", outputs_=False))
    assert folder.is_dir()
    plan = dataset_tab.delete_plan(ctx, SimpleNamespace(name_="painted", outputs_=False))["report"]
    assert f"would remove dataset: {folder}" in plan and folder.is_dir()
    done = dataset_tab.delete(ctx, SimpleNamespace(name_="painted", confirm_="painted", outputs_=False))
    assert done["report"].startswith(f"removed dataset: {folder}") and not folder.exists()


@pytest.mark.slow
def test_a_lora_learns_the_blurred_bystander_only_without_the_masked_loss(tmp_path):
    # Issue 15's demonstration at reduced size (bench/bystander.py runs it at 300 steps and 20 seeds, docs/dataset.md):
    # 8 star drawings, each with a blurred cyan head in a corner and its mask. Trained on every pixel, the LoRA draws
    # the smudge; trained with the masked loss it draws it as rarely as the base, and the star as often as the other.
    from studio.context import Studio
    from studio.pocket.bystander import demonstrate
    from studio.settings import Settings

    studio = Studio.open(Settings(root=tmp_path, allow_downloads=False, default_model="builtin:pocket"))
    result = demonstrate(studio, steps=100, seeds=8, prompts=("a red zq on a white background",
                                                              "a yellow zq on a black background"), log=lambda m: None)
    base, blur, masked = result.shares
    assert [s.label for s in result.shares] == ["base", "blur only", "masked loss"] and base.pictures == 16
    assert base.bystander == 0 and base.concept <= 1  # the base draws neither
    assert blur.bystander >= 4, result.shares  # the blur was learnt as part of the concept
    assert masked.bystander <= base.bystander + 1, result.shares  # ...and is not, with the masked loss
    assert blur.concept >= 5 and masked.concept >= blur.concept - 3, result.shares  # the concept is learnt in both
