"""The small MLP policy whose weights the hypernetwork generates, run for a batch of weight sets.

Every sample in a batch has its *own* weights, so each layer is one batched matmul
(``baddbmm``) over ``[B, out, in]`` weight views of the flat ``[B, n_params]`` vector the
hypernetwork returns; no Python loop over samples.  The flat layout is hypnettorch's
``target_shapes`` order: ``W0, b0, W1, b1, ...`` with ``W`` shaped ``[out, in]``.

Acting between re-samples runs on *host copies* of the weights (:class:`HostMLP`): torch's
per-op dispatch costs more than the whole 39x256x256x4 MLP in numpy (~60 vs ~10 us per
step), and with CUDA the weights cross to the host once per re-sample, not once per step.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: up to this many environments numpy's batched matmul beats torch's (multi-threaded) baddbmm.
_NUMPY_MAX_BATCH = 8


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


class HostMLP:
    """ReLU MLP weights as contiguous float32 numpy arrays, ``W^T [B, in, out]`` and ``b [B, out]``
    per layer: ``B`` policies (one per environment), or ``B = 1`` shared by every row.

    With ``in_norm`` / ``out_norm`` (``(mean, std)`` of the inputs and outputs) the
    normalisation is folded into the first and last layers, so raw observations go in and raw
    actions come out: two fewer numpy calls per step, same function up to float rounding.
    """

    def __init__(
        self,
        layers: list[tuple[np.ndarray, np.ndarray]],
        in_norm: tuple[np.ndarray, np.ndarray] | None = None,
        out_norm: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.in_norm, self.out_norm = in_norm, out_norm
        self.layers = layers
        # One policy: plain 2-D views (they see set_rows' updates), indexed once here, not per step.
        self._single = [(wt[0], b[0]) for wt, b in layers] if layers[0][0].shape[0] == 1 else None

    @classmethod
    def zeros(cls, sizes: Sequence[int], num_policies: int, **norms: tuple[np.ndarray, np.ndarray] | None) -> HostMLP:
        layers = [(np.zeros((num_policies, i, o), np.float32), np.zeros((num_policies, o), np.float32)) for i, o in zip(sizes[:-1], sizes[1:])]
        return cls(layers, **norms)

    @classmethod
    def from_linears(cls, linears: Sequence[torch.nn.Linear], **norms: tuple[np.ndarray, np.ndarray] | None) -> HostMLP:
        """One policy shared by every row, from ``nn.Linear`` layers (e.g. the BC baseline's MLP)."""
        host = cls.zeros([linears[0].in_features, *(m.out_features for m in linears)], 1, **norms)
        host.set_rows(np.array([0]), [(m.weight[None], m.bias[None]) for m in linears])
        return host

    def set_rows(self, rows: np.ndarray, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Overwrite policies ``rows`` with ``(W [k, out, in], b [k, out])`` per layer (e.g. new samples)."""
        new = [(_host(w.transpose(1, 2)), _host(b)) for w, b in layers]
        if self.in_norm is not None:  # W (x - m) / s + b  ==  (W / s) x + (b - (W / s) m)
            mean, std = self.in_norm
            wt, b = new[0]
            wt /= std[:, None]
            new[0] = (wt, b - mean @ wt)
        if self.out_norm is not None:  # (W h + b) * S + M
            mean, std = self.out_norm
            wt, b = new[-1]
            new[-1] = (wt * std, b * std + mean)
        for (wt, b), (wt_new, b_new) in zip(self.layers, new):
            wt[rows], b[rows] = wt_new, b_new

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Outputs ``[n, out]`` for ``obs [n, in]``: row ``i`` through policy ``i`` (or the shared one)."""
        last = len(self.layers) - 1
        if self._single is not None:  # one policy for every row: plain matmuls
            h = obs
            for i, (wt, b) in enumerate(self._single):
                h = h @ wt + b
                if i < last:
                    np.maximum(h, 0, out=h)
            return h
        if len(obs) > _NUMPY_MAX_BATCH:
            with torch.inference_mode():  # many policies: torch's threaded baddbmm, zero-copy views
                h = torch.from_numpy(obs)[:, None, :]
                for i, (wt, b) in enumerate(self.layers):
                    h = torch.baddbmm(torch.from_numpy(b)[:, None, :], h, torch.from_numpy(wt))
                    h = h.relu_() if i < last else h
                return h[:, 0].numpy()
        h = obs
        for i, (wt, b) in enumerate(self.layers):
            h = np.matmul(h[:, None, :], wt)[:, 0] + b
            if i < last:
                np.maximum(h, 0, out=h)
        return h


def _host(t: torch.Tensor) -> np.ndarray:
    return np.array(t.detach().to("cpu", torch.float32).numpy(), dtype=np.float32, order="C")  # a fresh, contiguous copy
