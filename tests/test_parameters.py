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
