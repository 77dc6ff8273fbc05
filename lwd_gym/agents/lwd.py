"""Latent Weight Diffusion: diffuse over *policies*, act with the small generated MLP.

Training, one way through: demonstrations -> snippets -> VAE (hypernetwork decoder) ->
latents of every snippet -> conditional latent diffusion (see :mod:`lwd_gym.agents.latent`).
Acting: every ``action_horizon`` steps (or at an episode start) sample
``z ~ p(z | state, task)``, decode it into MLP weights, then run that MLP closed-loop on every
observation until the next re-sample.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lwd_gym.agents.latent import LatentDiffusionAgent
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.generated_policy import HostMLP
from lwd_gym.nn.vae import PolicyVAE
from lwd_gym.nn.world_model import WorldModelPolicyVAE
from lwd_gym.nn.hypernet import HYPERNET_PRESETS
from lwd_gym.training import LossFn, steps_for
from lwd_gym.validation import choice, integer, positive_int, widths


class LWDAgent(LatentDiffusionAgent):
    """Latent Weight Diffusion agent (SB3-style ``learn`` / ``predict`` / ``save`` / ``load``).

    :param action_horizon: ``H_a``, steps one generated policy is followed before re-sampling
        (may exceed the episode length: one policy per episode).
    :param snippet_length: ``H``, steps per VAE training snippet; defaults to ``action_horizon``.
    :param pad_short_episodes: train on demonstrations shorter than a snippet too, end-padded
        with their last step and masked out of the loss (default: they are skipped).
    :param vae_windows: the snippets the VAE trains on: ``"all"`` (a window starting at every
        step) or ``"plan_starts"`` (only windows starting where plans start, steps ``0, H_a, 2 H_a,
        ...``: with one policy per episode, whole episodes, as the paper encodes Metaworld's).
    :param latent_dim: size of the policy latent ``z``.
    :param latent_length: the latent is laid out as ``[latent_dim // latent_length, latent_length]``
        for the denoiser (``latent_length`` positions, or transformer tokens, of that many channels).
    :param policy_hidden: hidden widths of the generated policy MLP.
    :param hypernet_size: hypernetwork preset ``"xs"|"s"|"m"|"l"`` or a list of hidden widths.
    :param kl_coef: ``beta_kl``, weight of the latent KL term (1e-10 ... 1e-6).
    :param diffusion_size: denoiser preset: UNet ``"xs"|"s"|"m"|"l"|"xl"``, transformer ``"xs"|"s"|"m"``.
    :param denoiser: the latent denoiser, ``"unet"`` (Diffusion Policy's 1-D conditional UNet) or
        ``"transformer"`` (Diffusion Policy's transformer, :mod:`lwd_gym.nn.transformer`).
    :param condition_on: what the latent diffusion is conditioned on: ``"obs"`` (the state when
        the policy is sampled), ``"task"`` (one-hot task id), ``"obs+task"`` or ``"none"``.
    :param num_inference_steps: denoising steps per sample.
    :param scheduler: sampler, ``"ddim"``, ``"dpmsolver++"`` or ``"ddpm"``.  DDIM-10 stays the
        default: DPM-Solver++ (5 or 10 steps) was as good on single-task success but sampled the
        wrong task's behaviour for a weakly trained multi-task agent (benchmarks/README.md).
    :param batch_size: mini-batch size of both training stages.
    :param vae_lr: learning rate of the VAE.
    :param diffusion_lr: learning rate of the denoiser.
    :param vae_epochs: VAE epochs (passes over all snippets) unless ``learn`` gets ``vae_steps``.
    :param diffusion_epochs: denoiser epochs unless ``learn`` gets ``diffusion_steps``.
    :param world_model: also train a world model (see :mod:`lwd_gym.nn.world_model`) whose
        rollout loss shapes the VAE; acting and the latent diffusion are unchanged.
    :param world_model_hidden: hidden widths of the world model MLP.
    :param world_model_history: (state, action) pairs the world model predicts from.
    :param world_model_warmup_epochs: VAE epochs trained without the rollout loss, so the world
        model is fitted before the VAE is trained through it.
    :param rollout_coef: weight of the rollout loss after the warm-up.
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    :param seed: seeds initialisation, data order and sampling.
    """

    def __init__(
        self,
        action_horizon: int = 32,
        snippet_length: int | None = None,
        pad_short_episodes: bool = False,
        vae_windows: str = "all",
        latent_dim: int = 256,
        latent_length: int = 16,
        policy_hidden: Sequence[int] = (256, 256),
        hypernet_size: str | Sequence[int] = "s",
        kl_coef: float = 1e-8,
        diffusion_size: str = "s",
        denoiser: str = "unet",
        condition_on: str = "obs",
        num_inference_steps: int = 10,
        scheduler: str = "ddim",
        batch_size: int = 256,
        vae_lr: float = 3e-4,
        diffusion_lr: float = 1e-4,
        vae_epochs: int = 100,
        diffusion_epochs: int = 100,
        world_model: bool = False,
        world_model_hidden: Sequence[int] = (1024, 1024),
        world_model_history: int = 1,
        world_model_warmup_epochs: int = 10,
        rollout_coef: float = 1.0,
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> None:
        world_model_hidden = widths("world_model_hidden", world_model_hidden)
        positive_int("world_model_history", world_model_history)
        integer("world_model_warmup_epochs", world_model_warmup_epochs, minimum=0)
        policy_hidden = widths("policy_hidden", policy_hidden)
        if isinstance(hypernet_size, str):
            choice("hypernet_size", hypernet_size, sorted(HYPERNET_PRESETS))
        else:
            hypernet_size = widths("hypernet_size", hypernet_size)
        if isinstance(rollout_coef, bool) or not isinstance(rollout_coef, (int, float)) or not (math.isfinite(rollout_coef) and rollout_coef >= 0):
            raise ValueError(f"rollout_coef must be a finite number >= 0, got {rollout_coef}")
        super().__init__(
            action_horizon, snippet_length, latent_dim, latent_length, kl_coef, diffusion_size, condition_on,
            num_inference_steps, scheduler, batch_size, vae_lr, diffusion_lr, vae_epochs, diffusion_epochs, device, seed,
            pad_short_episodes, denoiser, vae_windows,
        )  # fmt: skip
        self.policy_hidden = policy_hidden
        self.hypernet_size = hypernet_size
        self.world_model = bool(world_model)
        if self.world_model and world_model_history >= self.snippet_length:
            raise ValueError(f"world_model_history={world_model_history} leaves no transition in snippets of {self.snippet_length} steps")
        self.world_model_hidden = world_model_hidden
        self.world_model_history = int(world_model_history)
        self.world_model_warmup_epochs = int(world_model_warmup_epochs)
        self.rollout_coef = float(rollout_coef)
        self._weights: torch.Tensor | None = None  # [n_envs, n_params] current generated policies

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "policy_hidden": self.policy_hidden,
            "hypernet_size": self.hypernet_size,
            "world_model": self.world_model,
            "world_model_hidden": self.world_model_hidden,
            "world_model_history": self.world_model_history,
            "world_model_warmup_epochs": self.world_model_warmup_epochs,
            "rollout_coef": self.rollout_coef,
        }

    def _make_vae(self) -> nn.Module:
        sizes = (self.snippet_length, self.state_space.shape[0], self.action_space.shape[0], self.latent_dim, self.policy_hidden, self.hypernet_size)
        if self.world_model:
            return WorldModelPolicyVAE(*sizes, self.world_model_hidden, self.world_model_history)
        return PolicyVAE(*sizes)

    def _vae_loss_fn(self, snippets: SnippetDataset) -> LossFn:
        """With a world model: the rollout loss is off for the warm-up's gradient steps, then on."""
        if not self.world_model:
            return super()._vae_loss_fn(snippets)
        warmup_steps = steps_for(self.world_model_warmup_epochs, len(snippets), self.batch_size)

        def loss(b: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
            rollout_coef = self.rollout_coef if step >= warmup_steps else 0.0
            return self.vae.loss(b["states"], b["actions"], self.kl_coef, self._rng, b["mask"], rollout_coef=rollout_coef)

        return loss

    # ------------------------------------------------------------------ acting
    def sample_policies(
        self, states: torch.Tensor, tasks: torch.Tensor | None = None, deterministic: bool = False, env_ids: np.ndarray | None = None
    ) -> torch.Tensor:
        """Sample generated-policy weights ``[n, n_params]`` for normalised ``states [n, state_dim]``."""
        return self.vae.decoder(self.sample_latents(states, tasks, deterministic, env_ids))

    def sample_policy_layers(self, observation: np.ndarray, *, deterministic: bool = True, seed: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """The generated policy ``predict(observation, episode_start=[True], deterministic=...)``
        would follow in environment 0 (after ``seed_envs([0], [seed], num_envs=1)`` when ``seed``
        is given), as ``[(W [out, in], b [out]), ...]`` on normalised states and actions.  This
        agent's own plans and noise are untouched; stochastic sampling without ``seed`` draws
        fresh noise."""
        if not self.is_trained:
            raise ValueError("sampling a policy needs a trained agent: call learn() or load() first")
        obs = np.asarray(observation)
        if obs.dtype.kind not in "biuf" or obs.shape != self.observation_space.shape:
            raise ValueError(f"observation must be one numeric observation of shape {self.observation_space.shape}, got {obs.dtype} {obs.shape}")
        if not np.isfinite(obs).all():
            raise ValueError("observation contains NaN or inf")
        probe = self.acting_copy()  # shares the networks, owns its plans and noise
        probe._rng.seed()  # only feeds stochastic sampling without `seed`
        if seed is not None:
            probe.seed_envs([0], [seed], num_envs=1)
        probe.predict(obs[None], episode_start=np.array([True]), deterministic=deterministic)
        return [(w[0].cpu().numpy(), b[0].cpu().numpy()) for w, b in self.vae.policy.layers(probe._weights[:1])]

    def export_policy(self, path: str | os.PathLike, observation: np.ndarray, *, deterministic: bool = True, seed: int | None = None, write_runner: bool = False) -> Path:
        """Sample one policy for ``observation`` and write it as a torch-free ``.npz`` (+ optional
        numpy runner); see :func:`lwd_gym.export.export_policy`."""
        from lwd_gym.export import export_policy

        return export_policy(self, path, observation, deterministic=deterministic, seed=seed, write_runner=write_runner)

    def _allocate(self, num_envs: int) -> None:
        self._weights = torch.zeros(num_envs, self.vae.policy.num_params, device=self.device)
        norms = {"in_norm": (self.obs_normalizer.mean, self.obs_normalizer.std), "out_norm": (self.action_normalizer.mean, self.action_normalizer.std)}
        self._host_policies = HostMLP.zeros(self.vae.policy.sizes, num_envs, **norms)

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        weights = self.sample_policies(states, tasks, deterministic, env_ids)
        self._weights[torch.as_tensor(env_ids, device=self.device)] = weights
        self._host_policies.set_rows(env_ids, self.vae.policy.layers(weights))  # one device->host copy per re-sample

    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        return self.vae.policy(self._weights, states)

    def _act_host(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self._host_policies(obs[:, : self.state_space.shape[0]])  # a task id only matters when sampling
