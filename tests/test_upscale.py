"""Upscalers: Lanczos; tiny random-weight spandrel models saved as safetensors in the test's folder, loaded through the
cache, upscaling by their scale, tiled as untiled; the pickle policy; bad files named; hires fix's size, steps and
parameters round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.context import Studio
from studio.generate import GenerationRequest, generate
from studio.generate.hires import hires_schedule
from studio.generate.parameters import parse_parameters, read_png_parameters, request_fields
from studio.generate.upscale import UpscaleRequest, tile_spans, upscale
from tests.weights_files import make_upscaler as tiny_upscaler


@pytest.fixture
def up_studio(tmp_path, shared_models_dir):
    """A studio whose models/upscale/ holds the tiny upscalers (the builtins come from the session's models)."""
    from studio.settings import Settings

    models = tmp_path / "models"
    models.mkdir()
    (shared_models_dir / "builtin").mkdir(exist_ok=True)
    (models / "builtin").symlink_to(shared_models_dir / "builtin", target_is_directory=True)
    tiny_upscaler(models / "upscale" / "4x-tiny.safetensors", "compact", 4)
    tiny_upscaler(models / "upscale" / "2x-tiny-esrgan.safetensors", "esrgan", 2)
    return Studio.open(Settings(root=tmp_path, models_dir=models, allow_downloads=False, default_model="builtin:tiny"))


def photo(width=150, height=100) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.LANCZOS)


def px(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_lanczos_is_pillows_lanczos():
    result = upscale(None, UpscaleRequest(image=photo(), scale=2.5, save=False))
    assert result.image.size == (375, 250)
    assert np.array_equal(px(result.image), px(photo().resize((375, 250), Image.Resampling.LANCZOS)))
    assert result.info.passes == 0 and result.info.tile is None
    assert "Postprocess upscale by: 2.5, Postprocess upscaler: Lanczos" in result.parameters


@pytest.mark.parametrize("name, scale", [("4x-tiny", 4), ("2x-tiny-esrgan", 2)])
def test_model_upscaler_scales_by_its_factor_and_tiles_match_untiled(up_studio, name, scale):
    image = photo()
    whole = upscale(up_studio, UpscaleRequest(image=image, upscaler=name, scale=scale, tile=0, save=False))
    tiled = upscale(up_studio, UpscaleRequest(image=image, upscaler=name, scale=scale, tile=48, tile_overlap=8,
                                              save=False))
    assert whole.image.size == tiled.image.size == (150 * scale, 100 * scale)
    assert whole.info.tile is None and tiled.info.tile == 48  # a tiled run says its tile size
    assert whole.info.model_scale == scale and whole.info.passes == 1
    diff = np.abs(px(whole.image) - px(tiled.image))
    assert diff.max() <= 4 and diff.mean() < 0.1  # only the blended seams differ, by a few levels at most
    held = {h.model_id: h for h in up_studio.cache.holdings()}
    assert held[name].kind == "upscaler" and held[name].nbytes > 0  # borrowed through the cache, counted


def test_model_output_is_the_network_itself(up_studio, tmp_path):
    """The studio's untiled pass equals the spandrel network called by hand on the same pixels."""
    _, net = tiny_upscaler(tmp_path / "same.safetensors", "compact", 4)
    image = photo(40, 30)
    result = upscale(up_studio, UpscaleRequest(image=image, upscaler=str(tmp_path / "same.safetensors"), scale=4,
                                               tile=0, save=False))
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        y = net.eval()(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(px(result.image) - np.round(y * 255)).max() <= 1


def test_scale_past_the_models_own_runs_it_again_then_resizes(up_studio):
    result = upscale(up_studio, UpscaleRequest(image=photo(40, 30), upscaler="2x-tiny-esrgan", scale=3, save=False))
    assert result.image.size == (120, 90) and result.info.passes == 2  # 2x twice is 160x120, then Lanczos to 3x


def test_saved_png_keeps_the_pictures_parameters(up_studio, tmp_path):
    own = "a photo\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 3, Size: 150x100, Version: v1.10.1"
    result = upscale(up_studio, UpscaleRequest(image=photo(), upscaler="4x-tiny", scale=2, parameters=own,
                                               out_dir=tmp_path / "out"))
    parsed = parse_parameters(read_png_parameters(result.path))
    assert parsed["prompt"] == "a photo" and parsed["Seed"] == "3"
    assert parsed["Postprocess upscale by"] == "2" and parsed["Postprocess upscaler"] == "4x-tiny"
    assert Image.open(result.path).size == (300, 200)


def test_tiles_are_as_few_as_a1111s_and_share_only_the_overlap():
    # A1111 puts three 512 px tiles on 1024 px (at 0, 256, 512); the same three, shrunk, share 33 and 32 px.
    assert tile_spans(1024, 512, 32) == [(0, 363), (330, 363), (661, 363)]
    assert tile_spans(768, 512, 32) == [(0, 400), (368, 400)]
    assert tile_spans(300, 512, 32) == [(0, 300)]
    for length, tile, overlap in ((1536, 512, 32), (1000, 192, 8), (4096, 512, 64), (129, 64, 16)):
        spans = tile_spans(length, tile, overlap)
        assert spans[0][0] == 0 and sum(spans[-1]) == length and all(size <= tile for _, size in spans)
        assert all(a + size - b >= overlap for (a, size), (b, _) in zip(spans, spans[1:]))


def test_the_store_lists_models_upscale(up_studio):
    names = [p.name for p in up_studio.store.list_models().upscale]
    assert names == ["2x-tiny-esrgan.safetensors", "4x-tiny.safetensors"]


def test_missing_upscaler_says_where_to_put_it(up_studio):
    folder = up_studio.settings.models_dir / "upscale"
    with pytest.raises(ValueError, match=f"upscaler 'R-ESRGAN 4x\\+' not found: put its .safetensors file in {folder}"):
        upscale(up_studio, UpscaleRequest(image=photo(), upscaler="R-ESRGAN 4x+", save=False))


def test_pickle_upscaler_needs_allow_pickle_and_then_loads(up_studio, tmp_path):
    _, net = tiny_upscaler(tmp_path / "unused.safetensors", "compact", 2)
    pth = up_studio.settings.models_dir / "upscale" / "2x-pickled.pth"
    torch.save(net.state_dict(), pth)
    with pytest.raises(ValueError, match="2x-pickled.pth is a pickle file.*--allow-pickle"):
        upscale(up_studio, UpscaleRequest(image=photo(), upscaler="2x-pickled", scale=2, save=False))
    allowed = Studio.open(up_studio.settings.with_(allow_pickle=True))
    result = upscale(allowed, UpscaleRequest(image=photo(), upscaler="2x-pickled", scale=2, save=False))
    assert result.image.size == (300, 200)


def test_a_booby_trapped_pickle_is_refused_even_when_pickles_are_allowed(up_studio, tmp_path):
    import os

    marker = tmp_path / "ran"

    class Trap:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"body.0.weight": Trap()}, up_studio.settings.models_dir / "upscale" / "trap.pth")
    allowed = Studio.open(up_studio.settings.with_(allow_pickle=True))
    with pytest.raises(ValueError, match="could not read upscaler file .*trap.pth.*forbidden"):
        upscale(allowed, UpscaleRequest(image=photo(), upscaler="trap", save=False))
    assert not marker.exists()


def test_corrupt_and_unknown_files_are_named(up_studio):
    from safetensors.torch import save_file

    folder = up_studio.settings.models_dir / "upscale"
    (folder / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="broken.safetensors is not a valid safetensors file"):
        upscale(up_studio, UpscaleRequest(image=photo(), upscaler="broken", save=False))
    save_file({"some.weight": torch.zeros(3, 3)}, str(folder / "stranger.safetensors"))
    with pytest.raises(ValueError, match="stranger.safetensors is not an architecture spandrel knows"):
        upscale(up_studio, UpscaleRequest(image=photo(), upscaler="stranger", save=False))


@pytest.mark.parametrize("change, message", [
    (dict(scale=9), "`scale` must be between 1 and 8 but is 9"),
    (dict(tile=16), "`tile` must be 0 \\(no tiling\\) or at least 32 pixels but is 16"),
    (dict(upscaler="Latent"), "A1111's latent upscale"),
    (dict(upscaler=" "), "`upscaler` is empty"),
])
def test_bad_upscale_input_names_the_argument(change, message):
    with pytest.raises(ValueError, match=message):
        upscale(None, UpscaleRequest(**{"image": photo(), "save": False, **change}))


# ---- hires fix --------------------------------------------------------------------------------------------------

def test_hires_schedule_runs_exactly_the_hires_steps():
    assert hires_schedule(10, 0.7) == 15  # A1111: int(10 / 0.7) = 14 would run int(14 * 0.7) = 9
    for steps in (1, 3, 10, 20, 150):
        for strength in (0.2, 0.35, 0.5, 0.7, 1.0):
            assert int(hires_schedule(steps, strength) * strength) == steps


def test_hires_fix_gives_the_size_records_and_round_trips(studio):
    steps_seen = []
    request = GenerationRequest(prompt="a photo of a dog", model="builtin:tiny", steps=3, seed=5, hires_scale=1.5,
                                hires_steps=2, hires_strength=0.6)
    result = generate(studio, request, progress=lambda f, m: steps_seen.append(m))
    image = result.images[0]
    assert image.image.size == (96, 96)  # builtin:tiny's 64 px times 1.5
    assert steps_seen[-1] == "step 5/5" and len(steps_seen) == 5  # 3 first-pass steps, then exactly 2 hires steps
    assert ("Size: 64x64" in image.parameters and "Denoising strength: 0.6, Hires upscale: 1.5, Hires steps: 2, "
            "Hires upscaler: Lanczos" in image.parameters)
    fields = request_fields(parse_parameters(read_png_parameters(image.path)))
    assert {k: fields[k] for k in ("width", "height", "hires_scale", "hires_steps", "hires_upscaler",
                                   "hires_strength")} == {"width": 64, "height": 64, "hires_scale": 1.5,
                                                          "hires_steps": 2, "hires_upscaler": "Lanczos",
                                                          "hires_strength": 0.6}
    assert "strength" not in fields  # a hires picture's denoising strength is its second pass's
    again = generate(studio, GenerationRequest(model="builtin:tiny", save=False, **fields))
    assert np.array_equal(px(again.images[0].image), px(image.image))
    plain = generate(studio, GenerationRequest(prompt="a photo of a dog", model="builtin:tiny", steps=3, seed=5,
                                               save=False))
    first_pass = plain.images[0].image.resize((96, 96), Image.Resampling.LANCZOS)
    assert np.abs(px(image.image) - px(first_pass)).mean() > 1  # the second pass drew over the upscaled picture


def test_hires_fix_with_a_model_upscaler_says_it_tiled(up_studio):
    request = GenerationRequest(prompt="a photo of a dog", model="builtin:tiny", steps=2, seed=5, hires_scale=2,
                                hires_upscaler="4x-tiny", save=False)
    result = generate(up_studio, request)
    assert result.images[0].image.size == (128, 128)
    assert "Hires upscaler: 4x-tiny" in result.images[0].parameters
    assert result.notes == []  # 64 px fits one default tile: nothing was tiled, and nothing claims it was


@pytest.mark.parametrize("change, message", [
    (dict(hires_scale=5), "`hires_scale` must be between 1 \\(off\\) and 4 but is 5"),
    (dict(hires_scale=2, init_image=Image.new("RGB", (64, 64))), "`hires_scale` 2 is for txt2img"),
    (dict(hires_scale=2, hires_upscaler="Latent (bicubic)"), "A1111's latent upscale"),
    (dict(hires_scale=2, hires_upscaler="nowhere"), "upscaler 'nowhere' not found"),
    (dict(hires_strength=0), "`hires_strength` must be in \\(0, 1\\]"),
    (dict(hires_scale=2, hires_steps=150, hires_strength=0.1), "`hires_strength` 0.1 is too low for 150 hires steps"),
])
def test_bad_hires_input_names_the_argument(session_studio, change, message):
    with pytest.raises(ValueError, match=message):
        generate(session_studio, GenerationRequest(prompt="a dog", model="builtin:tiny", steps=2, save=False,
                                                   **change))
