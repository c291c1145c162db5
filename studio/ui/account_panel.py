"""The account panel of a studio of several users: who is logged in, sharing one's LoRAs with everyone (or taking one
back), and for an admin the users, each removable with everything of theirs. And, on every studio, the lists a
script may ask for, the same as the page's for the logged-in user: /datasets, /runs, /loras."""

from __future__ import annotations

import gradio as gr

from studio.models.sharing import share_lora, shared_loras, unshare_lora
from studio.ui.common import TabContext, TabRefresh, bind, dataset_names, lora_names
from studio.ui.names import listed
from studio.ui.serving import remove_handed


def build(ctx: TabContext) -> TabRefresh:
    several = ctx.studio.settings.several_users
    with gr.Accordion("Account", open=False, visible=several):
        who = gr.Markdown()
        with gr.Row():
            lora = listed(ctx, gr.Dropdown([], label="One of your LoRAs", info="shared: every user of the studio "
                                           "may generate with it (it stays yours: removed with your subject)"), "LoRA")
            share_btn = gr.Button("Share with everyone")
            unshare_btn = gr.Button("Stop sharing")
        with gr.Row(visible=False) as admin_row:
            user = gr.Dropdown([], label="User (admin)", allow_custom_value=True)
            sure = gr.Checkbox(label="Yes: remove this user's datasets, runs, models, pictures and account")
            remove_btn = gr.Button("Remove user", variant="stop")
        message = gr.Markdown()
    lists = gr.JSON(visible=False)
    shown = {"who": who, "lora": lora, "admin_row": admin_row, "user": user}
    bind(ctx, share_btn.click, share, {"lora": lora}, {"message": message, **shown}, api_name="lora_share")
    bind(ctx, unshare_btn.click, unshare, {"lora": lora}, {"message": message, **shown}, api_name="lora_unshare")
    bind(ctx, remove_btn.click, remove, {"user": user, "sure": sure}, {"message": message, **shown},
         api_name="users_remove")
    for name, fn in (("datasets", datasets), ("runs", runs), ("loras", loras)):
        bind(ctx, gr.Button(visible=False).click, fn, None, {"names": lists}, api_name=name, queue=False)
    return TabRefresh(views, shown)


# ---- callbacks ---------------------------------------------------------------------------------------------------

def views(ctx: TabContext, v) -> dict:
    settings = ctx.studio.settings
    if not settings.several_users:
        return {}
    own = [p.stem for p in ctx.studio.store.list_models().lora
           if p.is_relative_to(settings.own_models_dir / "lora")]
    sharing = {p.stem for p in shared_loras(ctx.studio.store)}
    role = " (admin)" if settings.is_admin else ""
    said = f"Logged in as **{settings.user}**{role}. " + (
        f"You share: {', '.join(sorted(sharing))}." if sharing else "You share no LoRA.")
    out = {"who": said, "lora": gr.update(choices=own), "admin_row": gr.update(visible=settings.is_admin)}
    if settings.is_admin:
        from studio.users import list_users

        out["user"] = gr.update(choices=[u for u in list_users(settings) if u != settings.user])
    return out


def share(ctx: TabContext, v):
    where = share_lora(ctx.studio.store, v.lora)
    return {"message": f"`{where.stem}` is shared with everyone.", **views(ctx, v)}


def unshare(ctx: TabContext, v):
    where = unshare_lora(ctx.studio.store, v.lora)
    return {"message": f"`{where.stem}` is yours alone again.", **views(ctx, v)}


def remove(ctx: TabContext, v):
    from studio.users import remove_user

    if not v.sure:
        raise ValueError("tick `sure` to remove the user with everything of theirs")
    done = remove_user(ctx.studio, v.user or "")
    done.copies += remove_handed(ctx.studio.settings, done.name)  # what only the web knows was theirs: their uploads
    return {"message": done.line(), **views(ctx, v)}


def datasets(ctx: TabContext, v):
    """The datasets the logged-in user may use (their own)."""
    return {"names": dataset_names(ctx.studio)}


def runs(ctx: TabContext, v):
    """The runs the logged-in user may use (their own), newest first."""
    from studio.train import list_runs

    return {"names": [r.name for r in list_runs(ctx.studio)]}


def loras(ctx: TabContext, v):
    """The LoRAs the logged-in user may generate with: their own, everyone's, and those other users share."""
    return {"names": lora_names(ctx.studio)}
