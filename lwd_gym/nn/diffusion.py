"""Conditional DDPM over fixed-shape samples ``[C, L]`` scaled to ``[-1, 1]``: loss and sampler.

LWD diffuses policy latents (laid out as ``[C, L]``); the same class serves any agent that
diffuses a fixed-shape tensor.  The denoiser is a 1-D UNet (default) or a transformer; both
take ``(sample [B, C, L], timestep, global_cond)``.  Noise schedules and update rules come
from ``diffusers`` schedulers; the model knows nothing about them, so the sampler is a short
readable loop.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from lwd_gym import distributed
from lwd_gym.nn.transformer import TRANSFORMER_PRESETS, TransformerForDiffusion
from lwd_gym.nn.unet1d import UNET_PRESETS, ConditionalUnet1D

#: Denoiser names accepted by :class:`ConditionalDiffusion` -> their size presets.
DENOISERS: dict[str, dict[str, tuple]] = {"unet": UNET_PRESETS, "transformer": TRANSFORMER_PRESETS}

#: Sampler names accepted by :meth:`ConditionalDiffusion.sample` -> (diffusers class, config
#: overrides); all share the model trained with the DDPM schedule.  DPM-Solver++ ignores
#: ``clip_sample`` (without clipping it diverged on these models); its dynamic thresholding with
#: ``sample_max_value=1`` clamps the x0 estimate to [-1, 1], which is the same clipping.
SAMPLERS: dict[str, tuple[type, dict]] = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "thresholding": True, "sample_max_value": 1.0}),
}


class ConditionalDiffusion(nn.Module):
    """An epsilon-prediction diffusion model ``p(x | cond)`` with a :class:`ConditionalUnet1D` or
    :class:`~lwd_gym.nn.transformer.TransformerForDiffusion` denoiser.

    :param sample_shape: ``(C, L)`` of one sample.
    :param cond_dim: global condition size (0: unconditional).
    :param size: preset of the denoiser (see :data:`DENOISERS`).
    :param num_train_timesteps: DDPM training steps.
    :param kernel_size: temporal kernel of the UNet's convs (the transformer has none).
    :param denoiser: ``"unet"`` or ``"transformer"`` (tokens = the ``L`` positions of a sample).
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        cond_dim: int,
        size: str = "s",
        num_train_timesteps: int = 100,
        kernel_size: int = 5,
        denoiser: str = "unet",
    ) -> None:
        super().__init__()
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.cond_dim = int(cond_dim)
        if denoiser == "unet":
            self.denoiser = ConditionalUnet1D(self.sample_shape[0], self.cond_dim, size=size, kernel_size=kernel_size)
        elif denoiser == "transformer":
            self.denoiser = TransformerForDiffusion(self.sample_shape[0], self.cond_dim, size=size, horizon=self.sample_shape[1])
        else:
            raise ValueError(f"unknown denoiser {denoiser!r}; choose one of {sorted(DENOISERS)}")
        # Callers scale samples to [-1, 1] and the predicted x0 is clipped there (as in Diffusion
        # Policy): without it, the first DDPM step from t=T-1 (beta capped at 0.999) amplifies
        # the noise-prediction error ~30x and some samples blow up.
        self.train_scheduler = DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_schedule="squaredcos_cap_v2",
            prediction_type="epsilon",
            clip_sample=True,
        )
        self._samplers: dict[str, object] = {}

    def loss(self, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoising MSE on ``x0 [B, C, L]`` at uniformly drawn timesteps."""
        # Drawn through lwd_gym.distributed so a data-parallel run draws what one process would.
        noise = distributed.randn(x0.shape, generator, x0.device, x0.dtype)
        t = distributed.randint(self.train_scheduler.config.num_train_timesteps, (x0.shape[0],), generator, x0.device)
        noisy = self.train_scheduler.add_noise(x0, noise, t)
        return torch.mean((self.denoiser(noisy, t, cond) - noise) ** 2)

    def _sampler(self, name: str):
        if name not in SAMPLERS:
            raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SAMPLERS)}")
        if name not in self._samplers:
            klass, overrides = SAMPLERS[name]
            self._samplers[name] = klass.from_config(self.train_scheduler.config, **overrides)
        return self._samplers[name]

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor | None,
        num_samples: int,
        *,
        num_inference_steps: int = 10,
        scheduler: str = "ddim",
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Draw ``num_samples`` samples ``[N, C, L]``; ``generator`` may be a list (one per sample)."""
        device = next(self.parameters()).device
        sampler = self._sampler(scheduler)
        sampler.set_timesteps(num_inference_steps, device=device)
        x = randn_tensor((num_samples, *self.sample_shape), generator=generator, device=device)
        x = x * sampler.init_noise_sigma
        for t in sampler.timesteps:
            eps = self.denoiser(sampler.scale_model_input(x, t), t, cond)
            x = sampler.step(eps, t, x, generator=generator).prev_sample
        return x
