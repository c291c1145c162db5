"""Inpainting on builtin:tiny, builtin:pocket (a trained model) and builtin:tiny-xl: only the masked area changes, the
picture keeps its size, the parameters round trip; a dedicated 9-channel inpainting checkpoint; bad input named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.generate import GenerationRequest, LoraChoice, generate
from studio.generate.inpaint import binary_mask
from studio.generate.parameters import parse_parameters, read_png_parameters, request_fields

BOX = (30, 16, 70, 48)  # the painted rectangle (left, top, right, bottom) in the 100 x 75 picture


def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((100, 75), Image.Resampling.LANCZOS)


def box_mask(size=(100, 75), box=BOX) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def outside(box, margin: int, shape) -> np.ndarray:
    """True for pixels farther than `margin` from `box`: what inpainting must leave as it was."""
    keep = np.ones(shape[:2], dtype=bool)
    left, top, right, bottom = box
    keep[max(0, top - margin):bottom + margin, max(0, left - margin):right + margin] = False
    return keep


def px(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def quick(**kw):
    base = dict(prompt="a red circle", steps=4, seed=3, init_image=photo(), mask_image=box_mask(), save=False)
    return GenerationRequest(**{**base, **kw})


@pytest.mark.parametrize("model", ["builtin:tiny", "builtin:pocket", "builtin:tiny-xl"])
@pytest.mark.parametrize("area", ["whole", "only masked"])
@pytest.mark.parametrize("blur", [0, 4])
def test_only_the_masked_area_changes(session_studio, model, area, blur):
    result = generate(session_studio, quick(model=model, inpaint_area=area, mask_blur=blur))
    out, original = px(result.images[0].image), px(photo())
    assert out.shape == original.shape  # the picture's own size, whatever size the model worked at
    # A Gaussian blur of radius b reaches under 3b pixels past the painted edge; beyond that, the original's bytes.
    keep = outside(BOX, 3 * blur + 1 if blur else 0, out.shape)
    assert np.array_equal(out[keep], original[keep])
    left, top, right, bottom = BOX
    assert np.abs(out[top:bottom, left:right] - original[top:bottom, left:right]).mean() > 5  # and it did change


def test_only_masked_works_at_the_models_size_and_records_it(studio):
    result = generate(studio, quick(model="builtin:pocket", inpaint_area="only masked", inpaint_padding=8))
    text = result.images[0].parameters
    # The mask's box plus blur and padding is 40+2*(10+8) = 76 wide, 32+2*18 = 68 high. Pocket's size is 64, and
    # no side may be under 64: the shorter side is 64, the longer 76*64/68 = 71.5, to a multiple of 8: 72.
    assert (result.request.width, result.request.height) == (72, 64)
    assert ("Size: 72x64" in text and "Denoising strength: 0.75, Mask blur: 4, Inpaint area: Only masked, "
            "Masked area padding: 8" in text)
    fields = request_fields(parse_parameters(read_png_parameters(generate(studio, quick(
        model="builtin:pocket", inpaint_area="only masked", inpaint_padding=8, save=True)).images[0].path)))
    assert {k: fields[k] for k in ("strength", "mask_blur", "inpaint_area", "inpaint_padding", "width", "height")} == \
        {"strength": 0.75, "mask_blur": 4, "inpaint_area": "only masked", "inpaint_padding": 8, "width": 72,
         "height": 64}
    again = generate(studio, GenerationRequest(**{**fields, "model": "builtin:pocket", "init_image": photo(),
                                                  "mask_image": box_mask(), "save": False}))
    assert np.array_equal(px(again.images[0].image), px(result.images[0].image))


def test_whole_picture_parameters_leave_out_only_masked_keys(session_studio):
    text = generate(session_studio, quick(model="builtin:tiny", mask_blur=0)).images[0].parameters
    assert "Size: 96x72" in text and "Denoising strength: 0.75" in text  # 100x75 worked at multiples of 8
    assert "Mask blur" not in text and "Inpaint area" not in text and "Masked area padding" not in text


def test_inpaint_shares_the_base_and_keeps_loras_active(studio):
    from tests.weights_files import make_lora

    make_lora(studio, "builtin:tiny", studio.settings.models_dir / "lora" / "inpaint_style.safetensors", seed=7)
    plain = px(generate(studio, quick(model="builtin:tiny")).images[0].image)
    styled = px(generate(studio, quick(model="builtin:tiny", loras=[LoraChoice("inpaint_style", 1.0)])).images[0].image)
    left, top, right, bottom = BOX
    assert np.abs(styled[top:bottom, left:right] - plain[top:bottom, left:right]).mean() > 1
    with studio.cache.pipeline("builtin:tiny") as base, studio.cache.pipeline("builtin:tiny", task="inpaint") as inp:
        assert type(inp).__name__ == "StableDiffusionInpaintPipeline"
        assert inp.unet is base.unet and inp.vae is base.vae  # from_pipe: no second copy of the weights
    assert [h.kind for h in studio.cache.holdings()] == ["base"]


def tiny_inpainting_checkpoint(studio, folder):
    """builtin:tiny's parts around a seeded random UNet that takes 9 channels, saved as an inpainting pipeline."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    pipe = studio.store.load_base(studio.store.resolve("builtin:tiny"), dtype=torch.float32, device="cpu")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config({**pipe.unet.config, "in_channels": 9})
    StableDiffusionInpaintPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=unet,
                                   scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False).save_pretrained(folder)
    return folder


def test_a_dedicated_inpainting_checkpoint_inpaints_and_refuses_txt2img(studio):
    folder = tiny_inpainting_checkpoint(studio, studio.settings.models_dir / "base" / "tiny-inpainting")
    result = generate(studio, quick(model=str(folder)))
    out, original = px(result.images[0].image), px(photo())
    keep = outside(BOX, 13, out.shape)
    assert np.array_equal(out[keep], original[keep])
    with studio.cache.pipeline(str(folder), task="inpaint") as pipe:
        assert pipe.unet.config.in_channels == 9
    with pytest.raises(ValueError, match="is an inpainting checkpoint \\(its UNet takes 9 input channels.*for txt2img"):
        generate(studio, GenerationRequest(prompt="a dog", model=str(folder), steps=1, save=False))
    with pytest.raises(ValueError, match="for img2img"):
        generate(studio, GenerationRequest(prompt="a dog", model=str(folder), steps=2, init_image=photo(), save=False))


def test_a_painted_layer_and_a_white_on_black_mask_read_alike():
    layer = Image.new("RGBA", (100, 75), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), BOX)
    assert np.array_equal(np.asarray(binary_mask(layer)), np.asarray(box_mask()))
    rgb = box_mask().convert("RGB")
    assert np.array_equal(np.asarray(binary_mask(rgb)), np.asarray(box_mask()))


@pytest.mark.parametrize("change, message", [
    (dict(init_image=None), "`mask_image` needs `init_image`"),
    (dict(mask_image=box_mask((64, 64))), "`mask_image` must have the picture's size 100x75 but is 64x64"),
    (dict(mask_image=Image.new("L", (100, 75), 0)), "`mask_image` is empty"),
    (dict(width=64), "give both `width` and `height`"),
    (dict(mask_blur=65), "`mask_blur` must be between 0 and 64 but is 65"),
    (dict(inpaint_area="masked"), "`inpaint_area` must be one of whole, only masked but is 'masked'"),
    (dict(steps=2, strength=0.4), "`steps` 2 at `strength` 0.4 runs no denoising step"),
])
def test_bad_inpaint_input_names_the_argument(session_studio, change, message):
    with pytest.raises(ValueError, match=message):
        generate(session_studio, quick(model="builtin:tiny", **change))
