"""What a device offers a training run, told without torch (no CUDA context in the studio's process): a CUDA GPU's
memory and whether it computes in bf16 (compute capability 8.0 and later), from nvidia-smi. The CPU has no device
memory to plan against; `planned_gpu` stands for a GPU of a given size (the command line's --vram-gb)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from studio import claims


@dataclass(frozen=True)
class DeviceFacts:
    key: str  # "cpu", "cuda:0", "mps"
    memory_gb: float | None  # the card's memory in GiB; None: the CPU, or a GPU nvidia-smi did not describe
    bf16: bool = False
    name: str = ""  # what the user calls it: "NVIDIA GeForce RTX 4090", "a GPU of 16 GB", "the CPU"

    @property
    def kind(self) -> str:
        return self.key.split(":")[0]


def planned_gpu(memory_gb: float) -> DeviceFacts:
    """A CUDA GPU of `memory_gb` GB that computes in bf16, for a plan made away from it."""
    if not 0 < memory_gb <= 4096:
        raise ValueError(f"`vram_gb` must be a GPU's memory in GB (above 0) but is {memory_gb}")
    return DeviceFacts("cuda", float(memory_gb), True, f"a GPU of {memory_gb:g} GB")


def device_facts(device: str) -> DeviceFacts:
    """The facts of `device` (auto, cpu, mps, cuda, cuda:N) on this machine."""
    key = claims.device_key(device)
    if not key.startswith("cuda"):
        return DeviceFacts(key, None, False, "the CPU" if key == "cpu" else key)
    index = int(key.split(":")[1]) if ":" in key else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    physical = visible[index] if index < len(visible) else str(index)
    found = _nvidia_smi(physical)
    if found is None:
        return DeviceFacts(key, None, False, f"GPU {key}")
    name, mib, capability = found
    return DeviceFacts(key, mib / 1024, capability >= 8.0, name)


@functools.lru_cache(maxsize=None)
def _nvidia_smi(gpu: str) -> tuple[str, float, float] | None:
    """(name, memory in MiB, compute capability) of GPU `gpu` (an index or a UUID), or None when nvidia-smi is not
    there or does not answer. Asked once per process: a card's name and memory do not change, and the Train tab
    plans again at every change of a setting."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        done = subprocess.run([tool, "-i", gpu, "--query-gpu=name,memory.total,compute_cap",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    answered = done.returncode == 0 and done.stdout.strip()
    fields = [f.strip() for f in done.stdout.strip().splitlines()[0].split(",")] if answered else []
    try:
        return fields[0], float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        return None
