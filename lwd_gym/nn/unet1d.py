"""Diffusion-Policy-style ``ConditionalUnet1D``: the default denoiser of every diffusion agent (the other: ``nn.transformer``).

Conv1d residual blocks with GroupNorm + Mish; each block is FiLM-modulated by
``[sinusoidal timestep embedding, global condition]``.  diffusers' ``UNet1DModel`` has no
global-condition input, which is why this block is written here (after Chi et al., 2023).
Inputs are channels-first ``[B, C, L]``; ``L`` must be divisible by ``2 ** (len(down_dims) - 1)``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

#: ``(diffusion_step_embed_dim, down_dims)`` per size (Diffusion Policy's sizes, paper Table 3).
UNET_PRESETS: dict[str, tuple[int, tuple[int, ...]]] = {
    "xs": (64, (16, 32, 64)),
    "s": (256, (32, 64, 128)),
    "m": (256, (128, 256, 256)),
    "l": (256, (256, 512, 1024)),
    "xl": (512, (512, 1024, 2048)),
}


class SinusoidalPosEmb(nn.Module):
    """Transformer-style sinusoidal embedding of the (integer) diffusion timestep."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000.0) / (half - 1)))
        args = t.float()[:, None] * freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int = 8) -> None:
        super().__init__(nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2), nn.GroupNorm(n_groups, out_ch), nn.Mish())


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks; the condition sets a per-channel scale and bias (FiLM) between them."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int = 5, n_groups: int = 8) -> None:
        super().__init__()
        self.block1 = Conv1dBlock(in_ch, out_ch, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        out = self.block1(x) * scale + bias
        return self.block2(out) + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """Predicts the noise in ``sample [B, C, L]`` at ``timestep`` given ``global_cond [B, G]``.

    :param input_dim: channels ``C`` of the sample.
    :param global_cond_dim: size of the global condition (0: unconditional).
    :param size: a key of :data:`UNET_PRESETS`; ``down_dims`` / ``step_embed_dim`` override it.
    :param kernel_size: temporal kernel of every conv.
    """

    def __init__(
        self,
        input_dim: int,
        global_cond_dim: int = 0,
        size: str = "s",
        down_dims: Sequence[int] | None = None,
        step_embed_dim: int | None = None,
        kernel_size: int = 5,
        n_groups: int = 8,
    ) -> None:
        super().__init__()
        if size not in UNET_PRESETS:
            raise ValueError(f"unknown diffusion size {size!r}; choose one of {sorted(UNET_PRESETS)}")
        preset_dsed, preset_dims = UNET_PRESETS[size]
        dsed = step_embed_dim or preset_dsed
        dims = [input_dim, *(down_dims or preset_dims)]
        self.global_cond_dim = global_cond_dim
        self.num_downsamples = len(dims) - 2
        self.step_encoder = nn.Sequential(SinusoidalPosEmb(dsed), nn.Linear(dsed, 4 * dsed), nn.Mish(), nn.Linear(4 * dsed, dsed))
        cond_dim = dsed + global_cond_dim

        def res(i: int, o: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(i, o, cond_dim, kernel_size, n_groups)

        in_out = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            sampler = nn.Identity() if last else nn.Conv1d(d_out, d_out, 3, stride=2, padding=1)
            self.down.append(nn.ModuleList([res(d_in, d_out), res(d_out, d_out), sampler]))
        self.mid = nn.ModuleList([res(dims[-1], dims[-1]), res(dims[-1], dims[-1])])
        self.up = nn.ModuleList()
        for d_in, d_out in reversed(in_out[1:]):  # every up level undoes one downsample
            upsample = nn.ConvTranspose1d(d_in, d_in, 4, stride=2, padding=1)
            self.up.append(nn.ModuleList([res(2 * d_out, d_in), res(d_in, d_in), upsample]))
        self.final = nn.Sequential(Conv1dBlock(dims[1], dims[1], kernel_size, n_groups), nn.Conv1d(dims[1], input_dim, 1))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, global_cond: torch.Tensor | None = None) -> torch.Tensor:
        if sample.shape[-1] % (2**self.num_downsamples):
            raise ValueError(f"sequence length {sample.shape[-1]} must be divisible by {2 ** self.num_downsamples}")
        t = torch.as_tensor(timestep, device=sample.device).expand(sample.shape[0])
        cond = self.step_encoder(t)
        if self.global_cond_dim:
            if global_cond is None or global_cond.shape[-1] != self.global_cond_dim:
                raise ValueError(f"expected a global condition of size {self.global_cond_dim}")
            cond = torch.cat([cond, global_cond], dim=-1)
        x, skips = sample, []
        for block1, block2, downsample in self.down:
            x = block2(block1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, cond)
        for block1, block2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(block2(block1(x, cond), cond))
        return self.final(x)
