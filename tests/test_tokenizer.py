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
