"""Golden output slices on builtin:tiny (diffusers' style): a change that shifts every output alike, which the
relative tests (same seed same image, A differs from B) cannot see, fails here.

The values were produced by this code on the pinned torch/diffusers (requirements.txt) on an x86-64 CPU; when a pin
changes, check the new outputs by eye and update them here in the same commit.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.generate import ControlUnit, GenerationRequest, generate

BASE = dict(prompt="a photo of a dog", model="builtin:tiny", steps=2, seed=7, save=False)
LEVELS = 2  # pixel levels of slack: CPU kernels may round the last bit differently on other processors


def _corner(result) -> list[list[int]]:
    """The bottom-right 3x3 of the blue channel, as diffusers' tests take `image[0, -3:, -3:, -1]`."""
    return np.asarray(result.images[0].image)[-3:, -3:, -1].astype(int).tolist()


def _ring() -> Image.Image:
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:64, :64]
    pixels[np.abs(np.hypot(xx - 32, yy - 30) - 18) < 2] = 255
    return Image.fromarray(pixels)


def _close(got, expected):
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=LEVELS, rtol=0)


def test_txt2img_slice(session_studio):
    _close(_corner(generate(session_studio, GenerationRequest(**BASE))),
           [[95, 137, 104], [113, 138, 125], [80, 135, 124]])


def test_img2img_slice(session_studio):
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).convert("RGB")
    request = GenerationRequest(**{**BASE, "steps": 4}, init_image=ramp, strength=0.5)
    _close(_corner(generate(session_studio, request)), [[122, 145, 94], [143, 164, 114], [115, 112, 115]])


def test_controlnet_slice(session_studio):
    request = GenerationRequest(**BASE, controls=[ControlUnit("builtin:tiny-controlnet", _ring(), "canny", 1.0)])
    _close(_corner(generate(session_studio, request)), [[94, 140, 102], [122, 136, 125], [81, 133, 125]])


def test_one_lora_training_step(studio):
    from safetensors.torch import load_file

    from tests.train_helpers import astronaut, make_dataset, tiny_config, train_in_process

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    result = train_in_process(studio, tiny_config(name="golden", max_steps=1, lr=1e-2))
    assert result.first_loss == pytest.approx(1.10963, abs=1e-4)
    weights = load_file(str(result.files[1]))  # the diffusers/peft export
    up = weights["unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora_B.weight"].flatten()[:6]
    # lora_B starts at zero, and AdamW's first step moves each weight by about lr against its gradient's sign.
    np.testing.assert_allclose(up.numpy(), [0.009955, -0.009950, -0.009966, 0.009996, 0.009992, -0.009999], atol=2e-5)


# Every family's tiny builtin (and the shipped pocket), 2 steps at 64 px, seed 7 (each at its family's CFG): the family modules' pipelines,
# samplers and guidance must keep drawing exactly these.
@pytest.mark.parametrize("model, prompt, cfg, expected", [
    ("builtin:tiny-xl", "a photo of a dog", None, [[100, 139, 106], [111, 144, 131], [87, 141, 131]]),
    ("builtin:tiny-flux", "a photo of a dog", None, [[118, 141, 129], [125, 143, 150], [145, 148, 161]]),
    ("builtin:tiny-flux-schnell", "a photo of a dog", None, [[125, 196, 156], [147, 174, 178], [138, 153, 172]]),
    ("builtin:pocket", "a red circle on a white background", 4.0, [[128, 127, 131], [126, 124, 128], [125, 121, 123]]),
    ("builtin:tiny-zimage", "a photo of a dog", None, [[114, 129, 135], [122, 146, 153], [159, 151, 166]]),
    ("builtin:tiny-flux2", "a photo of a dog", None, [[122, 135, 132], [122, 128, 123], [127, 130, 136]]),
    ("builtin:tiny-qwenimage", "a photo of a dog", None, [[131, 131, 143], [125, 143, 141], [134, 144, 128]]),
])
def test_family_txt2img_slices(session_studio, model, prompt, cfg, expected):
    request = GenerationRequest(**{**BASE, "model": model, "prompt": prompt, "cfg": cfg})
    _close(_corner(generate(session_studio, request)), expected)


@pytest.mark.parametrize("model, key, loss, signs", [
    ("builtin:tiny-xl", "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight", 1.15975,
     [1, -1, 1, 1, 1, -1]),
    ("builtin:tiny-flux", "transformer.transformer_blocks.0.attn.to_k.lora_B.weight", 1.54481, [-1, 1, 1, 1, 1, -1]),
    ("builtin:tiny-zimage", "transformer.layers.0.attention.to_k.lora_B.weight", 1.48003, [-1, 1, -1, 1, -1, -1]),
    ("builtin:tiny-flux2", "transformer.transformer_blocks.0.attn.to_k.lora_B.weight", 2.79309, [1, 1, -1, -1, 1, -1]),
    ("builtin:tiny-qwenimage", "transformer.transformer_blocks.0.attn.to_k.lora_B.weight", 2.54817,
     [-1, 1, 1, -1, -1, 1]),
])
def test_family_lora_step(studio, model, key, loss, signs):
    """One LoRA step per family: the base's loss on the first batch (objective, text encoding, latents) and the
    direction of AdamW's first move of lora_B (zero at the start, so each weight moves by about lr)."""
    from safetensors.torch import load_file

    from tests.train_helpers import astronaut, make_dataset, tiny_config, train_in_process

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    result = train_in_process(studio, tiny_config(name="golden", model=model, max_steps=1, lr=1e-2))
    assert result.first_loss == pytest.approx(loss, abs=1e-4)
    up = load_file(str(result.files[1]))[key].flatten()[:6].numpy()
    np.testing.assert_allclose(up, np.array(signs) * 0.01, atol=1e-4)
