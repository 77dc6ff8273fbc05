"""The small MLP policy whose weights the hypernetwork generates, run for a batch of weight sets.

Every sample in a batch has its *own* weights, so each layer is one batched matmul
(``baddbmm``) over ``[B, out, in]`` weight views of the flat ``[B, n_params]`` vector the
hypernetwork returns; no Python loop over samples.  The flat layout is hypnettorch's
``target_shapes`` order: ``W0, b0, W1, b1, ...`` with ``W`` shaped ``[out, in]``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


class GeneratedMLP:
    """Layout and batched forward of an ``obs -> hidden... -> action`` ReLU MLP with external weights.

    :param in_dim: observation (state) size.
    :param hidden: hidden layer widths, e.g. ``(256, 256)``.
    :param out_dim: action size.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int) -> None:
        self.sizes = [int(in_dim), *map(int, hidden), int(out_dim)]
        self.target_shapes: list[list[int]] = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.target_shapes += [[fan_out, fan_in], [fan_out]]
        self.num_params = sum(int(torch.Size(s).numel()) for s in self.target_shapes)

    def layers(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Split ``[B, n_params]`` into per-layer ``(W [B, out, in], b [B, out])`` views (no copy)."""
        if flat.ndim != 2 or flat.shape[1] != self.num_params:
            raise ValueError(f"expected generated weights of shape [B, {self.num_params}], got {tuple(flat.shape)}")
        out, offset = [], 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            w = flat[:, offset : offset + fan_out * fan_in].view(-1, fan_out, fan_in)
            offset += fan_out * fan_in
            b = flat[:, offset : offset + fan_out]
            offset += fan_out
            out.append((w, b))
        return out

    def __call__(self, flat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Actions of ``B`` generated policies: ``obs`` is ``[B, T, in]`` (or ``[B, in]``), weights ``[B, n_params]``."""
        squeeze = obs.ndim == 2
        h = obs.unsqueeze(1) if squeeze else obs
        layers = self.layers(flat)
        for i, (w, b) in enumerate(layers):
            # h @ W^T + b for every sample's own W, in one kernel.
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h.squeeze(1) if squeeze else h
