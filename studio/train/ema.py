"""An exponential moving average of a whole model's trained weights (finetune's EMA, as diffusers' EMAModel in
train_text_to_image.py): validation and the export use the average, the steps train the live weights.

The decay warms up as EMAModel's does, min(decay, (1 + n) / (10 + n)) at update n (the first update copies), so a
short run's average is not stuck at the base. Kept beside the weights, or on the CPU (a model's copy less on the GPU;
each step then copies the weights over).
"""

from __future__ import annotations

from contextlib import contextmanager


class EmaWeights:
    def __init__(self, params: dict, decay: float, device: str = ""):
        """`params`: name -> trained parameter; `device` "" keeps each average beside its parameter."""
        self.params, self.decay, self.kept_on = params, decay, device
        self.shadow = {k: p.detach().to(device or p.device, copy=True) for k, p in params.items()}
        self.updates = 0

    def cost(self) -> str:
        """What an average kept on the CPU costs, for the run log: the bytes each step copies over ("" when the
        average lies beside the weights)."""
        if not self.kept_on:
            return ""
        nbytes = sum(p.numel() * p.element_size() for p in self.params.values())
        where = ", ".join(sorted({str(p.device) for p in self.params.values()}))
        return (f"EMA on the CPU: each step copies the {nbytes / 1e9:.2f} GB of trained weights from {where} to the "
                f"CPU and updates the average there (a copy of them less on the GPU)")

    def current_decay(self) -> float:
        n = self.updates - 1
        return 0.0 if n <= 0 else min(self.decay, (1 + n) / (10 + n))

    def update(self) -> None:
        """After an optimizer step: shadow += (1 - decay) * (param - shadow)."""
        import torch

        self.updates += 1
        weight = 1.0 - self.current_decay()
        with torch.no_grad():
            shadows = list(self.shadow.values())
            live = [p.detach().to(s.device, s.dtype) for p, s in zip(self.params.values(), shadows)]
            torch._foreach_lerp_(shadows, live, weight)

    @contextmanager
    def swapped_in(self):
        """The average in the model's parameters for the duration (validation, export); the live weights after."""
        import torch

        kept = {}
        with torch.no_grad():
            for k, p in self.params.items():
                kept[k] = p.detach().to(self.shadow[k].device, copy=True)
                p.copy_(self.shadow[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(kept[k])

    def state(self, prefix: str = "ema.") -> dict:
        """The averages (on the CPU when saved) and the update count, as tensors for a checkpoint."""
        import torch

        out = {prefix + k: v for k, v in self.shadow.items()}
        out[prefix + "__updates__"] = torch.tensor(self.updates, dtype=torch.int64)
        return out

    def load_state(self, state: dict, prefix: str = "ema.") -> None:
        import torch

        with torch.no_grad():
            for k, v in self.shadow.items():
                v.copy_(state[prefix + k])
        self.updates = int(state[prefix + "__updates__"])
