"""Block swapping (kohya's blocks_to_swap): the frozen weights of a transformer's last blocks stay in CPU memory and
are copied to the GPU as each of those blocks runs, then let go; what trains in them (a LoRA's layers) stays on the
GPU with the rest of what trains.

Two forward hooks per block do it all. A block is brought in before its forward and let go after it. Its backward
needs the weights again: with gradient checkpointing (RunConfig requires it) the block's forward runs again inside the
backward pass, through the same hooks, and autograd holds the copies that recomputation made until the block's
backward is done; nothing else keeps them. A block let go holds meta tensors (no data at all), so a block that ran
without being brought in would fail loudly rather than compute on stale weights. On the CPU the holding place and the
device are the same memory, but the blocks are let go and brought in all the same: the tests run this very path.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Held:
    module: object  # the block's submodule the tensor belongs to
    name: str  # its name there
    kind: str  # "_parameters" or "_buffers"
    tensor: object  # the tensor in CPU memory (pinned when the device is a GPU)


class BlockSwap:
    """Keeps `blocks` (modules of a denoiser already on `device` but for these, which are on the CPU) off the device
    but while they run. `brought_in` counts the blocks copied in so far."""

    def __init__(self, blocks: list, device: str):
        import torch

        self.device = torch.device(device)
        self.blocks = list(blocks)
        self.brought_in = 0
        self.held: dict[int, list[_Held]] = {}
        self.handles = []
        pin = self.device.type == "cuda"
        for block in self.blocks:
            entries = []
            for module in block.modules():
                for kind in ("_parameters", "_buffers"):
                    for name, tensor in list(getattr(module, kind).items()):
                        if tensor is None:
                            continue
                        if kind == "_parameters" and tensor.requires_grad:
                            tensor.data = tensor.data.to(self.device)  # trained: lives on the device, never swapped
                            continue
                        kept = tensor.detach().to("cpu")
                        if pin and type(kept) is torch.Tensor:  # (a quantized tensor subclass is kept as it is)
                            kept = kept.pin_memory()
                        entries.append(_Held(module, name, kind, kept))
            self.held[id(block)] = entries
            self._let_go(block)
            self.handles.append(block.register_forward_pre_hook(self._before))
            self.handles.append(block.register_forward_hook(self._after))

    @property
    def bytes_held(self) -> int:
        """Bytes of frozen weights kept in CPU memory (those a quantized tensor holds included)."""
        from studio.models.sizes import tensor_bytes

        return sum(tensor_bytes(h.tensor) for entries in self.held.values() for h in entries)

    def _before(self, block, args) -> None:
        self._bring_in(block)

    def _after(self, block, args, output) -> None:
        self._let_go(block)

    def _bring_in(self, block) -> None:
        for h in self.held[id(block)]:
            self._set(h, h.tensor.to(self.device, non_blocking=True))
        self.brought_in += 1

    def _let_go(self, block) -> None:
        import torch

        for h in self.held[id(block)]:
            self._set(h, torch.empty(h.tensor.shape, dtype=h.tensor.dtype, device="meta"))

    @staticmethod
    def _set(h: _Held, tensor) -> None:
        """A new tensor in the module's slot (never written into the old one: autograd may still hold that)."""
        import torch

        if h.kind == "_parameters":
            tensor = torch.nn.Parameter(tensor, requires_grad=False)
        getattr(h.module, h.kind)[h.name] = tensor

    def remove(self) -> None:
        """Bring every block in for good and take the hooks off (a module used after the run ends)."""
        for handle in self.handles:
            handle.remove()
        for block in self.blocks:
            self._bring_in(block)
        self.handles = []
