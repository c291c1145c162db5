"""Single-file checkpoints as A1111, Forge and ComfyUI users keep them, with no hub: the configs and tokenizers the
studio carries build the published models; a file's family and variant are told from its keys, shapes and a yaml
beside it; tiny files in each layout (the builtins converted, same key names) load, generate and train with no
network; what the studio cannot load is refused in one line. Real sizes: tests/test_real_files.py and
bench/offline.py."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.generate import GenerationRequest, generate
from studio.models import configs, families
from tests.single_files import carry_tiny, load, write_flux_files, write_sd_file
from tests.train_helpers import astronaut, make_dataset, tiny_config, train_in_process


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: the hub is not asked, whatever the environment says."""
    def refuse(self, address):
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _header_file(path, tensors: dict):
    """A checkpoint whose tensors have the given shapes (zeros) or values: what identification reads."""
    save_file({k: v if isinstance(v, torch.Tensor) else torch.zeros(v) for k, v in tensors.items()}, str(path))
    return path


# ---- what the studio carries -----------------------------------------------------------------------------------------

# Parameter counts of the published models (the SD 1.5 / 2.x / SDXL / FLUX.1 repos' components).
PUBLISHED = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd15-inpainting": {"unet": 859_535_364},
    "sd2-768-v": {"unet": 865_910_724, "text_encoder": 340_387_840},
    "sd2-512": {"unet": 865_910_724},
    "sdxl-base": {"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
    "flux1-dev": {"transformer": 11_901_408_320, "text_encoder_2": 4_762_310_656, "vae": 83_819_683},
    "flux1-schnell": {"transformer": 11_891_178_560},
}


def test_the_carried_configs_build_the_published_models():
    import diffusers
    import transformers

    for variant, counts in PUBLISHED.items():
        folder = configs.variant_folder(variant)
        for name, expected in counts.items():
            library, cls = __import__("json").loads((folder / "model_index.json").read_text())[name]
            with torch.device("meta"):
                if library == "diffusers":
                    model = getattr(diffusers, cls).from_config(getattr(diffusers, cls).load_config(folder / name))
                else:
                    model = getattr(transformers, cls)(transformers.AutoConfig.from_pretrained(folder / name))
            assert sum(p.numel() for p in model.parameters()) == expected, (variant, name)
    predictions = {v: __import__("json").loads((configs.variant_folder(v) / "scheduler" / "scheduler_config.json")
                                               .read_text()).get("prediction_type")
                   for v in ("sd15", "sd15-v", "sd2-512", "sd2-768-v", "sdxl-base", "sdxl-v")}
    assert predictions == {"sd15": "epsilon", "sd15-v": "v_prediction", "sd2-512": "epsilon",
                           "sd2-768-v": "v_prediction", "sdxl-base": "epsilon", "sdxl-v": "v_prediction"}
    with pytest.raises(ValueError, match="carries no configs for 'sd3'.*flux1-dev.*sd15"):
        configs.variant_folder("sd3")


def test_the_carried_tokenizers_give_clips_and_t5s_true_ids():
    sd15 = configs.load_tokenizers(configs.variant_folder("sd15"))["tokenizer"]
    # CLIP's ids for "a photo of a cat" (start, a, photo, of, a, cat, end), as every SD pipeline encodes it
    assert sd15("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(sd15) == 49408 and sd15.pad_token_id == 49407 and sd15.model_max_length == 77
    xl = configs.load_tokenizers(configs.variant_folder("sdxl-base"))
    assert xl["tokenizer_2"]("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert xl["tokenizer_2"].pad_token_id == 0 and xl["tokenizer"].pad_token_id == 49407  # OpenCLIP pads with "!"
    t5 = configs.load_tokenizers(configs.variant_folder("flux1-dev"))["tokenizer_2"]
    # transformers' own T5 tokenization test: "A long paragraph for summarization." -> these ids, then </s>
    assert t5("A long paragraph for summarization.").input_ids == [71, 307, 8986, 21, 4505, 1635, 1707, 5, 1]
    assert t5.pad_token_id == 0 and t5.model_max_length == 512


def test_a_missing_vocabulary_is_named_with_where_it_goes(monkeypatch, tmp_path):
    from studio.models import vocabularies

    monkeypatch.setattr(vocabularies, "vocab_dir", lambda: tmp_path / "vocab")
    with pytest.raises(ValueError) as info:
        configs.load_tokenizers(configs.variant_folder("flux1-schnell"))
    message = str(info.value)
    assert message.startswith("CLIP's byte-pair vocabulary") and "\n" not in message
    assert f"bpe_simple_vocab_16e6.txt.gz should be in {tmp_path / 'vocab' / 'clip'}" in message
    assert "scripts/install.sh" in message and "open-clip-torch==3.3.0" in message
    with pytest.raises(ValueError, match=r"T5 v1\.1's tokenizer .*tokenizer\.json, tokenizer_config\.json, "
                                         r"special_tokens_map\.json should be in .*t5-v1_1; run scripts/install\.sh"):
        vocabularies.folder("t5-v1_1")


# ---- identification -------------------------------------------------------------------------------------------------

_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
_SD2_NORM = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"


@pytest.mark.parametrize("tensors, yaml, variant", [
    ({"cond_stage_model.transformer.x": 1, _UNET_IN: (8, 4, 3, 3)}, None, "sd15"),
    ({"cond_stage_model.transformer.x": 1, _UNET_IN: (8, 9, 3, 3)}, None, "sd15-inpainting"),
    ({"cond_stage_model.transformer.x": 1, _UNET_IN: (8, 4, 3, 3), "v_pred": 0}, None, "sd15-v"),
    ({"cond_stage_model.transformer.x": 1, _UNET_IN: (8, 4, 3, 3)}, 'model:\n  params:\n    parameterization: "v"\n',
     "sd15-v"),
    ({"cond_stage_model.transformer.x": 1, _UNET_IN: (8, 4, 3, 3), "v_pred": 0}, "model:\n  params: {}\n", "sd15"),
    ({"cond_stage_model.model.x": 1, _UNET_IN: (8, 4, 3, 3), _SD2_NORM: torch.linspace(-1, 1, 64)}, None, "sd2-768-v"),
    ({"cond_stage_model.model.x": 1, _UNET_IN: (8, 4, 3, 3), _SD2_NORM: torch.linspace(-.1, .1, 64)}, None, "sd2-512"),
    ({"cond_stage_model.model.x": 1, _UNET_IN: (8, 9, 3, 3)}, None, "sd2-inpainting"),
    ({"conditioner.embedders.1.model.x": 1, _UNET_IN: (8, 4, 3, 3)}, None, "sdxl-base"),
    ({"conditioner.embedders.1.model.x": 1, _UNET_IN: (8, 4, 3, 3), "v_pred": 0}, None, "sdxl-v"),
    ({"conditioner.embedders.1.model.x": 1, _UNET_IN: (8, 4, 3, 3), "v_pred": 0, "ztsnr": 0}, None, "sdxl-v-zsnr"),
    ({"conditioner.embedders.1.model.x": 1, _UNET_IN: (8, 9, 3, 3)}, None, "sdxl-inpainting"),
    ({"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": 4, "model.diffusion_model.img_in.weight":
      (8, 64), "model.diffusion_model.guidance_in.in_layer.weight": (8, 4)}, None, "flux1-dev"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": 4, "img_in.weight": (8, 64)}, None, "flux1-schnell"),
])
def test_a_files_variant_is_told_from_its_keys_shapes_and_a_yaml_beside_it(session_studio, tmp_path, tensors, yaml,
                                                                            variant):
    path = _header_file(tmp_path / "model.safetensors", tensors)
    if yaml is not None:
        path.with_suffix(".yaml").write_text(yaml)  # A1111's convention: the config beside the checkpoint wins
    assert session_studio.store.resolve(str(path)).variant == variant


@pytest.mark.parametrize("tensors, refusal", [
    ({"conditioner.embedders.0.model.x": 1, "model.diffusion_model.label_emb.0.0.weight": (8, 8), _UNET_IN: (8, 4, 3, 3)},
     "is an SDXL refiner, which only finishes an SDXL base's pictures"),
    ({"cond_stage_model.transformer.x": 1, _UNET_IN: (8, 8, 3, 3)}, "SD 1.x model with 8 input channels"),
    ({"cond_stage_model.model.x": 1, _UNET_IN: (8, 4, 3, 3)}, "an SD 2.x file whose prediction type nothing tells"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": 4,
      "double_blocks.0.img_attn.qkv.weight.quant_state.bitsandbytes__nf4": 8}, "is a bitsandbytes NF4/FP4 file"),
    ({"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": 4, "model.diffusion_model.scaled_fp8": 0,
      "model.diffusion_model.img_in.scale_weight": 1}, "is a ComfyUI fp8_scaled file"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": 4, "img_in.weight": (8, 384)}, "is a FLUX.1 Fill (inpainting)"),
])
def test_what_the_studio_cannot_load_is_refused_in_one_line(session_studio, tmp_path, tensors, refusal):
    path = _header_file(tmp_path / "model.safetensors", tensors)
    with pytest.raises(ValueError) as info:
        session_studio.store.resolve(str(path))
    assert refusal in str(info.value) and "\n" not in str(info.value) and "model.safetensors" in str(info.value)


# ---- tiny files in each layout, loaded offline ----------------------------------------------------------------------

@pytest.mark.parametrize("allow_downloads", [False, True])
def test_an_a1111_file_loads_and_generates_with_no_hub(settings, tmp_path, monkeypatch, no_network, allow_downloads):
    """Also without --offline: the configs are the studio's, so nothing asks the hub (a connection would fail)."""
    from studio.context import Studio

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hub-cache"))
    studio = Studio.open(settings.with_(allow_downloads=allow_downloads))
    path = write_sd_file(studio, "builtin:tiny", tmp_path / "sd15-a1111.safetensors")
    builtin = load(studio, "builtin:tiny")
    carry_tiny(monkeypatch, tmp_path, "sd15", builtin)
    ref = studio.store.resolve(str(path))
    assert (ref.family, ref.variant) == (families.get("sd1"), "sd15")
    pipe = load(studio, str(path))
    for name in ("unet", "vae", "text_encoder"):
        theirs = getattr(builtin, name).state_dict()
        assert all(torch.equal(t, theirs[k]) for k, t in getattr(pipe, name).state_dict().items()), name

    def picture(model):
        return np.asarray(generate(studio, GenerationRequest(prompt="a photo of a dog", model=model, seed=3, steps=2,
                                                             width=64, height=64, save=False)).images[0].image)

    np.testing.assert_array_equal(picture(str(path)), picture("builtin:tiny"))


def test_an_sdxl_file_loads_and_one_that_does_not_fit_its_configs_is_refused(studio, tmp_path, monkeypatch):
    """diffusers tells SDXL's two text encoders apart by width; the tiny builtin's are equally wide, so its second
    encoder's projection would stay empty: refused, naming it. A tiny SDXL with distinct widths loads whole."""
    from tests.single_files import tiny_sdxl

    builtin = load(studio, "builtin:tiny-xl")
    carry_tiny(monkeypatch, tmp_path, "sdxl-base", builtin)
    path = write_sd_file(studio, "builtin:tiny-xl", tmp_path / "xl.safetensors")
    with pytest.raises(ValueError, match=r"xl\.safetensors does not fit the sdxl-base configs: its text_encoder_2 "
                                         r"lacks 1 weights \(text_projection\.weight"):
        load(studio, str(path))

    wide = tiny_sdxl(tmp_path / "tiny-xl-wide")
    carry_tiny(monkeypatch, tmp_path, "sdxl-base", wide)
    path = tmp_path / "xl-wide.safetensors"
    save_file(families.get("sdxl").single_file_state(wide), str(path))
    pipe = load(studio, str(path))
    assert families.of(pipe) is families.get("sdxl")
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        theirs = getattr(wide, name).state_dict()
        assert all(torch.equal(t, theirs[k]) for k, t in getattr(pipe, name).state_dict().items()), name


def test_flux_files_as_forge_and_comfyui_keep_them_load_once_each(studio, tmp_path, monkeypatch, no_network):
    """Transformer + clip_l + t5xxl + ae beside it, the all-in-one file, an fp8 transformer and a Q8_0 GGUF one: each
    loads with the carried configs, equal to the builtin (fp8 and Q8_0 within their rounding)."""
    builtin = load(studio, "builtin:tiny-flux")
    carry_tiny(monkeypatch, tmp_path, "flux1-dev", builtin)
    separate = write_flux_files(builtin, tmp_path / "forge")
    aio = write_flux_files(builtin, tmp_path / "comfyui", all_in_one=True)
    fp8 = write_flux_files(builtin, tmp_path / "fp8", transformer_dtype=torch.float8_e4m3fn)
    gguf = _gguf_copy(separate, tmp_path / "gguf" / "flux1-dev-Q8_0.gguf")

    def picture(model):
        return np.asarray(generate(studio, GenerationRequest(prompt="a photo of a dog", model=model, seed=5, steps=2,
                                                             width=64, height=64, save=False)).images[0].image,
                          dtype=np.float64)

    reference = picture("builtin:tiny-flux")
    for path, tolerance in ((separate, 0), (aio, 0), (fp8, 12), (gguf, 3)):
        ref = studio.store.resolve(str(path))
        assert (ref.family, ref.variant) == (families.get("flux"), "flux1-dev"), path
        assert np.abs(picture(str(path)) - reference).max() <= tolerance, path
    pipe = load(studio, str(aio))
    theirs = builtin.text_encoder_2.state_dict()
    assert all(torch.equal(t, theirs[k]) for k, t in pipe.text_encoder_2.state_dict().items())
    assert type(load(studio, str(gguf)).transformer.x_embedder.weight).__name__ == "GGUFParameter"


def _gguf_copy(safetensors_file, out):
    """The BFL-layout transformer as a GGUF file: 2-D weights in Q8_0 (as city96's FLUX GGUFs), the rest F32."""
    import gguf
    from safetensors.torch import load_file

    out.parent.mkdir(parents=True, exist_ok=True)
    for part in ("clip_l", "t5xxl_fp16", "ae"):
        (out.parent / f"{part}.safetensors").write_bytes((safetensors_file.parent / f"{part}.safetensors").read_bytes())
    writer = gguf.GGUFWriter(str(out), "flux")
    for key, tensor in load_file(str(safetensors_file)).items():
        array = tensor.float().numpy()
        if array.ndim == 2 and array.shape[1] % 32 == 0:
            quantized = gguf.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(key, quantized, raw_shape=quantized.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(key, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_a_flux_files_tokenizers_come_before_its_weights(studio, tmp_path, monkeypatch):
    """With the real FLUX.1-dev configs and no T5 vocabulary installed, the load stops at the tokenizer, naming the
    files and where they go, before a weight is read."""
    from studio.models import files, vocabularies

    real = vocabularies.vocab_dir()
    monkeypatch.setattr(vocabularies, "vocab_dir", lambda: tmp_path / "vocab")
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "clip").symlink_to(real / "clip")
    separate = write_flux_files(load(studio, "builtin:tiny-flux"), tmp_path / "forge")
    monkeypatch.setattr(files, "read_tensors", lambda *a, **k: pytest.fail("weights were read"))
    with pytest.raises(ValueError, match=r"^T5 v1\.1's tokenizer \(FLUX\.1's T5-XXL\) is not installed: tokenizer\.json"):
        load(studio, str(separate))


def test_single_files_train_a_lora_offline(studio, tmp_path, monkeypatch, no_network):
    """An A1111 SD file and a FLUX.1 file set train like folders (FLUX.1's staged: its transformer loaded from the
    file after the captions are encoded)."""
    make_dataset(studio.settings, "ds", [astronaut()], ["sks, a photo"])
    sd = load(studio, "builtin:tiny")
    carry_tiny(monkeypatch, tmp_path, "sd15", sd)
    sd_file = write_sd_file(studio, "builtin:tiny", studio.settings.models_dir / "base" / "sd15-a1111.safetensors")
    result = train_in_process(studio, tiny_config(name="sd-file", model=str(sd_file), lr=1e-2))
    # its kohya LoRA loads in stock diffusers on the diffusers-folder form of the same model and changes the picture
    from diffusers import StableDiffusionPipeline

    stock = StableDiffusionPipeline.from_pretrained(str(sd.name_or_path), safety_checker=None)

    def picture():
        return stock("a photo of sks", num_inference_steps=2, height=64, width=64, output_type="np",
                     generator=torch.Generator().manual_seed(0)).images[0]

    before = picture()
    stock.load_lora_weights(str(result.files[0]))
    assert np.abs(picture() - before).max() > 0.01

    flux = load(studio, "builtin:tiny-flux")
    carry_tiny(monkeypatch, tmp_path, "flux1-dev", flux)
    flux_file = write_flux_files(flux, studio.settings.models_dir / "base")
    assert families.get("flux").staged_training(tiny_config(model=str(flux_file)))
    result = train_in_process(studio, tiny_config(name="flux-file", model=str(flux_file), rank=4, alpha=4.0))
    assert result.files and result.last_loss == result.last_loss


# ---- BFL's layout ---------------------------------------------------------------------------------------------------

def test_bfls_layout_fuses_and_swaps_as_flux_checkpoints_do():
    """The facts of BFL's layout, checked on a tiny transformer: q, k, v stacked by rows into qkv (txt: the add_
    projections), single blocks' linear1 = q | k | v | MLP input, RMSNorms as `.scale`, the final modulation's
    halves in (shift, scale) order where diffusers has (scale, shift); and back again."""
    from diffusers import FluxTransformer2DModel

    from studio.models.families.flux1_layout import bfl_to_diffusers, count_blocks, diffusers_to_bfl

    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=2, num_single_layers=3,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                   pooled_projection_dim=32, axes_dims_rope=(4, 6, 6), guidance_embeds=True)
    ours = model.state_dict()
    bfl = diffusers_to_bfl(ours)
    block = "transformer_blocks.1.attn."
    assert torch.equal(bfl["double_blocks.1.img_attn.qkv.weight"],
                       torch.cat([ours[block + p + ".weight"] for p in ("to_q", "to_k", "to_v")]))
    assert torch.equal(bfl["double_blocks.1.txt_attn.qkv.bias"],
                       torch.cat([ours[block + p + ".bias"] for p in ("add_q_proj", "add_k_proj", "add_v_proj")]))
    assert torch.equal(bfl["double_blocks.1.txt_attn.norm.key_norm.scale"], ours[block + "norm_added_k.weight"])
    single = "single_transformer_blocks.2."
    assert torch.equal(bfl["single_blocks.2.linear1.weight"], torch.cat(
        [ours[single + p + ".weight"] for p in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")]))
    scale, shift = ours["norm_out.linear.weight"].chunk(2)
    assert torch.equal(bfl["final_layer.adaLN_modulation.1.weight"], torch.cat([shift, scale]))
    assert torch.equal(bfl["guidance_in.in_layer.weight"], ours["time_text_embed.guidance_embedder.linear_1.weight"])
    assert count_blocks(bfl) == (2, 3) and len(bfl) < len(ours)
    back = bfl_to_diffusers(bfl, inner=32)
    assert back.keys() == ours.keys() and all(torch.equal(back[k], ours[k]) for k in ours)


def test_bfls_layout_reads_as_diffusers_own_converter_does_at_real_width():
    """At FLUX.1's width (diffusers' converter assumes 3072), one double and one single block in bf16."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from studio.models.families.flux1_layout import bfl_to_diffusers, diffusers_to_bfl

    torch.manual_seed(0)
    with torch.device("meta"):
        shapes = FluxTransformer2DModel(num_layers=1, num_single_layers=1, guidance_embeds=True).state_dict()
    state = {k: torch.randn(v.shape, dtype=torch.bfloat16) for k, v in shapes.items()}
    bfl = diffusers_to_bfl(state)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    ours = bfl_to_diffusers(bfl, inner=3072)
    assert theirs.keys() == ours.keys() == state.keys()
    assert all(torch.equal(theirs[k], ours[k]) and torch.equal(ours[k], state[k]) for k in state)
