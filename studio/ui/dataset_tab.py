"""Dataset tab: upload photos, prepare a training set, edit captions, run the identity check, export or delete."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from studio import data
from studio.data.captions import DEFAULT_TEMPLATE
from studio.data.check import DROP_FLAGS
from studio.data.prepare import default_size
from studio.progress import Cancelled
from studio.ui.common import GPU_QUEUE, shows_errors

_STOPS: dict[str, threading.Event] = {}  # session -> its running preparation's stop flag


def _paths(files) -> tuple[Path, ...]:
    if not files:
        return ()
    files = files if isinstance(files, list) else [files]
    return tuple(Path(f if isinstance(f, str) else f.name) for f in files)


def _names(studio) -> list[str]:
    return [d.name for d in data.list_datasets(studio.settings)]


def _gallery(dataset) -> list[tuple[str, str]]:
    return [(str(dataset.path(im)), f"{im.file_name}: {im.caption}" + (f"  [{'; '.join(im.flags)}]" if im.flags else ""))
            for im in dataset.images]


def _captions_table(dataset) -> list[list[str]]:
    return [[im.file_name, im.caption] for im in dataset.images]


def _thumbnail(path: Path) -> str:
    """A small picture in a table cell: served by gradio from the workspace (launch() allows that folder)."""
    return f'<img src="/gradio_api/file={path}" alt="{path.name}" style="height:64px">'


def _check_views(result) -> tuple[list, list]:
    def fmt(v):
        return "" if v is None else round(v, 3)

    gallery = [(str(r.path), f"{'no face' if r.score is None else f'{r.score:.3f}'} {r.file_name} "
                + "; ".join(r.flags)) for r in result.rows]
    table = [[_thumbnail(r.path), r.file_name, r.source, fmt(r.score), fmt(r.to_set), fmt(r.to_reference), r.faces,
              "; ".join(r.flags)] for r in result.rows]
    return gallery, table


def build(studio) -> None:
    settings = studio.settings
    # 1. Prepare
    gr.Markdown("Drop 5 to 300 photos of one subject (or a .zip). You get square crops around the subject's face, "
                "other people's faces blurred, a caption per picture that starts with your trigger word, "
                "and a check of which photos may not show the same person.")
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(file_count="multiple", file_types=[".jpg", ".jpeg", ".png", ".webp", ".zip"],
                            type="filepath", label="Photos or a .zip")
            reference = gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                label="Reference photos of the subject (optional: tells them from bystanders)")
        with gr.Column(scale=2):
            name = gr.Textbox(label="Dataset name", placeholder="e.g. tim-2024")
            with gr.Row():
                trigger = gr.Textbox(label="Trigger word", placeholder="e.g. ohwx", info="starts every caption")
                class_word = gr.Textbox("person", label="Class word", info="what the subject is: person, dog, ...")
            with gr.Row():
                size = gr.Radio([512, 768, 1024], value=default_size(studio), label="Resolution",
                                info="default: the base model's native size")
                crop = gr.Radio(["face", "center", "keep-aspect"], value="face", label="Crop")
            with gr.Row():
                margin = gr.Slider(0.0, 4.0, value=1.0, step=0.25, label="Margin around the face (face widths)")
                tolerance = gr.Slider(0.2, 0.8, value=0.4, step=0.01, label="Face distance tolerance",
                                      info="above it a photo is flagged as maybe someone else (seed: 0.40)")
            blur = gr.Checkbox(True, label="Blur other people's faces")
            with gr.Row():
                captioner = gr.Radio(["template", "blip", "florence2"], value="template", label="Captions from",
                                     info="blip / florence2 need their weights in models/captioners/<name>/")
                template = gr.Textbox(DEFAULT_TEMPLATE, label="Caption template")
    with gr.Row():
        prepare_btn = gr.Button("Prepare dataset", variant="primary")
        stop_btn = gr.Button("Stop")
    report = gr.Textbox(label="Report", lines=8, interactive=False)

    # 2. Datasets on disk: pictures, captions, bulk edits, export, delete
    gr.Markdown("### Datasets")
    with gr.Row():
        chosen = gr.Dropdown(_names(studio), label="Dataset", allow_custom_value=False)
        refresh_btn = gr.Button("Refresh list")
        export_btn = gr.Button("Export .zip")
        delete_btn = gr.Button("Delete", variant="stop")
    exported = gr.File(label="Export", interactive=False)
    gallery = gr.Gallery(label="Training pictures", columns=6, height=420)
    captions = gr.Dataframe(headers=["file_name", "caption"], datatype=["str", "str"], interactive=True,
                            label="Captions (edit, then save)")
    with gr.Row():
        prefix = gr.Textbox(label="Add after the trigger phrase")
        suffix = gr.Textbox(label="Add at the end")
        find = gr.Textbox(label="Find")
        replace = gr.Textbox(label="Replace with")
    with gr.Row():
        save_btn = gr.Button("Save captions")
        bulk_btn = gr.Button("Apply to all captions")

    # 3. Identity check
    gr.Markdown("### Identity check (face distance to the rest of the set and to the reference; worst first)")
    with gr.Row():
        check_btn = gr.Button("Check identity", variant="primary")
        several = gr.Checkbox(False, label="Also drop photos with several faces")
        drop_btn = gr.Button("Drop flagged photos", variant="stop")
    check_gallery = gr.Gallery(label="Sorted by face distance", columns=6, height=300)
    check_table = gr.Dataframe(headers=["photo", "file_name", "source", "score", "to set", "to reference", "faces",
                                        "flags"], datatype=["html", "str", "str", "number", "number", "number",
                                                            "number", "str"], interactive=False)

    # Callbacks: widget values -> one studio.data call -> widget values
    @shows_errors
    def prepare(files_, name_, trigger_, class_word_, size_, crop_, margin_, blur_, reference_, tolerance_,
                captioner_, template_, request: gr.Request, progress=gr.Progress()):
        request_ = data.PrepareRequest(_paths(files_), name_, trigger_, class_word_, int(size_), crop_, float(margin_),
                                       bool(blur_), _paths(reference_), float(tolerance_), captioner_,
                                       template_ or DEFAULT_TEMPLATE)
        stop = _STOPS.setdefault(request.session_hash if request else "", threading.Event())
        stop.clear()
        try:
            result = data.prepare_dataset(settings, request_, lambda f, m: progress(f, desc=m), stop.is_set)
        except Cancelled:
            return "Stopped: nothing was written.", gr.update(), [], []
        return (result.summary(), gr.update(choices=_names(studio), value=result.dataset.name),
                _gallery(result.dataset), _captions_table(result.dataset))

    def stop_(request: gr.Request):
        _STOPS.setdefault(request.session_hash if request else "", threading.Event()).set()

    @shows_errors
    def show(name_):
        if not name_:
            return [], []
        dataset = data.load_dataset(settings, name_)
        return _gallery(dataset), _captions_table(dataset)

    @shows_errors
    def save(name_, table):
        rows = table.values.tolist() if hasattr(table, "values") else table
        dataset = data.set_captions(settings, name_, {str(r[0]): str(r[1]) for r in rows if r and r[0]})
        return _gallery(dataset), _captions_table(dataset)

    @shows_errors
    def bulk(name_, prefix_, suffix_, find_, replace_):
        dataset = data.edit_captions(settings, name_, data.CaptionEdit(prefix_, suffix_, find_, replace_))
        return _gallery(dataset), _captions_table(dataset)

    @shows_errors
    def check(name_, tolerance_, reference_):
        if not name_:
            raise ValueError("`name` is empty: choose a dataset first")
        result = data.check_dataset(settings, data.CheckRequest(name_, float(tolerance_), _paths(reference_)))
        return (*_check_views(result), f"{len(result.flagged)} of {len(result.rows)} photos flagged")

    @shows_errors
    def drop(name_, several_, tolerance_):
        flags = DROP_FLAGS + (("several faces",) if several_ else ())
        dropped = data.drop_flagged(settings, name_, flags)
        result = data.check_dataset(settings, data.CheckRequest(name_, float(tolerance_)))
        return (*_check_views(result), f"Dropped {len(dropped)}: {', '.join(dropped) or 'none'}",
                _gallery(result.dataset), _captions_table(result.dataset))

    @shows_errors
    def export(name_):
        return str(data.export_dataset(settings, name_))

    @shows_errors
    def delete(name_):
        data.delete_dataset(settings, name_)
        return gr.update(choices=_names(studio), value=None), [], [], f"Deleted dataset {name_}."

    inputs = [files, name, trigger, class_word, size, crop, margin, blur, reference, tolerance, captioner, template]
    prepare_btn.click(prepare, inputs, [report, chosen, gallery, captions], api_name="dataset_prepare", **GPU_QUEUE)
    stop_btn.click(stop_, None, None, api_name=False, queue=False)
    refresh_btn.click(lambda: gr.update(choices=_names(studio)), None, chosen, api_name=False, queue=False)
    chosen.change(show, chosen, [gallery, captions], api_name=False)
    save_btn.click(save, [chosen, captions], [gallery, captions], api_name="dataset_captions")
    bulk_btn.click(bulk, [chosen, prefix, suffix, find, replace], [gallery, captions], api_name="dataset_edit_captions")
    check_btn.click(check, [chosen, tolerance, reference], [check_gallery, check_table, report], api_name="dataset_check")
    drop_btn.click(drop, [chosen, several, tolerance], [check_gallery, check_table, report, gallery, captions],
                   api_name="dataset_drop_flagged")
    export_btn.click(export, chosen, exported, api_name="dataset_export")
    delete_btn.click(delete, chosen, [chosen, gallery, captions, report], api_name="dataset_delete")
