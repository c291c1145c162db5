"""Writes a CLIP byte-level BPE tokenizer (vocab.json + merges.txt) for builtin models, so nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def _bytes_to_unicode() -> dict[int, str]:
    # The same reversible byte -> printable character table CLIP and GPT-2 use, so any text round-trips.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's byte-pair encoding of one word: merge the lowest-ranked adjacent pair, everywhere, until none is left."""
    pieces = list(symbols)
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b), len(ranks) + 1), a, b) for a, b in zip(pieces, pieces[1:])]
        rank, a, b = min(pairs)
        if rank > len(ranks):
            break
        merged, i = [], 0
        while i < len(pieces):
            if i + 1 < len(pieces) and pieces[i] == a and pieces[i + 1] == b:
                merged.append(a + b)
                i += 2
            else:
                merged.append(pieces[i])
                i += 1
        pieces = merged
    return pieces


def write_clip_tokenizer(folder: Path, words: list[str] = ()) -> int:
    """Write vocab.json, merges.txt and tokenizer_config.json into `folder`; return the vocabulary size.

    Every byte is a token (with and without the end-of-word mark), so any prompt can be encoded; each word in
    `words` gets merges that make it one token, which keeps prompts short for the 77-token window.
    """
    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    vocab: list[str] = byte_chars + [c + "</w>" for c in byte_chars]
    merges: list[str] = []
    known = set(vocab)
    ranks: dict[tuple[str, str], int] = {}
    table = _bytes_to_unicode()
    for word in dict.fromkeys(w.lower() for w in words if w):
        symbols = [table[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        # Merges are applied by rank, so another word's earlier merges can split this one; add merges after all
        # existing ones until the word comes out whole. Words done before are unaffected: their merges rank lower.
        while len(pieces := _bpe(symbols, ranks)) > 1:
            # No adjacent pair of `pieces` has a merge (BPE stopped), so the first one below is new: progress.
            current = pieces[0]
            for nxt in pieces[1:]:
                if (current, nxt) not in ranks:
                    ranks[(current, nxt)] = len(ranks)
                    merges.append(f"{current} {nxt}")
                    if current + nxt not in known:
                        vocab.append(current + nxt)
                        known.add(current + nxt)
                current += nxt
    vocab += list(SPECIAL_TOKENS)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": SPECIAL_TOKENS[0],
        "eos_token": SPECIAL_TOKENS[1],
        "unk_token": SPECIAL_TOKENS[1],
        "pad_token": SPECIAL_TOKENS[1],
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return len(vocab)


def write_t5_tokenizer(folder: Path, words: list[str] = ()) -> int:
    """Write a T5 tokenizer (a Unigram model: tokenizer.json + tokenizer_config.json) into `folder`, for builtin FLUX
    models; return its size. <pad>=0, </s>=1, <unk>=2 as T5's; each word in `words` is one piece ("▁word"), and every
    printable ASCII character is a piece too, so any English prompt encodes without <unk>."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -1.0) for w in dict.fromkeys(w.lower() for w in words if w)]
    vocab += [(chr(c), -10.0) for c in range(33, 127)]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def clip_bpe_tokenizer(merges_gz: Path, **settings):
    """CLIP's real tokenizer (49,408 tokens) built from the byte-pair merges OpenAI's CLIP and open_clip ship
    (bpe_simple_vocab_16e6.txt.gz) as their tokenizers build it: the 256 bytes, the same with the end-of-word mark,
    one token per merge of the first 48,894, and the two special tokens. `settings`: the tokenizer_config.json's
    (pad token, length)."""
    import gzip

    from transformers import CLIPTokenizer

    lines = gzip.open(merges_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]  # line 0 names the file's version
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + list(SPECIAL_TOKENS)
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, **settings)
