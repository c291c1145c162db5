"""Every request's settings declared once (studio.fields): each has its widget, its flag and its API parameter; the
same inputs make the same request from the command line, from the page's widgets and from a gradio_client call by
keyword; a script by keyword keeps working when a setting is added; an unknown or wrong field is named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut
from served import serve_studio, studio_settings


# ---- the one conversion ------------------------------------------------------------------------------------------

def test_a_setting_takes_a_form_s_a_flag_s_and_an_api_call_s_value_alike():
    from studio.fields import build, value, values
    from studio.generate.request import GenerationRequest
    from studio.train.config import RunConfig, Subject

    assert value(RunConfig, "rank", 8.0) == 8 and isinstance(value(RunConfig, "rank", "8"), int)  # gradio's floats
    with pytest.raises(ValueError, match="`rank` must be a whole number but is 2.5"):
        value(RunConfig, "rank", 2.5)
    assert value(RunConfig, "flip", "on") is True and value(RunConfig, "flip", False) is False
    with pytest.raises(ValueError, match="`flip` must be true or false but is 'maybe'"):
        value(RunConfig, "flip", "maybe")
    # a list: one item a line in a form, a list from flags and JSON, each item as its declaration parses it
    assert value(RunConfig, "extra_subjects", " ben:sks:man \n\n cat:zq ") == [Subject("ben", "sks", "man"),
                                                                           Subject("cat", "zq")]
    assert value(RunConfig, "validate_at_steps", "10, 20 30") == [10, 20, 30]
    assert value(RunConfig, "extra_subjects", [{"dataset": "ben", "trigger": "sks"}]) == [Subject("ben", "sks")]
    # None and a setting's stand-in for its default keep the default; choices are checked by name
    request = build(GenerationRequest, {"prompt": "a dog", "width": 0, "cfg": 0, "seed": None, "steps": 7.0})
    assert (request.width, request.cfg, request.seed, request.steps) == (None, None, -1, 7)
    with pytest.raises(ValueError, match="`lr_scheduler` must be one of constant, .* but is 'sometimes'"):
        value(RunConfig, "lr_scheduler", "sometimes")
    with pytest.raises(ValueError, match="`stpes` is no setting of GenerationRequest; the settings are prompt, "):
        values(GenerationRequest, {"prompt": "a dog", "stpes": 3})
    with pytest.raises(ValueError, match="`dataset` is required but not given"):
        build(RunConfig, {"name": "run"})


# ---- every setting offered three ways ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def whole_app(tmp_path_factory, shared_models_dir):
    """The whole web studio, built (not served), and the command line's parser."""
    from studio.cli import build_parser
    from studio.context import Studio
    from studio.ui import build_app

    studio = Studio.open(studio_settings(tmp_path_factory.mktemp("fields"), shared_models_dir))
    return build_app(studio), build_parser()


def _options(parser, *verb) -> set[str]:
    """Every option string of a verb's parser (`dataset prepare`: its sub-command)."""
    import argparse

    found = parser
    for name in verb:
        found = next(a for a in found._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return {s for a in found._actions for s in a.option_strings}


def _coverage():
    """(request class, endpoints, verb, API name prefix, settings offered another way) for every request."""
    from studio.faces.control import CONTROL_MODULES, ControlOptions
    from studio.data.prepare import PrepareRequest
    from studio.evaluate.request import EvaluationRequest
    from studio.generate.animal import AnimalRequest, ControlChoice
    from studio.generate.facefix import FaceFixRequest
    from studio.generate.request import GenerationRequest
    from studio.generate.upscale import UpscaleRequest
    from studio.mine.request import MiningRequest
    from studio.train.config import RunConfig
    from studio.train.sweep import SET_BY_SWEEP, SweepRequest

    return [
        (RunConfig, ["/train_start"], ("train",), "", ()),
        (RunConfig, ["/sweep_start"], ("sweep",), "", SET_BY_SWEEP),  # the sweep names and places its runs
        (SweepRequest, ["/sweep_start"], ("sweep",), "", ()),
        (GenerationRequest, ["/generate", "/inpaint"], ("generate",), "", ()),
        (UpscaleRequest, ["/upscale"], ("upscale",), "", ()),
        (FaceFixRequest, ["/fix_faces"], ("fix-faces",), "", ()),
        (MiningRequest, ["/mine_start"], ("mine",), "", ()),
        (EvaluationRequest, ["/evaluate"], ("evaluate",), "", ()),
        (PrepareRequest, ["/dataset_prepare"], ("dataset", "prepare"), "", ()),
        (AnimalRequest, ["/animal"], ("animal",), "", ()),
        (ControlOptions, ["/animal"], ("animal",), "", ()),
        *[(ControlChoice, ["/animal"], ("animal",), f"{m}_", ()) for m in CONTROL_MODULES],
    ]


# Widgets one form shares with another (face fix takes Generate's), labelled by the other request's declaration
SHARED = {("FaceFixRequest", "model")}


def test_every_setting_has_its_widget_its_flag_and_its_api_parameter(whole_app):
    from studio.fields import declared, flag

    app, parser = whole_app
    endpoints = app.get_api_info()["named_endpoints"]
    missing = []
    for cls, names, verb, prefix, elsewhere in _coverage():
        parameters = {p["parameter_name"]: p for name in names for p in endpoints[name]["parameters"]}
        options = _options(parser, *verb)
        for name, s in declared(cls).items():
            if name in elsewhere:
                continue
            shown = s.shown_with or name  # a painter's paint is its picture's mask
            where = f"{cls.__name__}.{name}"
            parameter = parameters.get(prefix + shown)
            if parameter is None:
                missing.append(f"{where}: no parameter {prefix + shown!r} in {names}")
            elif not s.shown_with and (cls.__name__, name) not in SHARED and s.label not in parameter["label"]:
                missing.append(f"{where}: its widget is labelled {parameter['label']!r}, not {s.label!r}")
            if flag(name, s) not in options:
                missing.append(f"{where}: no flag {flag(name, s)} in `{' '.join(verb)}`")
    assert missing == []


def test_the_train_tab_s_settings_all_have_a_flag(whole_app):
    """The Train tab's basic and advanced settings: every one has a command-line flag (32 of 56 had none)."""
    from studio.fields import declared, flag
    from studio.train.config import RunConfig
    from studio.ui.train_knobs import BASIC, KNOBS

    _, parser = whole_app
    options = _options(parser, "train")
    settings = declared(RunConfig)
    shown = (*BASIC, *KNOBS)
    assert len(shown) >= 56 and [k for k in shown if flag(k, settings[k]) not in options] == []


# ---- the same inputs, the same request, three ways -----------------------------------------------------------------

def _settings(request) -> dict:
    """A request's declared settings, pictures as their pixels and paths as their bytes (a served upload is a
    copy), with the settings of the requests it holds (a sweep's runs, face to animal's controls)."""
    from studio.fields import declared

    def plain(x):
        if isinstance(x, Image.Image):
            return np.asarray(x.convert("RGB")).tobytes()
        if isinstance(x, (list, tuple)):
            return [plain(item) for item in x]
        if hasattr(x, "read_bytes"):
            return x.read_bytes()
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return _settings(x) if declared(x) else x
        return x

    fields = list(declared(request)) or [f.name for f in dataclasses.fields(request)]
    extra = [n for n in ("base", "controls", "options") if hasattr(request, n)]
    return {n: plain(getattr(request, n)) for n in [*fields, *extra]}


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_models_dir):
    """The whole studio served, with datasets to name and a photo to send."""
    from tests.train_helpers import make_dataset

    root = tmp_path_factory.mktemp("same-request")
    studio, app, url = serve_studio(root, shared_models_dir)
    for name in ("ds", "ben"):
        make_dataset(studio.settings, name, [astronaut()], ["sks"])
    photo = root / "photo.png"
    astronaut().resize((96, 96)).save(photo)
    yield studio, url, photo
    app.close()


def _page_values(url, endpoint: str, **changes) -> dict:
    """What the page sends for `endpoint`: every widget at its starting value (the API's defaults), then `changes`."""
    from gradio_client import Client

    info = Client(url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"][endpoint]
    return {**{p["parameter_name"]: p["parameter_default"] for p in info["parameters"]}, **changes}


def _through_the_api(monkeypatch, url, target, attribute, endpoint, **given):
    """The request a gradio_client call by keyword makes: the studio function the callback calls is replaced by one
    that keeps what it was given and stops there (with a ValueError the client sees as an error)."""
    from gradio_client import Client

    caught = []

    def keep(studio, request, *args, **kwargs):
        caught.append(request)
        raise ValueError("kept for the test")

    monkeypatch.setattr(target, attribute, keep)
    with pytest.raises(Exception, match="kept for the test"):
        Client(url, verbose=False).predict(**given, api_name=endpoint)
    return caught[0]


def _from_flags(*argv):
    from studio.cli import build_parser

    return build_parser().parse_args(list(argv))


def test_the_same_inputs_make_the_same_request_from_flags_page_and_api(served, monkeypatch):
    from gradio_client import handle_file

    import studio.data as data_package
    import studio.mine as mine_package
    import studio.train as train_package
    from studio.cli import animal as animal_verb
    from studio.cli import dataset as dataset_verb
    from studio.cli import evaluate as evaluate_verb
    from studio.cli import generate as generate_verb
    from studio.cli import mine as mine_verb
    from studio.cli import sweep as sweep_verb
    from studio.cli import train as train_verb
    from studio.cli import upscale as upscale_verb
    from studio.train import sweep_jobs
    from studio.ui import animal_tab, cleanup, dataset_prepare, evaluate_tab, generate_tab, mine_tab, train_knobs

    studio, url, photo = served
    picture = Image.open(photo).convert("RGB")
    painter = {"background": picture, "layers": [], "composite": picture}

    def api(target, attribute, endpoint, **given):
        return _settings(_through_the_api(monkeypatch, url, target, attribute, endpoint, **given))

    def page(endpoint, make, **changes):
        return _settings(make(_page_values(url, endpoint, **changes)))

    # Generate: the flags, the widgets' values as a page sends them (numbers as floats), and a script by keyword
    flags = generate_verb.request_from_args(_from_flags(
        "generate", "--prompt", "a dog", "--negative", "blur", "--model", "builtin:tiny", "--seed", "7", "--steps", "3",
        "--cfg", "5.5", "--width", "64", "--height", "128", "--sampler", "DDIM", "--batch", "2", "--hires-scale", "1.5",
        "--out", "out"))
    same = dict(prompt="a dog", negative_prompt="blur", model="builtin:tiny", seed=7, sampler="DDIM", cfg=5.5,
                width=64, height=128, hires_scale=1.5)
    made = page("/generate", lambda v: generate_tab.request_from_widgets(v, studio), **same, steps=3.0,
                batch_size=2.0, loras=[])  # the LoRA table, as gradio hands it over: rows
    sent = api(generate_tab, "generate", "/generate", **same, steps=3, batch_size=2)
    assert made == sent == _settings(flags) != _settings(generate_tab.GenerationRequest("a dog"))

    # Train: a run's settings, the Settings accordion's among them, and the first subject's own flags
    flags = train_verb.config_from_args(_from_flags(
        "train", "--out", "run", "--dataset", "ds", "--trigger", "zqx", "--steps", "300", "--rank", "8", "--lr",
        "2e-4", "--lr-scheduler", "cosine", "--flip", "--no-masked-loss", "--extra-subject", "ben:sks:man",
        "--validation-prompt", "a photo of {trigger}", "a {trigger} dog", "--validate-at-steps", "100,200"))
    same = dict(name="run", dataset="ds", trigger="zqx", lr=2e-4, lr_scheduler="cosine", flip=True, masked_loss=False,
                extra_subjects="ben:sks:man", validation_prompts="a photo of {trigger}\na {trigger} dog",
                validate_at_steps="100, 200")
    made = page("/train_start", train_knobs.config_from_widgets, **same, max_steps=300.0, rank=8.0)
    sent = api(train_package, "start_run", "/train_start", **same, max_steps=300, rank=8)
    assert made == sent == _settings(flags)

    # Sweep: its own settings and the run settings every cell shares
    flags = sweep_verb.request_from_args(_from_flags(
        "sweep", "--name", "sw", "--dataset", "ds", "--grid", "lr=1e-4,2e-4", "--grid", "steps=10,20", "--rank", "8",
        "--preset", "default"))
    sent = api(sweep_jobs, "start_sweep", "/sweep_start", name="sw", dataset="ds", grid="lr=1e-4,2e-4\nsteps=10,20",
               rank=8)
    assert sent == _settings(flags)

    # Mine, Evaluate, a dataset, face to animal, upscale: the same, each with its own
    flags = mine_verb.request_from_args(_from_flags(
        "mine", "--name", "m", "--prompt", "a face", "--model", "builtin:tiny", "--steps", "3", "--cfg", "6",
        "--tolerance", "0.45", "--no-recheck", "--max-minutes", "1.5", "--seed-start", "4", "--batch", "2"))
    same = dict(name="m", prompt="a face", model="builtin:tiny", cfg=6, tolerance=0.45, recheck=False, max_minutes=1.5)
    made = page("/mine_start", mine_tab.request_from_widgets, **same, steps=3.0, seed_start=4.0, batch_size=2.0)
    sent = api(mine_package, "start_mining", "/mine_start", **same, steps=3, seed_start=4, batch_size=2)
    assert made == sent == _settings(flags)

    flags = evaluate_verb.request_from_args(_from_flags(
        "evaluate", "--name", "e", "--prompt", "a dog", "--prompt", "a cat", "--seeds", "1, 2", "--variant",
        "control=", "--variant", "again=builtin:tiny", "--steps", "2", "--width", "64", "--clip", "none",
        "--reference", "ds"), studio)
    same = dict(name="e", prompts="a dog\na cat", seeds="1, 2", variants="control=\nagain=builtin:tiny", width=64,
                clip_model="", reference="ds")
    made = page("/evaluate", evaluate_tab.request_from_widgets, **same, steps=2.0)
    sent = api(evaluate_tab, "evaluate", "/evaluate", **same, steps=2)
    assert made == sent == _settings(flags)

    flags = dataset_verb.request_from_args(_from_flags(
        "dataset", "prepare", "--input", str(photo), "--name", "d", "--trigger", "ohwx", "--crop", "center",
        "--margin", "1.5", "--blur-bystanders", "--template", "{trigger}, a photo"), studio)
    same = dict(name="d", trigger="ohwx", crop="center", margin=1.5, blur_bystanders=True, template="{trigger}, a photo")
    made = page("/dataset_prepare", dataset_prepare.request_from_widgets, **same, inputs=[str(photo)])
    sent = api(data_package, "prepare_dataset", "/dataset_prepare", **same, inputs=[handle_file(str(photo))])
    assert made == sent == _settings(flags)

    flags = animal_verb.request_from_args(_from_flags(
        "animal", "--image", str(photo), "--animal", "cat", "--breed", "siamese", "--control", "canny",
        "--control-scale", "0.6", "--canny-low", "50", "--seed", "9", "--n-seeds", "2", "--crop-face", "--out", "o"))
    same = dict(animal="cat", breed="siamese", mediapipe_face=False, canny=True, canny_weight=0.6, seed=9,
                crop_to_face=True)
    made = page("/animal", animal_tab.request_from_widgets, **same, image=picture, canny_low=50.0, n_seeds=2.0)
    sent = api(animal_tab, "face_to_animal", "/animal", **same, image=handle_file(str(photo)), canny_low=50,
               n_seeds=2)
    assert made == sent == _settings(flags)  # the page's dog prompt, left as it is, stands for the cat's preset

    flags = upscale_verb.request_from_args(_from_flags("upscale", "--image", str(photo), "--scale", "2", "--tile",
                                                       "0", "--out", "o"))
    made = page("/upscale", cleanup.upscale_request, image=painter, scale=2.0, tile=0.0)
    sent = api(cleanup, "upscale", "/upscale", scale=2, tile=0,
               image={"background": handle_file(str(photo)), "layers": [], "composite": None})
    assert made == sent == _settings(flags)


# ---- a script by keyword keeps working -----------------------------------------------------------------------------

def _grain_request():
    """GenerationRequest with one more setting, as a later version of the studio may declare one."""
    from studio.fields import setting
    from studio.generate.request import GenerationRequest

    @dataclasses.dataclass
    class GrainedRequest(GenerationRequest):
        grain: float = setting(0.0, label="Film grain", help="0: none", span=(0, 1, 0.05))

    return GrainedRequest


def test_a_script_by_keyword_keeps_working_when_a_setting_is_added(tmp_path, shared_models_dir, monkeypatch):
    from gradio_client import Client

    from studio.ui import generate_tab

    def script(url):  # what a user wrote against today's studio: three settings by name
        images, parameters, seed = Client(url, verbose=False).predict(prompt="a photo of a dog", seed=7, steps=2,
                                                                      api_name="/generate")
        return Image.open(images[0]["image"]).convert("RGB"), parameters, seed

    def parameter_names(url):
        info = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
        return [p["parameter_name"] for p in info["named_endpoints"]["/generate"]["parameters"]]

    studio, app, url = serve_studio(tmp_path / "today", shared_models_dir)
    try:
        today = script(url)
        before = parameter_names(url)
    finally:
        app.close()
    assert today[2] == 7 and "Steps: 2, " in today[1] and "Seed: 7," in today[1]

    # A later studio declares one more setting: its form, its endpoint and its requests have it, the script is the same
    grained = _grain_request()
    seen = []
    real_generate = generate_tab.generate
    monkeypatch.setattr(generate_tab, "GenerationRequest", grained)
    monkeypatch.setattr(generate_tab, "generate", lambda studio, request, **kw: seen.append(request) or
                        real_generate(studio, request, **kw))
    studio, app, url = serve_studio(tmp_path / "later", shared_models_dir)
    try:
        later = script(url)
        after = parameter_names(url)
    finally:
        app.close()
    assert set(after) - set(before) == {"grain"}
    assert isinstance(seen[0], grained) and seen[0].grain == 0.0  # left out: its default
    assert later[1:] == today[1:] and np.array_equal(np.asarray(later[0]), np.asarray(today[0]))


def test_an_unknown_or_wrong_field_is_named(served):
    import httpx
    from gradio_client import Client

    _, url, _ = served
    client = Client(url, verbose=False)
    with pytest.raises(TypeError, match="Parameter `sead` is not a valid key-word argument"):
        client.predict(prompt="a dog", sead=7, api_name="/generate")  # gradio_client, before anything is sent
    with pytest.raises(Exception, match="`sampler` 'Nope' is unknown"):
        client.predict(prompt="a dog", sampler="Nope", steps=2, api_name="/generate")
    with pytest.raises(Exception, match="`rank` must be a whole number but is 2.5"):
        client.predict(name="r", dataset="ds", rank=2.5, api_name="/train_start")
    # curl: POST the settings by name; an unknown one is a 400 that names it
    answer = httpx.post(f"{url}gradio_api/call/v2/generate", json={"prompt": "a dog", "sead": 7})
    assert answer.status_code == 400 and "Parameter `sead` is not a valid key-word argument" in answer.text
    answer = httpx.post(f"{url}gradio_api/call/v2/generate", json={"prompt": "a dog", "seed": 7, "steps": 2})
    assert answer.status_code == 200 and answer.json()["event_id"]
