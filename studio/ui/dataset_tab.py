"""Dataset tab: upload photos, prepare a training set (bystanders protected: blurred and masked out of training), edit
captions and masks, run the identity check, export, or delete the subject everywhere."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import gradio as gr

from studio import data
from studio.data.check import DROP_FLAGS, IDENTITY_FLAGS
from studio.data.masks import mask_path, overlay, read_mask
from studio.ui import dataset_prepare, glossary
from studio.ui.common import TabContext, TabRefresh, bind, dataset_names, number, table_rows
from studio.ui.dataset_prepare import paths
from studio.ui.names import listed
from studio.ui.serving import served, served_picture


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    w = dataset_prepare.layout(ctx)  # 1. Prepare: photos in, a dataset out (or a question)

    # 2. Datasets on disk: pictures, captions, bulk edits, export, delete
    gr.Markdown("### Datasets")
    with gr.Row():
        chosen = listed(ctx, gr.Dropdown(dataset_names(studio), label="Dataset"), "dataset")
        refresh_btn = gr.Button("Refresh list")
        export_btn = gr.Button("Export .zip")
        kohya = gr.Checkbox(False, label="kohya layout", info="img/ + mask/ folders for sd-scripts' --masked_loss")
    exported = gr.File(label="Export", interactive=False)
    gallery = gr.Gallery(label="Training pictures (red: masked out of training; dimmed: weighed less)", columns=6,
                         height=420)
    with gr.Accordion("Paint a mask (pick a picture in the gallery)", open=False):
        painter = gr.ImageEditor(label="Paint red where training should not look", type="pil", image_mode="RGBA",
                                 format="png", sources=(), transforms=(), layers=False, height=420,
                                 brush=gr.Brush(colors=["#e61e1e"], color_mode="fixed", default_size=16))
        with gr.Row():
            # any name: set_mask says when the dataset has no such picture (its choices follow the dataset picked)
            picked = gr.Dropdown([], label="Picture", info="or click it in the gallery", allow_custom_value=True)
            mask_btn = gr.Button("Save mask")
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
    with gr.Accordion("Delete subject: the dataset, its runs, their LoRAs and embeddings, evaluations and caches",
                      open=False):
        with gr.Row():
            list_btn = gr.Button("List what would be removed")
            confirm = gr.Textbox(label="Type the dataset's name to confirm")
            with_outputs = gr.Checkbox(False, label="Also the pictures made with its models",
                                       info="kept and listed otherwise: they are your pictures")
            delete_btn = gr.Button("Delete subject", variant="stop")
        removal = gr.Textbox(label="What Delete subject removes (or removed)", lines=8, max_lines=20,
                             interactive=False, elem_id="dataset-delete-report")

    # 3. Identity check
    gr.Markdown("### Identity check (face distance to the rest of the set and to the reference; worst first)")
    with gr.Row():
        check_btn = gr.Button("Check identity", variant="primary")
        several = gr.Checkbox(False, label="Also drop photos with several faces")
        drop_btn = gr.Button("Drop flagged photos", variant="stop")
    check_status = gr.Markdown("Check identity compares every photo's face with the rest of the set (and with the "
                               "reference photos, when given) and flags the ones that may show someone else.",
                               elem_id="dataset-check-status")
    # every row whole (a fixed height cut the second row); captions say the check's verdicts only (the table below
    # says the rest: small crops, duplicates), short enough to read
    check_gallery = gr.Gallery(label="Sorted by face distance", columns=6, height="auto", object_fit="cover",
                               elem_id="dataset-check-gallery")
    check_table = gr.Dataframe(headers=list(_CHECK_HEADERS), datatype=list(_CHECK_TYPES), interactive=False,
                               wrap=True)
    glossary.words("sim-score", "tolerance", "weak face", "trigger word", "masked training")

    # 4. Wiring: the API endpoints take these names
    pictures = {"gallery": gallery, "captions": captions}
    checked = {"check_gallery": check_gallery, "check_table": check_table, "check_status": check_status}
    dataset_prepare.wire(ctx, w, {"chosen": chosen, **pictures})
    bind(ctx, refresh_btn.click, refresh_list, None, {"chosen": chosen}, api_name=False, queue=False)
    bind(ctx, chosen.change, show, {"name_": chosen}, pictures, api_name=False)
    bind(ctx, chosen.change, picker_choices, {"name_": chosen}, {"picked": picked}, api_name=False, queue=False)
    saved = bind(ctx, save_btn.click, save, {"name_": chosen, "table": captions}, pictures,
                 api_name="dataset_captions")
    bind(ctx, saved.success, captions_saved, {"name_": chosen, "table": captions}, None, api_name=False, queue=False)
    edited = bind(ctx, bulk_btn.click, bulk, {"name_": chosen, "prefix_": prefix, "suffix_": suffix, "find_": find,
                                              "replace_": replace}, pictures, api_name="dataset_edit_captions")
    bind(ctx, edited.success, captions_saved, {"name_": chosen, "table": captions}, None, api_name=False,
         queue=False)
    bind(ctx, check_btn.click, check, {"name_": chosen, "tolerance_": w["form"].inputs["tolerance"], "reference_": w["form"].inputs["reference"]},
         checked, api_name="dataset_check")
    bind(ctx, drop_btn.click, drop, {"name_": chosen, "several_": several, "tolerance_": w["form"].inputs["tolerance"]},
         {**checked, **pictures}, api_name="dataset_drop_flagged")
    bind(ctx, export_btn.click, export, {"name_": chosen, "kohya_": kohya}, {"exported": exported},
         api_name="dataset_export")
    gallery.select(_selected_file, None, picked, api_name=False, queue=False)
    bind(ctx, picked.change, pick, {"name_": chosen, "file_name_": picked}, {"painter": painter}, api_name=False)
    bind(ctx, mask_btn.click, save_mask, {"name_": chosen, "file_name_": picked, "painted_": painter},
         {**pictures, "report": w["report"]}, api_name="dataset_mask")
    bind(ctx, list_btn.click, delete_plan, {"name_": chosen, "outputs_": with_outputs}, {"report": removal},
         api_name="dataset_delete_plan")
    # a deleted subject leaves nothing on screen: its pictures, the painter's picture, the identity check's rows
    bind(ctx, delete_btn.click, delete, {"name_": chosen, "confirm_": confirm, "outputs_": with_outputs},
         {"chosen": chosen, **pictures, "report": removal, "confirm": confirm, "painter": painter, "picked": picked,
          **checked}, api_name="dataset_delete")
    return TabRefresh(refresh_list, {"chosen": chosen})


# ---- callbacks: widget values -> one studio.data call -> widget values ---------------------------------------------

def refresh_list(ctx: TabContext, v):
    return {"chosen": gr.update(choices=dataset_names(ctx.studio))}


def show(ctx: TabContext, v):
    if not v.name_:
        return {"gallery": [], "captions": []}
    return pictures_of(ctx, data.load_dataset(ctx.studio.settings, v.name_))


def picker_choices(ctx: TabContext, v):
    names = [im.file_name for im in data.load_dataset(ctx.studio.settings, v.name_).images] if v.name_ else []
    return {"picked": gr.update(choices=names, value=None)}


def save(ctx: TabContext, v):
    captions = {str(r[0]): str(r[1]) for r in table_rows(v.table) if r and r[0]}
    return pictures_of(ctx, data.set_captions(ctx.studio.settings, v.name_, captions))


def captions_saved(ctx: TabContext, v):
    """Say that the captions are on disk (the table itself already shows them)."""
    rows = [r for r in table_rows(v.table) if r and r[0]]
    gr.Info(f"Saved {len(rows)} captions of {v.name_} (<stem>.txt, metadata.csv, dataset.json).")


def bulk(ctx: TabContext, v):
    edit = data.CaptionEdit(v.prefix_, v.suffix_, v.find_, v.replace_)
    return pictures_of(ctx, data.edit_captions(ctx.studio.settings, v.name_, edit))


def check(ctx: TabContext, v):
    if not v.name_:
        raise ValueError("`name` is empty: choose a dataset first")
    result = data.check_dataset(ctx.studio.settings, data.CheckRequest(v.name_, float(v.tolerance_),
                                                                       paths(v.reference_)))
    return {**_check_views(ctx, result), "check_status": result.summary()}


def drop(ctx: TabContext, v):
    settings = ctx.studio.settings
    flags = DROP_FLAGS + (("several faces",) if v.several_ else ())
    dropped = data.drop_flagged(settings, v.name_, flags)
    result = data.check_dataset(settings, data.CheckRequest(v.name_, float(v.tolerance_)))
    return {**_check_views(ctx, result), **pictures_of(ctx, result.dataset),
            "check_status": f"Dropped {len(dropped)}: {', '.join(dropped) or 'none'}. Now: {result.summary()}"}


def export(ctx: TabContext, v):
    settings = ctx.studio.settings
    if v.kohya_:
        from studio.data.kohya import export_kohya

        return {"exported": served(settings, export_kohya(settings, v.name_))}
    return {"exported": served(settings, data.export_dataset(settings, v.name_))}


def _selected_file(evt: gr.SelectData):
    """The file name of the picture clicked in the gallery (its caption starts with it)."""
    caption = (evt.value or {}).get("caption") or "" if isinstance(evt.value, dict) else ""
    return caption.split(":", 1)[0] if caption else gr.skip()


def pick(ctx: TabContext, v):
    """The picture chosen goes on the painter, its masked-out pixels painted red."""
    if not v.name_ or not v.file_name_:
        return {"painter": None}
    dataset = data.load_dataset(ctx.studio.settings, v.name_)
    image = next((im for im in dataset.images if im.file_name == v.file_name_), None)
    if image is None:
        raise ValueError(f"dataset {v.name_!r} has no picture {v.file_name_!r}")
    return {"painter": _painter_value(ctx.studio.settings, dataset.path(image))}


def save_mask(ctx: TabContext, v):
    from PIL import Image

    if not v.file_name_:
        raise ValueError("`file_name` is empty: pick a picture in the gallery first")
    value = v.painted_ or {}
    layers = [layer for layer in value.get("layers") or [] if layer is not None]
    if not layers:
        raise ValueError("`painted` holds no paint layer: pick a picture in the gallery, then paint")
    painted = Image.new("L", layers[0].size, 0)
    for layer in layers:  # what is painted (opaque) on any layer is masked out
        alpha = (layer if isinstance(layer, Image.Image) else Image.open(layer)).convert("RGBA").getchannel("A")
        painted.paste(255, (0, 0), alpha.point(lambda a: 255 if a > 127 else 0))
    dataset = data.set_mask(ctx.studio.settings, v.name_, v.file_name_, painted)
    image = next(im for im in dataset.images if im.file_name == v.file_name_)
    return {**pictures_of(ctx, dataset), "report": f"Saved the mask of {image.file_name} ({image.mask})."}


def delete_plan(ctx: TabContext, v):
    from studio.delete_subject import subject_files

    if not v.name_:
        raise ValueError("`name` is empty: choose a dataset first")
    plan = subject_files(ctx.studio, v.name_, outputs=bool(v.outputs_))
    return {"report": "\n".join(plan.lines(done=False) + [f"Type {plan.dataset} and press Delete subject to remove "
                                                           f"these {len(plan.remove)} files and folders."])}


def delete(ctx: TabContext, v):
    from studio.delete_subject import delete_subject

    if not v.name_:
        raise ValueError("`name` is empty: choose a dataset first")
    if (v.confirm_ or "").strip() != v.name_:
        raise ValueError(f"`confirm` must be the dataset's name, {v.name_!r}, but is {v.confirm_!r}: type it to "
                         f"delete the subject")
    done = delete_subject(ctx.studio, v.name_, outputs=bool(v.outputs_))
    lines = done.lines(done=True) + [f"Deleted subject {done.dataset}: {len(done.remove)} removed, "
                                     f"{len(done.keep)} kept."]
    return {"chosen": gr.update(choices=dataset_names(ctx.studio), value=None), "gallery": [], "captions": [],
            "report": "\n".join(lines), "confirm": "", "painter": None, "picked": gr.update(choices=[], value=None),
            "check_gallery": [], "check_table": {"headers": list(_CHECK_HEADERS), "data": []},
            "check_status": f"Subject {done.dataset} deleted: nothing to check."}


# ---- views -----------------------------------------------------------------------------------------------------

def pictures_of(ctx: TabContext, dataset) -> dict:
    """The training pictures with captions and flags (those with a mask shown as the loss sees them: masked-out
    pixels red), and the caption table."""
    settings = ctx.studio.settings
    gallery = []
    for im in dataset.images:
        text = f"{im.file_name}: {im.caption}" + (f"  [{'; '.join(im.flags)}]" if im.flags else "")
        gallery.append(_shown(settings, dataset.path(im), text))
    return {"gallery": gallery, "captions": [[im.file_name, im.caption] for im in dataset.images]}


def _shown(settings, path: Path, text: str):
    """A gallery item: the picture itself, or (with a mask) the overlay, made in memory from the blurred picture."""
    import numpy as np
    from PIL import Image

    mask_file = mask_path(path)
    if not mask_file.is_file():
        return served(settings, path), text
    with Image.open(path) as im:
        picture = im.convert("RGB")
    mask = read_mask(mask_file)
    ignored = float((np.asarray(mask) == 0).mean())
    shown = served_picture(settings, overlay(picture, mask), path, "mask")  # a copy Delete subject finds
    return shown, f"{text}  [mask: {ignored:.0%} not learnt]" if ignored else text


def _painter_value(settings, path: Path) -> dict:
    """The painter's value for a training picture: the picture, and a layer with its masked-out pixels in red (both
    among the picture's served copies, which Delete subject removes with it)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        picture = im.convert("RGBA")
    layer = np.zeros((picture.height, picture.width, 4), np.uint8)
    mask_file = mask_path(path)
    if mask_file.is_file():
        ignored = np.asarray(read_mask(mask_file, picture.size)) == 0
        layer[ignored] = (230, 30, 30, 255)
    return {"background": served_picture(settings, picture, path, "painter"),
            "layers": [served_picture(settings, Image.fromarray(layer, "RGBA"), path, "painted")], "composite": None}


def _thumbnail(path: Path) -> str:
    """A small picture in a table cell, inline (a data: URL), so no file of the dataset needs a URL of its own."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((96, 96))
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=85)
    data_url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="{data_url}" alt="{html.escape(path.name)}" style="height:64px">'


_CHECK_HEADERS = ("photo", "file_name", "source", "to the set", "to the reference", "faces", "flags")
_CHECK_TYPES = ("html", "str", "str", "number", "number", "str", "str")


def _check_views(ctx: TabContext, result) -> dict:
    """The sorted gallery and the table (without the reference's column when there is no reference)."""
    settings = ctx.studio.settings
    gallery = [(served(settings, r.path), " ".join([f"{'no face' if r.score is None else f'{r.score:.3f}'}",
                                                     r.file_name, *[f for f in r.flags if f in IDENTITY_FLAGS]]))
               for r in result.rows]
    rows = [[_thumbnail(r.path), r.file_name, r.source, number(r.to_set), number(r.to_reference), r.faces_text,
             "; ".join(r.flags)] for r in result.rows]
    headers = list(_CHECK_HEADERS)
    if not result.has_reference:
        headers.remove("to the reference")
        rows = [row[:4] + row[5:] for row in rows]
    return {"check_gallery": gallery, "check_table": {"headers": headers, "data": rows}}
