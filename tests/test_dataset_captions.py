"""Captions: trigger first, templates, bulk edits, and the model captioners (missing weights, a tiny local BLIP)."""

from pathlib import Path

import pytest
from PIL import Image

from studio.data.captions import (CaptionEdit, CaptionRequest, caption_images, edit_caption, lead, template_caption)
from studio.settings import Settings
from studio.context import Studio


def test_templates_lead_with_the_trigger():
    assert template_caption("{trigger} {class_word}, a photo", "ohwx", "dog") == "ohwx dog, a photo"
    assert template_caption("a photo of {trigger} {class_word}", "ohwx", "person") == "ohwx, a photo of ohwx person"
    assert lead("ohwxyz smiling", "ohwx") == "ohwx, ohwxyz smiling"  # a longer word is not the trigger
    with pytest.raises(ValueError, match="template"):
        template_caption("{name} at the beach", "ohwx", "person")


def test_bulk_edit_rules():
    edit = CaptionEdit(prefix="close-up", suffix="bokeh", find="beach", replace="lake")
    assert edit_caption("ohwx person, at the beach", "ohwx", edit) == "ohwx person, close-up, at the lake, bokeh"
    assert edit_caption("ohwx person", "ohwx", CaptionEdit(prefix="smiling")) == "ohwx person, smiling"
    with pytest.raises(ValueError, match="trigger word 'ohwx'"):
        edit_caption("ohwx person", "ohwx", CaptionEdit(find="ohwx ", replace=""))


def test_caption_request_checks():
    with pytest.raises(ValueError, match="captioner"):
        CaptionRequest("ohwx", captioner="gpt4")
    with pytest.raises(ValueError, match="trigger"):
        CaptionRequest("")
    with pytest.raises(ValueError, match="class_word"):
        CaptionRequest("ohwx", class_word="a, b")


@pytest.mark.parametrize("name", ["blip", "florence2"])
def test_missing_captioner_weights_say_where_to_put_them(tmp_path, name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(root=tmp_path, allow_downloads=False)
    with pytest.raises(ValueError) as err:
        caption_images(Studio.open(settings), [Image.new("RGB", (32, 32))], CaptionRequest("ohwx", captioner=name))
    message = str(err.value)
    assert f"{name} captioner weights not found" in message
    assert str(tmp_path / "models" / "captioners" / name) in message and "allow downloads" in message
    assert "\n" not in message


def test_prepare_fails_fast_when_captioner_weights_are_missing(tmp_path, monkeypatch):
    from fixtures_faces import astronaut
    from studio.data import PrepareRequest, prepare_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(root=tmp_path, allow_downloads=False)
    astronaut().save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="florence2 captioner weights not found"):
        prepare_dataset(Studio.open(settings), PrepareRequest((tmp_path / "a.png",), "x", "ohwx", captioner="florence2"))
    assert not (settings.workspace_dir / ".cache" / "faces").exists()  # no face work was wasted


def _tiny_blip(folder: Path) -> None:
    """A randomly initialised BLIP a few kB big, saved like a real one (the loader cannot tell the difference)."""
    import torch
    import transformers as T

    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "a photo of person in an orange suit".split()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    processor = T.BlipProcessor(image_processor=T.BlipImageProcessor(size={"height": 32, "width": 32}),
                                tokenizer=T.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")))
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = T.BlipConfig(vision_config=dict(small, image_size=32, patch_size=8),
                          text_config=dict(small, vocab_size=len(words), max_position_embeddings=64, bos_token_id=2,
                                           sep_token_id=3, pad_token_id=0))
    torch.manual_seed(0)
    T.BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)


def test_a_local_captioner_folder_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(root=tmp_path, allow_downloads=False, device="cpu")
    _tiny_blip(settings.models_dir / "captioners" / "blip")
    calls = []
    captions = caption_images(Studio.open(settings), [Image.new("RGB", (64, 64), (200, 90, 0))] * 3,
                              CaptionRequest("ohwx", "person", captioner="blip", batch_size=2),
                              progress=lambda f, m: calls.append(m))
    assert len(captions) == 3 and all(c.startswith("ohwx person") for c in captions)
    assert calls[0].startswith("loading the blip captioner") and len(calls) == 3


def test_prepare_with_a_local_captioner(tmp_path, monkeypatch):
    from fixtures_faces import astronaut
    from studio.data import PrepareRequest, prepare_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(root=tmp_path, allow_downloads=False, device="cpu")
    _tiny_blip(settings.models_dir / "captioners" / "blip")
    astronaut().save(tmp_path / "a.png")
    result = prepare_dataset(Studio.open(settings), PrepareRequest((tmp_path / "a.png",), "capt", "ohwx", "woman", captioner="blip"))
    caption = result.dataset.images[0].caption
    assert caption.startswith("ohwx woman")
    assert (result.dataset.folder / "0001.txt").read_text().strip() == caption


@pytest.mark.weights
def test_real_blip_describes_the_astronaut():
    from fixtures_faces import astronaut

    settings = Settings(allow_downloads=True)
    [caption] = caption_images(Studio.open(settings), [astronaut()], CaptionRequest("ohwx", "woman", captioner="blip"))
    assert caption.startswith("ohwx woman, ") and len(caption.split()) > 4
