"""A1111 parameters text: our own round trip and real A1111 strings, including quoted ControlNet fields."""

from __future__ import annotations

import pytest

from studio.generate.parameters import format_parameters, parse_parameters, request_fields, split_lora_tags

# Written by A1111 1.5.2 (seed 003's study), unchanged.
A1111_CONTROLNET = (
    "dog,close up, (face portrait 1.1), front face\n"
    "Steps: 20, Sampler: DPM++ 2S a, CFG scale: 7, Seed: 999672668, Size: 512x512, Model hash: 6ce0161689, "
    'Model: v1-5-pruned-emaonly, ControlNet 0: "Module: mediapipe_face, Model: None, Weight: 1.25, Resize Mode: '
    "Crop and Resize, Low Vram: True, Processor Res: 512, Threshold A: 1, Threshold B: 0.5, Guidance Start: 0, "
    'Guidance End: 1, Pixel Perfect: False, Control Mode: ControlNet is more important", Version: v1.5.2'
)
A1111_NEW = (
    "portrait of a woman <lora:face_v2:0.7>, detailed\n"
    "Negative prompt: blurry, lowres\n"
    "bad hands\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 42, Size: 768x512, "
    'Model hash: abcdef1234, Model: real, Lora hashes: "face_v2: 0123456789ab", Version: v1.10.1'
)


def test_a1111_controlnet_text():
    parsed = parse_parameters(A1111_CONTROLNET)
    assert parsed["prompt"] == "dog,close up, (face portrait 1.1), front face"
    assert parsed["ControlNet 0"].startswith("Module: mediapipe_face, Model: None, Weight: 1.25")
    assert parsed["Version"] == "v1.5.2"
    fields = request_fields(parsed)
    assert fields["sampler"] == "DPM++ 2S a" and fields["seed"] == 999672668 and fields["cfg"] == 7.0
    assert (fields["width"], fields["height"]) == (512, 512)


def test_a1111_schedule_type_and_multiline_negative():
    fields = request_fields(parse_parameters(A1111_NEW))
    assert fields["sampler"] == "DPM++ 2M Karras"
    assert fields["negative_prompt"] == "blurry, lowres\nbad hands"
    assert fields["prompt"] == "portrait of a woman <lora:face_v2:0.7>, detailed"
    assert split_lora_tags(fields["prompt"])[1][0].weight == 0.7


def test_prompt_only_text_has_no_settings_line():
    assert parse_parameters("just a prompt: with a colon") == {"prompt": "just a prompt: with a colon",
                                                               "negative_prompt": ""}


def test_round_trip_with_quotes_and_commas():
    text = format_parameters(prompt='a "quoted", prompt', negative_prompt="ugly",
                             fields={"Steps": 4, "Sampler": "Euler a", "CFG scale": 7.5, "Seed": 1, "Size": "64x64",
                                     "Lora hashes": "a: 1, b: 2", "Skipped": None})
    parsed = parse_parameters(text)
    assert parsed["prompt"] == 'a "quoted", prompt' and parsed["Lora hashes"] == "a: 1, b: 2"
    assert "Skipped" not in parsed and parsed["CFG scale"] == "7.5"


def test_unknown_sampler_in_an_image_is_reported():
    with pytest.raises(ValueError, match="sampler 'Restart' is not available here"):
        request_fields(parse_parameters("p\nSteps: 1, Sampler: Restart, Seed: 1"))


def test_lora_tags_are_taken_out_of_the_prompt():
    prompt, loras = split_lora_tags("<lora:a:0.5> a cat, <lora:b> on a mat")
    assert prompt == "a cat, on a mat"
    assert [(lc.name, lc.weight) for lc in loras] == [("a", 0.5), ("b", 1.0)]


# Hires fix, inpainting and ADetailer keys as A1111 1.10 and ADetailer 25.3 write them (key names and order from
# their sources: processing.py, adetailer/args.py).
A1111_HIRES = (
    "a castle\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, "
    "Model hash: 6ce0161689, Model: sd15, Denoising strength: 0.7, Hires upscale: 2, Hires steps: 10, "
    "Hires upscaler: R-ESRGAN 4x+, Version: v1.10.1"
)
A1111_INPAINT = (
    "a red door\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 9, Size: 512x512, Model: sd15, "
    "Denoising strength: 0.6, Mask blur: 8, Inpaint area: Only masked, Masked area padding: 48, Version: v1.10.1"
)
ADETAILER = (
    "portrait of sks person\nSteps: 28, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, Model: sd15, "
    "ADetailer model: face_yolov8n.pt, ADetailer prompt: \"sks person, detailed face <lora:me:0.8>\", "
    "ADetailer confidence: 0.3, ADetailer dilate erode: 4, ADetailer mask blur: 4, ADetailer denoising strength: 0.4, "
    "ADetailer inpaint only masked: True, ADetailer inpaint padding: 32, ADetailer version: 25.3.0, Version: v1.10.1"
)


def test_a1111_hires_fix_restores_its_second_pass():
    fields = request_fields(parse_parameters(A1111_HIRES))
    assert (fields["width"], fields["height"]) == (512, 768)  # `Size` is the first pass's
    assert (fields["hires_scale"], fields["hires_steps"], fields["hires_upscaler"], fields["hires_strength"]) == (
        2.0, 10, "R-ESRGAN 4x+", 0.7)
    assert "strength" not in fields


def test_a1111_hires_resize_is_a_scale_only_when_it_keeps_the_aspect():
    resized = A1111_HIRES.replace("Hires upscale: 2", "Hires resize: 1024x1536")
    assert request_fields(parse_parameters(resized))["hires_scale"] == 2.0
    assert request_fields(parse_parameters(A1111_HIRES.replace("Hires upscale: 2", "Hires resize: 0x1152")))[
        "hires_scale"] == 1.5  # 0 keeps the aspect
    with pytest.raises(ValueError, match="`Hires resize` 1024x1000 changes the aspect of its 512x768 first pass"):
        request_fields(parse_parameters(A1111_HIRES.replace("Hires upscale: 2", "Hires resize: 1024x1000")))


def test_a1111_inpaint_keys():
    fields = request_fields(parse_parameters(A1111_INPAINT))
    assert {k: fields[k] for k in ("strength", "mask_blur", "inpaint_area", "inpaint_padding")} == {
        "strength": 0.6, "mask_blur": 8, "inpaint_area": "only masked", "inpaint_padding": 48}
    whole = request_fields(parse_parameters(A1111_INPAINT.replace("Inpaint area: Only masked, ", "")))
    assert "inpaint_area" not in whole  # A1111 writes the key only for "Only masked"


def test_adetailer_keys_restore_a_face_fix():
    from studio.generate.facefix import face_fix_fields

    parsed = parse_parameters(ADETAILER)
    assert face_fix_fields(parsed) == {"prompt": "sks person, detailed face <lora:me:0.8>", "confidence": 0.3,
                                       "dilate": 4, "mask_blur": 4, "strength": 0.4, "padding": 32,
                                       "only_masked": True}
    assert request_fields(parsed)["seed"] == 5 and "strength" not in request_fields(parsed)


def test_a_clean_up_step_adds_its_keys_and_keeps_the_rest():
    from studio import __version__
    from studio.generate.parameters import add_fields

    text = add_fields(A1111_HIRES, {"Postprocess upscale by": 4.0, "Postprocess upscaler": "4x-UltraSharp"})
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "a castle" and parsed["Hires upscaler"] == "R-ESRGAN 4x+"
    assert text.endswith("Postprocess upscale by: 4, Postprocess upscaler: 4x-UltraSharp, "
                         f"Version: likeness-studio {__version__}")
    assert parse_parameters(add_fields("", {"Postprocess upscale by": 2.0, "Postprocess upscaler": "Lanczos"}))[
        "Postprocess upscaler"] == "Lanczos"
