"""The VAE decoder: a hypnettorch ``HMLP`` hypernetwork mapping a latent ``z`` to policy weights."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from hypnettorch.hnets import HMLP
from torch import nn

from lwd_gym.nn.generated_policy import GeneratedMLP

#: Hidden layers of the hypernetwork per size preset (the paper's xs/s/m/l decoders).
HYPERNET_PRESETS: dict[str, tuple[int, ...]] = {
    "xs": (50, 50),
    "s": (100, 100),
    "m": (200, 200),
    "l": (400, 400),
}


class HypernetDecoder(nn.Module):
    """``z [B, latent_dim] -> flat weights [B, policy.num_params]`` of a :class:`GeneratedMLP`.

    :param latent_dim: size of the latent.
    :param policy: layout of the generated policy.
    :param size: a key of :data:`HYPERNET_PRESETS`, or explicit hidden widths.
    """

    def __init__(self, latent_dim: int, policy: GeneratedMLP, size: str | Sequence[int] = "s") -> None:
        super().__init__()
        if isinstance(size, str):
            if size not in HYPERNET_PRESETS:
                raise ValueError(f"unknown hypernet_size {size!r}; choose one of {sorted(HYPERNET_PRESETS)} or a list of widths")
            layers = HYPERNET_PRESETS[size]
        else:
            layers = tuple(int(w) for w in size)
        self.policy = policy
        # cond_in_size=0 / num_cond_embs=0: without them HMLP adds an internal task embedding
        # and then demands a cond_id on every call.
        self.hnet = HMLP(
            policy.target_shapes,
            uncond_in_size=latent_dim,
            cond_in_size=0,
            layers=list(layers),
            num_cond_embs=0,
            verbose=False,
        )
        self._rescale_output_layer(latent_dim)

    @torch.no_grad()
    def _rescale_output_layer(self, latent_dim: int) -> None:
        # HMLP's default init generates weights with std ~0.13 in every layer, ~4x what
        # nn.Linear would use for a 256-wide layer, which makes the first generated policies
        # blow up activations.  Rescale the output rows of each target tensor so that, for
        # z ~ N(0, I), generated tensors have nn.Linear's default std 1/sqrt(3 fan_in).
        w_out, b_out = self.hnet.layer_weight_tensors[-1], self.hnet.layer_bias_vectors[-1]
        probe = self.hnet.forward(uncond_input=torch.randn(256, latent_dim), ret_format="flattened")
        offset = 0
        for fan_in, fan_out in zip(self.policy.sizes[:-1], self.policy.sizes[1:]):
            for n in (fan_out * fan_in, fan_out):  # the layer's weight block, then its bias
                block = slice(offset, offset + n)
                scale = 1.0 / math.sqrt(3.0 * fan_in) / probe[:, block].std().clamp_min(1e-8)
                w_out[block] *= scale
                b_out[block] *= scale
                offset += n

    @property
    def num_params(self) -> int:
        """Trainable parameters of the hypernetwork itself."""
        return self.hnet.num_params

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.hnet.forward(uncond_input=z, ret_format="flattened")
