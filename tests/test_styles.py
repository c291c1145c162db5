"""Saved styles: named prompt pieces in workspace/styles.csv (A1111's format), saved, replaced, deleted, and applied
by name to what Generate draws."""

from __future__ import annotations

import pytest


def test_styles_are_saved_in_a1111_s_format_and_applied_in_order(settings):
    from studio.generate.styles import Style, apply_styles, delete_style, list_styles, save_style, styles_file

    # an A1111 styles.csv copied in as it is (its header, a quoted comma, a {prompt} placeholder)
    styles_file(settings).parent.mkdir(parents=True)
    styles_file(settings).write_text('name,prompt,negative_prompt\n"film","{prompt}, 35mm film, grain","blurry, cgi"\n'
                                     'sketch,"pencil sketch",\n', encoding="utf-8")
    assert [s.name for s in list_styles(settings)] == ["film", "sketch"]
    assert apply_styles(settings, ["film"], "a fox", "ugly") == ("a fox, 35mm film, grain", "ugly, blurry, cgi")
    assert apply_styles(settings, ["sketch", "film"], "a fox", "") == ("a fox, pencil sketch, 35mm film, grain",
                                                                        "blurry, cgi")
    save_style(settings, Style("sketch", "charcoal drawing"))  # replaced, kept in place of the old one
    save_style(settings, Style("night", "at night, moonlight", "daylight"))
    assert [(s.name, s.prompt) for s in list_styles(settings)] == [
        ("film", "{prompt}, 35mm film, grain"), ("sketch", "charcoal drawing"), ("night", "at night, moonlight")]
    assert [s.name for s in delete_style(settings, "film")] == ["sketch", "night"]
    with pytest.raises(ValueError, match="`styles` names 'film', which is no saved style"):
        apply_styles(settings, ["film"], "a fox", "")
    with pytest.raises(ValueError, match="neither a prompt nor a negative prompt"):
        save_style(settings, Style("empty"))


def test_generate_draws_the_prompt_with_its_styles(studio):
    from studio.generate import GenerationRequest, generate
    from studio.generate.styles import Style, save_style

    save_style(studio.settings, Style("night", "{prompt} at night", "daylight"))
    result = generate(studio, GenerationRequest(prompt="a red dog", styles=["night"], steps=2, width=64, height=64,
                                                seed=3, save=False))
    text = result.images[0].parameters
    assert text.startswith("a red dog at night\nNegative prompt: daylight\n")
