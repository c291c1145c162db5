"""The words a newcomer meets in the studio, each said in one line, shown where they are met (a folded "Words used
here" list under a tab's settings), so no term needs the docs to be understood."""

from __future__ import annotations

import gradio as gr

TERMS = {
    "sim-score": "how far a face is from the subject's faces (face distance): lower is more alike; up to the "
                 "tolerance (0.40 by default) counts as the same person",
    "sim-group": "the pictures whose faces are all within the tolerance of one another: one consistent identity",
    "tolerance": "the largest sim-score that still counts as the same face",
    "near miss": "a face a little beyond the tolerance: kept apart, not in the group",
    "weak face": "a face the detector is unsure of (\"faces 1 (+1 weak)\": one clear face and one unsure)",
    "checker": "a small classifier that ships with builtin:pocket and says which shape and colour a picture shows; it "
               "scores pocket's pictures where faces cannot",
    "trigger word": "a rare word (zq, ohwx) that stands for the subject in captions and prompts",
    "LoRA": "a small add-on file of weights that teaches a base model the subject; the base stays as it is",
    "DreamBooth": "training the whole base model on the subject (a new base model, gigabytes)",
    "textual inversion": "learning only a new word's embedding; the model itself is unchanged (a tiny file)",
    "fine-tune": "training the whole base model on a dataset, without a trigger word",
    "epoch": "every training picture seen once (times its repeats)",
    "step": "one batch of pictures learnt: the weights move once",
    "validation": "pictures drawn from fixed prompts and seeds while training, to see (and score) what is learnt",
    "collapse guard": "stops a run whose loss jumps or whose pictures all turn into the same texture; its first "
                      "level is the base model's own loss",
    "masked training": "pixels outside a picture's mask (bystanders, backgrounds) are not learnt",
    "EMA": "a running average of the weights, smoother than the last step's (for DreamBooth and fine-tune)",
    "preset": "a named set of settings made for a purpose; it fills the form, which you can change after",
    "CLIP score": "how well a picture matches its prompt, by a CLIP model (0-100; higher follows the prompt better)",
    "seed": "the number the starting noise is drawn from: the same seed and settings give the same picture",
    "CFG scale": "how strongly the picture follows the prompt (classifier-free guidance)",
}


def lines(*terms: str) -> str:
    """The terms (as TERMS names them) as a Markdown list, one line each."""
    return "\n".join(f"- **{term}**: {TERMS[term]}" for term in terms)


def words(*terms: str) -> gr.Accordion:
    """A folded "Words used here" list of `terms`, placed where the tab calls it."""
    with gr.Accordion("Words used here", open=False) as panel:
        gr.Markdown(lines(*terms))
    return panel
