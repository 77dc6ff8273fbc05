"""Conditional DDPM over fixed-shape samples ``[C, L]`` scaled to ``[-1, 1]``: loss and sampler.

LWD diffuses policy latents (laid out as ``[C, L]``); the same class serves any agent that
diffuses a fixed-shape tensor.  The denoiser is a 1-D UNet (default) or a transformer; both
take ``(sample [B, C, L], timestep, global_cond)``.  Noise schedules and update rules come
from ``diffusers`` schedulers; the model knows nothing about them, so the sampler is a short
readable loop.

On CUDA, a deterministic sampler's whole loop (every denoiser call and scheduler update) is
captured once per batch-size bucket as one CUDA graph and replayed: the small denoisers used
here are launch-bound on a GPU, so replaying hundreds of recorded kernel launches in one call
is what makes a query fast.  ``torch.compile(mode="reduce-overhead")`` would do the same for
the denoiser alone, but the scheduler's Python state between the calls breaks its graphs.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from lwd_gym import distributed
from lwd_gym.nn.transformer import TRANSFORMER_PRESETS, TransformerForDiffusion
from lwd_gym.nn.unet1d import UNET_PRESETS, ConditionalUnet1D

#: Denoiser names accepted by :class:`ConditionalDiffusion` -> their size presets.
#: DDPM steps every diffusion model here is trained with (a query takes at most this many).
NUM_TRAIN_TIMESTEPS = 100

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
        num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
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
        #: Replay the sampling loop as a CUDA graph where possible (see :meth:`sample`).
        self.cuda_graphs = True
        self._graphs: OrderedDict[tuple, _GraphedSampling] = OrderedDict()

    def __getstate__(self) -> dict:
        # Captured graphs point at this instance's tensors and cannot be copied (deepcopy for
        # EMA, pickling): a copy captures its own on first use.
        state = self.__dict__.copy()
        state["_graphs"] = OrderedDict()
        return state

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .half(): captured graphs point at the old storage
        self._graphs.clear()
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> ConditionalDiffusion:
        self._graphs.clear()  # training may rebind parameters; graphs are recaptured on the next sample
        return super().train(mode)

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
        """Draw ``num_samples`` samples ``[N, C, L]``; ``generator`` may be a list (one per sample).

        On CUDA with a deterministic sampler (``"ddim"``, ``"dpmsolver++"``) and
        :attr:`cuda_graphs` set, the loop runs as a captured CUDA graph (first call per batch
        bucket captures it); the initial noise is still drawn from ``generator`` outside the
        graph, so results equal the eager loop's to float tolerance.
        """
        device = next(self.parameters()).device
        sampler = self._sampler(scheduler)
        noise = randn_tensor((num_samples, *self.sample_shape), generator=generator, device=device)
        if self.cuda_graphs and device.type == "cuda" and scheduler in GRAPH_SAFE_SAMPLERS and not self.training:
            return self._graphed(sampler, scheduler, num_inference_steps, num_samples, cond)(noise, cond)
        return _sampling_loop(self.denoiser, sampler, num_inference_steps, noise, cond, generator)

    def _graphed(self, sampler, scheduler: str, steps: int, n: int, cond: torch.Tensor | None) -> _GraphedSampling:
        key = (scheduler, steps, None if cond is None else (tuple(cond.shape[1:]), cond.dtype))
        # One graph per power-of-two batch bucket: a vector env re-plans a varying subset of
        # its envs, and samples are independent along the batch, so padding is exact.
        bucket = 1 << (max(n, 1) - 1).bit_length()
        key = (*key, bucket)
        if key not in self._graphs:
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.popitem(last=False)
            self._graphs[key] = _GraphedSampling(self.denoiser, sampler, steps, (bucket, *self.sample_shape), cond)
        self._graphs.move_to_end(key)
        return self._graphs[key]


#: Samplers whose update draws no noise, so their loop can be replayed as a CUDA graph.
GRAPH_SAFE_SAMPLERS = ("ddim", "dpmsolver++")
#: Captured graphs kept per model (least recently used dropped first); each holds its own memory.
MAX_GRAPHS = 8


def _sampling_loop(denoiser: nn.Module, sampler, steps: int, x: torch.Tensor, cond: torch.Tensor | None, generator=None,
                   timestep_table: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The reverse process from noise ``x``.

    ``timestep_table`` (``arange(num_train_timesteps)`` on the model's device): keep the
    scheduler's state on the CPU and give the denoiser ``table[t]``, a view of device memory.
    CUDA-graph capture forbids the host syncs and pageable copies that device timesteps
    indexing the schedulers' CPU tables, or CPU timesteps copied to the device, would cause.
    """
    sampler.set_timesteps(steps, device="cpu" if timestep_table is not None else x.device)
    x = x * sampler.init_noise_sigma
    for t in sampler.timesteps:
        t_model = t if timestep_table is None else timestep_table[int(t)]
        eps = denoiser(sampler.scale_model_input(x, t), t_model, cond)
        x = sampler.step(eps, t, x, generator=generator).prev_sample
    return x


class _GraphedSampling:
    """:func:`_sampling_loop` for fixed shapes, captured once as a CUDA graph."""

    def __init__(self, denoiser: nn.Module, sampler, steps: int, shape: tuple[int, ...], cond: torch.Tensor | None) -> None:
        device = next(denoiser.parameters()).device
        # Normal tensors even when captured under inference_mode (as inside predict): the
        # inputs are refilled in place later, possibly outside it, which inference tensors forbid.
        with torch.inference_mode(False):
            self.noise = torch.zeros(shape, device=device)
            self.cond = None if cond is None else torch.zeros((shape[0], *cond.shape[1:]), dtype=cond.dtype, device=device)
            self.timesteps = torch.arange(sampler.config.num_train_timesteps, device=device)

        def loop() -> torch.Tensor:
            return _sampling_loop(denoiser, sampler, steps, self.noise, self.cond, timestep_table=self.timesteps)

        # Warm up on a side stream first (cuBLAS/cuDNN allocate workspaces on first use), as
        # torch.cuda.graphs' documentation requires.
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            loop()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = loop()

    def __call__(self, noise: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        n = len(noise)
        self.noise[:n].copy_(noise)
        if self.cond is not None:
            self.cond[:n].copy_(cond)
        self.graph.replay()
        return self.out[:n].clone()
