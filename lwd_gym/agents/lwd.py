"""Latent Weight Diffusion: diffuse over *policies*, act with the small generated MLP.

Training, one way through: demonstrations -> snippets -> VAE (hypernetwork decoder) ->
latents of every snippet -> conditional latent diffusion.  Acting: every ``action_horizon``
steps (or at an episode start) sample ``z ~ p(z | state, task)``, decode it into MLP weights,
then run that MLP closed-loop on every observation until the next re-sample.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lwd_gym.agents.base import BaseAgent
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.diffusion import SAMPLERS, ConditionalDiffusion
from lwd_gym.nn.vae import PolicyVAE
from lwd_gym.training import TensorBatches, fit, steps_for

CONDITIONS = ("obs", "task", "obs+task", "none")


class LWDAgent(BaseAgent):
    """Latent Weight Diffusion agent (SB3-style ``learn`` / ``predict`` / ``save`` / ``load``).

    :param action_horizon: ``H_a``, steps one generated policy is followed before re-sampling
        (may exceed the episode length: one policy per episode).
    :param snippet_length: ``H``, steps per VAE training snippet; defaults to ``action_horizon``.
    :param latent_dim: size of the policy latent ``z``.
    :param latent_length: the latent is laid out as ``[latent_dim // latent_length, latent_length]``
        for the 1-D UNet denoiser.
    :param policy_hidden: hidden widths of the generated policy MLP.
    :param hypernet_size: hypernetwork preset ``"xs"|"s"|"m"|"l"`` or a list of hidden widths.
    :param kl_coef: ``beta_kl``, weight of the latent KL term (1e-10 ... 1e-6).
    :param diffusion_size: UNet preset ``"xs"|"s"|"m"|"l"|"xl"``.
    :param condition_on: what the latent diffusion is conditioned on: ``"obs"`` (the state when
        the policy is sampled), ``"task"`` (one-hot task id), ``"obs+task"`` or ``"none"``.
    :param num_inference_steps: denoising steps per sample.
    :param scheduler: sampler, ``"ddim"`` or ``"ddpm"``.
    :param batch_size: mini-batch size of both training stages.
    :param vae_lr: learning rate of the VAE.
    :param diffusion_lr: learning rate of the denoiser.
    :param vae_epochs: VAE epochs (passes over all snippets) unless ``learn`` gets ``vae_steps``.
    :param diffusion_epochs: denoiser epochs unless ``learn`` gets ``diffusion_steps``.
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    :param seed: seeds initialisation, data order and sampling.
    """

    def __init__(
        self,
        action_horizon: int = 32,
        snippet_length: int | None = None,
        latent_dim: int = 256,
        latent_length: int = 16,
        policy_hidden: Sequence[int] = (256, 256),
        hypernet_size: str | Sequence[int] = "s",
        kl_coef: float = 1e-8,
        diffusion_size: str = "s",
        condition_on: str = "obs",
        num_inference_steps: int = 10,
        scheduler: str = "ddim",
        batch_size: int = 256,
        vae_lr: float = 3e-4,
        diffusion_lr: float = 1e-4,
        vae_epochs: int = 100,
        diffusion_epochs: int = 100,
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(action_horizon=action_horizon, device=device, seed=seed)
        if condition_on not in CONDITIONS:
            raise ValueError(f"condition_on must be one of {CONDITIONS}, got {condition_on!r}")
        if scheduler not in SAMPLERS:
            raise ValueError(f"scheduler must be one of {sorted(SAMPLERS)}, got {scheduler!r}")
        if latent_dim % latent_length:
            raise ValueError(f"latent_dim={latent_dim} must be divisible by latent_length={latent_length}")
        if not 0 <= kl_coef < 1:
            raise ValueError(f"kl_coef must be in [0, 1), got {kl_coef}")
        self.snippet_length = int(snippet_length or action_horizon)
        self.latent_dim = int(latent_dim)
        self.latent_length = int(latent_length)
        self.policy_hidden = [int(h) for h in policy_hidden]
        self.hypernet_size = hypernet_size if isinstance(hypernet_size, str) else [int(w) for w in hypernet_size]
        self.kl_coef = float(kl_coef)
        self.diffusion_size = diffusion_size
        self.condition_on = condition_on
        self.num_inference_steps = int(num_inference_steps)
        self.scheduler = scheduler
        self.batch_size = int(batch_size)
        self.vae_lr, self.diffusion_lr = float(vae_lr), float(diffusion_lr)
        self.vae_epochs, self.diffusion_epochs = int(vae_epochs), int(diffusion_epochs)
        self.latent_normalizer: Normalizer | None = None
        self.vae: PolicyVAE | None = None
        self.diffusion: ConditionalDiffusion | None = None
        self._weights: torch.Tensor | None = None  # [n_envs, n_params] current generated policies

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "snippet_length": self.snippet_length,
            "latent_dim": self.latent_dim,
            "latent_length": self.latent_length,
            "policy_hidden": self.policy_hidden,
            "hypernet_size": self.hypernet_size,
            "kl_coef": self.kl_coef,
            "diffusion_size": self.diffusion_size,
            "condition_on": self.condition_on,
            "num_inference_steps": self.num_inference_steps,
            "scheduler": self.scheduler,
            "batch_size": self.batch_size,
            "vae_lr": self.vae_lr,
            "diffusion_lr": self.diffusion_lr,
            "vae_epochs": self.vae_epochs,
            "diffusion_epochs": self.diffusion_epochs,
        }

    # ------------------------------------------------------------------ networks
    @property
    def cond_dim(self) -> int:
        dim = self.state_space.shape[0] if "obs" in self.condition_on else 0
        return dim + (self.num_tasks if "task" in self.condition_on else 0)

    def _build(self) -> None:
        if "task" in self.condition_on and self.num_tasks < 2:
            raise ValueError(f"condition_on={self.condition_on!r} needs task ids: pass a list of datasets, one per task")
        self.vae = PolicyVAE(
            self.snippet_length,
            self.state_space.shape[0],
            self.action_space.shape[0],
            self.latent_dim,
            self.policy_hidden,
            self.hypernet_size,
        ).to(self.device)
        latent_shape = (self.latent_dim // self.latent_length, self.latent_length)
        self.diffusion = ConditionalDiffusion(latent_shape, self.cond_dim, size=self.diffusion_size).to(self.device)

    def _modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "diffusion": self.diffusion}

    def _condition(self, states: torch.Tensor, tasks: torch.Tensor | None) -> torch.Tensor | None:
        """The diffusion condition: normalised state and/or one-hot task id."""
        parts = []
        if "obs" in self.condition_on:
            parts.append(states)
        if "task" in self.condition_on:
            parts.append(F.one_hot(tasks, self.num_tasks).to(states.dtype))
        return torch.cat(parts, dim=-1) if parts else None

    # ------------------------------------------------------------------ learning
    def learn(
        self,
        dataset: Any,
        *,
        vae_steps: int | None = None,
        diffusion_steps: int | None = None,
        progress_bar: bool = True,
    ) -> LWDAgent:
        """Train the VAE, then the latent diffusion model.

        :param dataset: a ``minari.MinariDataset``, a dataset id, or a list of them (one per task).
        :param vae_steps: gradient steps of the VAE stage (default: ``vae_epochs`` epochs).
        :param diffusion_steps: gradient steps of the diffusion stage (default: ``diffusion_epochs``).
        :param progress_bar: show tqdm bars.
        """
        demos = self._prepare(dataset)
        snippets = SnippetDataset(demos, self.snippet_length, self.obs_normalizer, self.action_normalizer)
        vae_steps = vae_steps or steps_for(self.vae_epochs, len(snippets), self.batch_size)
        fit(
            self.vae,
            lambda b: self.vae.loss(b["states"], b["actions"], self.kl_coef, self._rng, b["mask"]),
            snippets,
            steps=vae_steps,
            batch_size=self.batch_size,
            lr=self.vae_lr,
            generator=self._cpu_rng(),
            device=self.device,
            desc="LWD 1/2: VAE",
            progress=progress_bar,
        )
        latents, conds = self._encode_snippets(snippets)
        # Latents scaled to [-1, 1] per dimension, the range the DDPM clips its x0 estimate to;
        # the statistics are kept to map samples back.
        self.latent_normalizer = Normalizer.fit(latents, mode="minmax")
        data = TensorBatches(x0=self.latent_normalizer.normalize(latents).view(-1, *self.diffusion.sample_shape), **conds)
        ema = copy.deepcopy(self.diffusion)
        fit(
            self.diffusion,
            lambda b: self.diffusion.loss(b["x0"], b.get("cond"), self._rng),
            data,
            steps=diffusion_steps or steps_for(self.diffusion_epochs, len(data), self.batch_size),
            batch_size=self.batch_size,
            lr=self.diffusion_lr,
            warmup_steps=500,
            generator=self._cpu_rng(),
            device=self.device,
            ema_model=ema,
            desc="LWD 2/2: latent diffusion",
            progress=progress_bar,
        )
        self.diffusion = ema  # only the EMA weights are used (and saved) from here on
        self.reset()
        return self

    def _cpu_rng(self) -> torch.Generator:
        # Data order is drawn on the CPU whatever the device, from the agent's own seed stream.
        return torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=self._rng, device=self.device)))

    @torch.no_grad()
    def _encode_snippets(self, snippets: SnippetDataset) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Posterior means of every snippet, with the diffusion condition at its first step."""
        latents, conds = [], []
        for index in torch.arange(len(snippets)).split(4096):
            batch = {k: v.to(self.device) for k, v in snippets.get_batch(index).items()}
            latents.append(self.vae.encoder(batch["states"], batch["actions"])[0])
            conds.append(self._condition(batch["states"][:, 0], batch["task"]))
        cond = {} if conds[0] is None else {"cond": torch.cat(conds)}
        return torch.cat(latents), cond

    def _extra_state(self) -> dict[str, Any]:
        return {"latent_normalizer": self.latent_normalizer.to_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.latent_normalizer = Normalizer.from_dict(extra["latent_normalizer"])

    # ------------------------------------------------------------------ acting
    def sample_policies(self, states: torch.Tensor, tasks: torch.Tensor | None = None, deterministic: bool = False, env_ids: np.ndarray | None = None) -> torch.Tensor:
        """Sample generated-policy weights ``[n, n_params]`` for normalised ``states [n, state_dim]``."""
        n = len(states)
        env_ids = np.arange(n) if env_ids is None else env_ids
        z = self.diffusion.sample(
            self._condition(states, tasks),
            n,
            num_inference_steps=self.num_inference_steps,
            scheduler=self.scheduler,
            generator=self.noise_generators(env_ids, deterministic),
        )
        return self.vae.decoder(self.latent_normalizer.unnormalize(z.reshape(n, -1)))

    def _allocate(self, num_envs: int) -> None:
        self._weights = torch.zeros(num_envs, self.vae.policy.num_params, device=self.device)

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        self._weights[torch.as_tensor(env_ids, device=self.device)] = self.sample_policies(states, tasks, deterministic, env_ids)

    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        return self.vae.policy(self._weights, states)
