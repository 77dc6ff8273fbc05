"""Latent Weight Diffusion: diffuse over *policies*, act with the small generated MLP.

Training, one way through: demonstrations -> snippets -> VAE (hypernetwork decoder) ->
latents of every snippet -> conditional latent diffusion (see :mod:`lwd_gym.agents.latent`).
Acting: every ``action_horizon`` steps (or at an episode start) sample
``z ~ p(z | state, task)``, decode it into MLP weights, then run that MLP closed-loop on every
observation until the next re-sample.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lwd_gym.agents.config import LWDConfig
from lwd_gym.agents.latent import LatentDiffusionAgent
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.generated_policy import HostMLP
from lwd_gym.nn.vae import PolicyVAE
from lwd_gym.nn.world_model import WorldModelPolicyVAE
from lwd_gym.training import LossFn, steps_for


@dataclass
class GeneratedPolicies:
    """LWD's plans: each environment's current generated policy, as weights on the device (the
    torch path, ``[n_envs, n_params]``) and as a host copy (the numpy path between re-samples)."""

    weights: torch.Tensor
    host: HostMLP


class LWDAgent(LatentDiffusionAgent):
    """Latent Weight Diffusion agent (SB3-style ``learn`` / ``predict`` / ``save`` / ``load``).

    Its hyperparameters are :class:`~lwd_gym.agents.config.LWDConfig`'s, given as a config or as
    keywords: ``LWDAgent(action_horizon=16, condition_on="task")``; ``device`` is ``"auto"``,
    ``"cpu"`` or ``"cuda"``.  Two stages: ``vae`` (the snippet VAE with its hypernetwork decoder)
    and ``diffusion`` (the latent diffusion).
    """

    config_class = LWDConfig

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
        return [(w[0].cpu().numpy(), b[0].cpu().numpy()) for w, b in self.vae.policy.layers(probe._acting.plans.weights[:1])]

    def export_policy(self, path: str | os.PathLike, observation: np.ndarray, *, deterministic: bool = True, seed: int | None = None, write_runner: bool = False) -> Path:
        """Sample one policy for ``observation`` and write it as a torch-free ``.npz`` (+ optional
        numpy runner); see :func:`lwd_gym.export.export_policy`."""
        from lwd_gym.export import export_policy

        return export_policy(self, path, observation, deterministic=deterministic, seed=seed, write_runner=write_runner)

    def export_onnx(self, path: str | os.PathLike, observation: np.ndarray, *, deterministic: bool = True, seed: int | None = None) -> Path:
        """Sample one policy for ``observation``, as :meth:`export_policy` does, and write it as an
        ONNX model mapping raw observations ``[n, obs_dim]`` to raw actions (normalisers and
        clipping inside; another task's one-hot gives NaN actions); see
        :func:`lwd_gym.export.onnx_policy_model`.  Needs ``pip install "lwd-gym[onnx]"``."""
        from lwd_gym.export import sampled_policy_arrays, write_onnx_policy

        arrays = sampled_policy_arrays(self, observation, deterministic=deterministic, seed=seed)
        meta = {"agent": type(self).__name__, "deterministic": str(deterministic), "seed": str(seed)}
        return write_onnx_policy(path, arrays, meta)

    def _allocate(self, num_envs: int) -> GeneratedPolicies:
        norms = {"in_norm": (self.obs_normalizer.mean, self.obs_normalizer.std), "out_norm": (self.action_normalizer.mean, self.action_normalizer.std)}
        return GeneratedPolicies(torch.zeros(num_envs, self.vae.policy.num_params, device=self.device), HostMLP.zeros(self.vae.policy.sizes, num_envs, **norms))

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        weights = self.sample_policies(states, tasks, deterministic, env_ids)
        self._acting.plans.weights[torch.as_tensor(env_ids, device=self.device)] = weights
        self._acting.plans.host.set_rows(env_ids, self.vae.policy.layers(weights))  # one device->host copy per re-sample

    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        return self.vae.policy(self._acting.plans.weights, states)

    def _act_host(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self._acting.plans.host(obs[:, : self.state_space.shape[0]])  # a task id only matters when sampling
