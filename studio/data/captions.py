"""Captions: every one starts with the trigger word; from a template or a captioning model; edited one by one or in bulk."""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image

from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress

CAPTIONER_NAMES = ("template", "blip", "florence2")
# Trigger phrase first (kohya style, seed 002's "always beginning with JefPajot"), then what the picture shows.
DEFAULT_TEMPLATE = "{trigger} {class_word}, a photo"
_TRIGGER = re.compile(r"^[^\s,]{2,40}$")


def check_trigger(trigger: str) -> str:
    """A trigger word is one rare token: 2-40 characters, no spaces or commas (e.g. ohwx, JefPajot)."""
    trigger = (trigger or "").strip()
    if not _TRIGGER.match(trigger):
        raise ValueError(f"`trigger` must be one word of 2 to 40 characters without spaces or commas but is {trigger!r}")
    return trigger


def starts_with_trigger(caption: str, trigger: str) -> bool:
    return re.match(rf"{re.escape(trigger)}(\b|$|[\s,])", caption) is not None


def lead(caption: str, trigger: str) -> str:
    """`caption` made to start with the trigger word: prefixed with "<trigger>, " when it does not."""
    caption = " ".join(caption.split())
    return caption if starts_with_trigger(caption, trigger) else f"{trigger}, {caption}" if caption else trigger


def template_caption(template: str, trigger: str, class_word: str) -> str:
    """Fill {trigger} and {class_word} in `template`; the trigger leads the result."""
    try:
        text = template.format(trigger=trigger, class_word=class_word)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"`template` may use only {{trigger}} and {{class_word}} but is {template!r} ({e})") from None
    return lead(" ".join(text.replace(" ,", ",").split()), trigger)


@dataclass(frozen=True)
class CaptionRequest:
    trigger: str
    class_word: str = "person"
    captioner: str = "template"  # template | blip | florence2
    template: str = DEFAULT_TEMPLATE
    batch_size: int = 4

    def __post_init__(self) -> None:
        check_trigger(self.trigger)
        if self.captioner not in CAPTIONER_NAMES:
            raise ValueError(f"`captioner` must be one of {', '.join(CAPTIONER_NAMES)} but is {self.captioner!r}")
        if "\n" in self.class_word or "," in self.class_word:
            raise ValueError(f"`class_word` must be a word or two without commas but is {self.class_word!r}")


def caption_images(studio, images: list[Image.Image], request: CaptionRequest, progress: ProgressFn = no_progress,
                   should_stop: StopFn = never_stop) -> list[str]:
    """One caption per picture, each starting with the trigger word ("<trigger> <class word>, <what the model saw>").
    A captioning model is borrowed from the model cache (loaded once, counted in its budget)."""
    if request.captioner == "template":
        return [template_caption(request.template, request.trigger, request.class_word)] * len(images)
    progress(0.0, f"loading the {request.captioner} captioner")
    with studio.cache.borrow("captioner", request.captioner) as model:
        return _model_captions(model, images, request, progress, should_stop)


def _model_captions(model, images: list[Image.Image], request: CaptionRequest, progress: ProgressFn,
                    should_stop: StopFn) -> list[str]:
    head = f"{request.trigger} {request.class_word}".strip()
    captions: list[str] = []
    for start in range(0, len(images), request.batch_size):
        if should_stop():
            raise Cancelled()
        progress(start / max(len(images), 1), f"captioning {start + 1} of {len(images)}")
        texts = model(images[start:start + request.batch_size])
        captions += [lead(f"{head}, {text}" if text.strip() else head, request.trigger) for text in texts]
    return captions


@dataclass(frozen=True)
class CaptionEdit:
    """A bulk edit. prefix goes after the leading trigger phrase (the text up to the first comma); suffix at the end;
    find -> replace anywhere. The trigger must still lead every caption afterwards."""

    prefix: str = ""
    suffix: str = ""
    find: str = ""
    replace: str = ""


def edit_caption(caption: str, trigger: str, edit: CaptionEdit) -> str:
    text = caption
    if edit.find:
        text = text.replace(edit.find, edit.replace)
    if edit.prefix.strip():
        head, sep, rest = text.partition(",")
        text = f"{head}, {edit.prefix.strip()}" + (f",{rest}" if sep else "")
    if edit.suffix.strip():
        text = f"{text.rstrip().rstrip(',')}, {edit.suffix.strip()}"
    text = " ".join(text.split())
    if not starts_with_trigger(text, trigger):
        raise ValueError(f"the edit (find={edit.find!r}, replace={edit.replace!r}) would remove the trigger word "
                         f"{trigger!r} from the start of {caption!r}")
    return text
