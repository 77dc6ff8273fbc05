"""Per-dimension standardisation of observations, actions and latents."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch


@dataclass
class Normalizer:
    """``(x - mean) / std`` per dimension; dimensions that never vary (relative to their
    magnitude) keep ``std = 1``.

    ``fit(x)`` standardises; ``fit(x, mode="minmax")`` picks ``mean``/``std`` as the centre and
    half-range so the data map to ``[-1, 1]`` (what a DDPM with sample clipping expects).

    Works on numpy arrays and torch tensors (last axis = features).  Serialised as plain
    lists in a checkpoint's JSON: float32 values round-trip exactly through ``repr``.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray | torch.Tensor, mode: str = "standard") -> Normalizer:
        """Statistics over every axis but the last; ``mode`` is ``"standard"`` or ``"minmax"``."""
        x = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        x = x.reshape(-1, x.shape[-1]).astype(np.float64)
        if mode == "standard":
            mean, std = x.mean(axis=0), x.std(axis=0)
        elif mode == "minmax":
            low, high = x.min(axis=0), x.max(axis=0)
            mean, std = (high + low) / 2, (high - low) / 2
        else:
            raise ValueError(f"unknown normalizer mode {mode!r}; use 'standard' or 'minmax'")
        # A constant feature carries no information; dividing by ~0 would turn any test-time
        # deviation into a huge input.  "Constant" is relative to the feature's own magnitude
        # (float32 rounding noise), so data on a 1e-7 scale is still standardised.
        scale = np.abs(x).max(axis=0)
        std[(std <= 1e-6 * scale) | (std == 0)] = 1.0
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def _stats(self, like):
        if isinstance(like, torch.Tensor):
            return (torch.as_tensor(self.mean, device=like.device, dtype=like.dtype), torch.as_tensor(self.std, device=like.device, dtype=like.dtype))
        return self.mean, self.std

    def normalize(self, x):
        mean, std = self._stats(x)
        return (x - mean) / std

    @cached_property
    def finite_bound(self) -> float:
        """A magnitude up to which every input normalises to finite float32 values:
        ``|x| <= finite_bound`` gives ``|x - mean| <= f32max / 2 * min(std, 1)``, so neither the
        subtraction nor the division overflows.  Lets a caller skip the full check on ordinary
        inputs with one ``abs().max()``; computed once per instance (statistics are not mutated)."""
        f32max = float(np.finfo(np.float32).max)
        std = np.minimum(self.std.astype(np.float64), 1.0)
        return float(np.min(0.5 * f32max * std - np.abs(self.mean.astype(np.float64))))

    def unnormalize(self, x):
        mean, std = self._stats(x)
        return x * std + mean

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(np.asarray(d["mean"], dtype=np.float32), np.asarray(d["std"], dtype=np.float32))
