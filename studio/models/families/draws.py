"""The random draws of a training step: made on the CPU from one seeded generator, for the whole batch a
multi-process run shares (each process keeping its rows), so a seed gives the same draws on any device and any
split of the batch."""

from __future__ import annotations


class BatchDraws:
    """The random draws of one micro-batch, made on the CPU from one generator (a seed gives the same draws on any
    device). Every draw is made for the whole batch of `size` samples and this process keeps its `rows`, so a batch
    split across the processes of a multi-GPU run draws for each picture what one process holding the whole batch
    would, and each process's pictures get noise of their own."""

    def __init__(self, generator, size: int, rows: list[int]):
        self.generator, self.size, self.rows = generator, size, list(rows)

    @classmethod
    def of(cls, generator, b: int) -> "BatchDraws":
        """`generator` as the draws of a batch of `b` held whole (a BatchDraws is itself)."""
        return generator if isinstance(generator, BatchDraws) else cls(generator, b, list(range(b)))

    def _kept(self, full):
        return full if self.rows == list(range(self.size)) else full[self.rows]

    def randn(self, shape):
        import torch

        return self._kept(torch.randn((self.size, *shape[1:]), generator=self.generator))

    def rand(self, b: int):
        import torch

        return self._kept(torch.rand(self.size, generator=self.generator))

    def randint(self, high: int, b: int):
        import torch

        return self._kept(torch.randint(0, high, (self.size,), generator=self.generator))


def noise_like(latents, generator, offset: float):
    """Gaussian noise shaped as `latents`, drawn from `generator` (a torch.Generator, or a BatchDraws); `offset`: a
    per-channel shift that lets the model move a picture's overall brightness."""
    b, c = latents.shape[:2]
    draws = BatchDraws.of(generator, b)
    noise = draws.randn(latents.shape)
    if offset:
        noise = noise + offset * draws.randn((b, c, 1, 1))
    return noise.to(latents.device, latents.dtype)
