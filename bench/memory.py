"""Memory readings the benchmarks share, on either device: CUDA's allocator, or the process's resident set on the
CPU (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM (peak RSS) starts again from the current RSS


def peak(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return status_bytes("VmHWM:")


def held(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.memory_allocated()
    return status_bytes("VmRSS:")


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")
