"""ControlNet generation end to end on builtin:tiny + builtin:tiny-controlnet: modes, weights, errors, parameters."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from studio.generate import ControlUnit, GenerationRequest, generate
from studio.generate.parameters import parse_control_units, parse_parameters


def _control_image() -> Image.Image:
    """A white ring on black: the kind of sparse drawing face controls are."""
    im = np.zeros((64, 64, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:64, :64]
    ring = np.abs(np.hypot(xx - 32, yy - 30) - 18) < 2
    im[ring] = 255
    return Image.fromarray(im)


def _run(studio, *, weight=1.0, mode="Balanced", init=True, image=None, model="builtin:tiny", **extra):
    init_image = Image.new("RGB", (64, 64), (180, 120, 90)) if init else None
    request = GenerationRequest(
        prompt="a dog face", model=model, seed=7, steps=3, width=64, height=64, init_image=init_image, save=False,
        controls=[ControlUnit("builtin:tiny-controlnet", image or _control_image(), "canny", weight, **extra)],
        control_mode=mode,
    )
    result = generate(studio, request)
    return np.asarray(result.images[0].image, dtype=np.float64), result


@pytest.mark.parametrize("init", [True, False], ids=["img2img", "txt2img"])
def test_controlnet_steers_generation_and_is_deterministic(session_studio, init):
    off, _ = _run(session_studio, weight=0.0, init=init)
    on, result = _run(session_studio, weight=1.0, init=init)
    again, _ = _run(session_studio, weight=1.0, init=init)
    assert on.shape == (64, 64, 3)
    assert np.abs(on - off).mean() > 1.0  # the tiny ControlNet is not a no-op
    np.testing.assert_array_equal(on, again)
    assert ("Denoising strength: 0.75" in result.images[0].parameters) == init


def test_control_modes_differ_and_prompt_first_leaves_no_hook(session_studio):
    balanced, _ = _run(session_studio)
    controlnet_first, _ = _run(session_studio, mode="ControlNet is more important")
    prompt_first, _ = _run(session_studio, mode="My prompt is more important")
    assert np.abs(balanced - controlnet_first).mean() > 1.0
    assert np.abs(balanced - prompt_first).mean() > 1.0
    assert np.abs(controlnet_first - prompt_first).mean() > 1.0
    # The soft-weight hook is gone after the run: Balanced gives exactly what it gave before.
    np.testing.assert_array_equal(_run(session_studio)[0], balanced)


def test_prompt_first_hook_scales_residuals_like_guess_mode(session_studio):
    import torch

    from studio.generate.run import _soft_weights_hook

    with session_studio.cache.pipeline("builtin:tiny", task="img2img", controlnets=["builtin:tiny-controlnet"]) as pipe:
        net = pipe.controlnet
        torch.manual_seed(0)
        args = dict(sample=torch.randn(2, 4, 8, 8), timestep=500, encoder_hidden_states=torch.randn(2, 77, 32),
                    controlnet_cond=torch.rand(2, 3, 16, 16), conditioning_scale=0.9, return_dict=False)
        with torch.no_grad():
            plain_down, plain_mid = net(**args, guess_mode=False)
            soft_down, soft_mid = net(**args, guess_mode=True)
            handle = net.register_forward_pre_hook(_soft_weights_hook, with_kwargs=True)
            try:
                hooked_down, hooked_mid = net(**args, guess_mode=False)
            finally:
                handle.remove()
    torch.testing.assert_close(hooked_mid, soft_mid)
    for hooked, soft in zip(hooked_down, soft_down):
        torch.testing.assert_close(hooked, soft)
    # A1111's soft weights: 0.825 ** (n - i), from about 0.1 (shallowest) to 1 (middle block).
    n = len(plain_down)
    ratios = [float(s.abs().sum() / p.abs().sum()) for s, p in zip(soft_down, plain_down)]
    expected = [0.825 ** (12 * (n - i) / n) for i in range(n)]
    np.testing.assert_allclose(ratios, expected, rtol=0.01)
    torch.testing.assert_close(soft_mid, plain_mid)


def test_two_controlnets_with_weights(session_studio):
    two = GenerationRequest(
        prompt="a dog face", model="builtin:tiny", seed=3, steps=3, width=64, height=64, save=False,
        controls=[ControlUnit("builtin:tiny-controlnet", _control_image(), "mediapipe_face", 1.0),
                  ControlUnit("builtin:tiny-controlnet", Image.new("RGB", (64, 64)), "canny", 0.5, 0.2, 0.8)],
    )
    result = generate(session_studio, two)
    units = parse_control_units(parse_parameters(result.images[0].parameters))
    assert [u["Module"] for u in units] == ["mediapipe_face", "canny"]
    assert units[1]["Weight"] == "0.5" and units[1]["Guidance Start"] == "0.2" and units[1]["Guidance End"] == "0.8"
    # Both nets steer the pixels, each at its weight: the second at weight 0 is the first alone.
    first, second = two.controls

    def image(*controls):
        return np.asarray(generate(session_studio, replace(two, controls=list(controls))).images[0].image, dtype=float)

    both, only_first = np.asarray(result.images[0].image, dtype=float), image(first)
    assert np.abs(both - only_first).mean() > 0.5 and np.abs(both - image(second)).mean() > 0.5
    np.testing.assert_allclose(image(first, replace(second, weight=0.0)), only_first, atol=1)


def test_controlnet_of_another_family_is_a_clear_error(session_studio):
    with pytest.raises(ValueError, match="does not fit base 'builtin:tiny-xl'.*another family"):
        _run(session_studio, model="builtin:tiny-xl")


def test_bad_control_arguments_name_the_argument(session_studio):
    with pytest.raises(ValueError, match="ControlNet weight .* between 0 and 2 but is 3"):
        _run(session_studio, weight=3.0)
    with pytest.raises(ValueError, match="guidance start/end"):
        _run(session_studio, guidance_start=0.6, guidance_end=0.5)


def test_controlnet_parameters_round_trip(session_studio):
    _, result = _run(session_studio, weight=1.25, mode="ControlNet is more important", processor_res=512,
                     threshold_a=1.0, threshold_b=0.5, guidance_end=0.9)
    text = result.images[0].parameters
    assert ('ControlNet 0: "Module: canny, Model: builtin:tiny-controlnet, Weight: 1.25, Resize Mode: Just Resize, '
            'Processor Res: 512, Threshold A: 1, Threshold B: 0.5, Guidance Start: 0, Guidance End: 0.9, '
            'Control Mode: ControlNet is more important"') in text
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "a dog face" and parsed["Seed"] == "7"
    (unit,) = parse_control_units(parsed)
    assert unit == {"Module": "canny", "Model": "builtin:tiny-controlnet", "Weight": "1.25",
                    "Resize Mode": "Just Resize", "Processor Res": "512", "Threshold A": "1", "Threshold B": "0.5",
                    "Guidance Start": "0", "Guidance End": "0.9", "Control Mode": "ControlNet is more important"}


def test_controlnet_from_a_local_folder_is_the_same_model(session_studio, tmp_path):
    import shutil

    builtin = session_studio.store.resolve("builtin:tiny-controlnet", subfolder="controlnet").path
    folder = shutil.copytree(builtin, tmp_path / "my-controlnet")
    request = GenerationRequest(prompt="a dog face", model="builtin:tiny", seed=7, steps=3, width=64, height=64,
                                save=False, controls=[ControlUnit(str(folder), _control_image(), "canny")])
    from_folder = np.asarray(generate(session_studio, request).images[0].image, dtype=np.float64)
    from_builtin, _ = _run(session_studio, init=False)
    np.testing.assert_array_equal(from_folder, from_builtin)
