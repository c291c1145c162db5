"""The tree's own rules, checked on its files: what differs between model families lives in their modules
(studio/models/families/), and no merge left its conflict markers behind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILY_MODULES = ROOT / "studio" / "models" / "families"

# What deciding by family, or probing a pipeline for a family's parts, looks like in code: in the code itself (string
# literals blanked, so a file layout's key names such as "...embedders.0.transformer." do not count)...
IN_CODE = re.compile("|".join([
    r"\bFamily\.(SD1|SD2|SDXL|FLUX)\b",  # the old enum
    r"\.flow\b",  # "flow matching" standing for FLUX
    r"\bis_flux\w*|family_of_pipeline",
    r"\btext_encoder_2\b",  # SDXL's and FLUX's second encoder by name
    r"\.(unet|transformer)\b",  # a pipeline's denoiser by attribute
    r"(==|!=|\bis\b|\bin\b)\s*families\.get\(|families\.get\([^)]*\)\s*(==|!=|\bis\b)",
]))
# ...and with the strings that name families or their parts.
WITH_STRINGS = re.compile("|".join([
    r"(hasattr|getattr)\([^,]+,\s*[\"'](unet|transformer|text_encoder_2|tokenizer_2)[\"']",
    r"(==|!=)\s*[\"'](sd1|sd2|sdxl|flux)[\"']|[\"'](sd1|sd2|sdxl|flux)[\"']\s*(==|!=)",  # family names compared
    r"\.label\s*(==|!=)\s*[\"']",
]))
_STRINGS = re.compile(r"\"[^\"]*\"|'[^']*'")


def decides_by_family(line: str) -> bool:
    code = line.split("#", 1)[0]
    return bool(IN_CODE.search(_STRINGS.sub('""', code)) or WITH_STRINGS.search(code))


def _python_outside_families() -> list[Path]:
    return [p for p in (ROOT / "studio").rglob("*.py") if FAMILY_MODULES not in p.parents]


def test_family_decisions_live_in_the_family_modules():
    found = []
    for path in _python_outside_families():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if decides_by_family(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == [], "decided by family outside studio/models/families/:\n" + "\n".join(found)


def test_the_pattern_sees_what_it_is_for():
    """The check above must catch the forms it names (so an empty list means something)."""
    for line in ("if ref.family == Family.FLUX:", "if parts.spec.flow:", "pipe.unet.config.in_channels",
                 "getattr(pipe, 'text_encoder_2', None)", "if family.name == 'sdxl':",
                 "flux = ref.family is families.get('flux')", "if family.label == 'FLUX.1':"):
        assert decides_by_family(line), line
    for line in ('state["conditioner.embedders.0.transformer." + k]', "family.denoiser(pipe)",
                 "families.get(meta['studio.family'])"):
        assert not decides_by_family(line), line


def test_no_conflict_markers_anywhere():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    marked = []
    for name in filter(None, files.decode().split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # a picture or weights
        for number, line in enumerate(text.splitlines(), 1):
            if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line in ("<<<<<<<", ">>>>>>>"):
                marked.append(f"{name}:{number}")
    assert marked == [], "merge-conflict markers committed: " + ", ".join(marked)
