"""Diffusion Policy (Chi et al., 2023) baseline: diffuse an action sequence, execute part of it.

A :class:`~lwd_gym.nn.ConditionalDiffusion` (the same ConditionalUnet1D, or transformer, as
LWD's latent model) denoises a sequence of ``prediction_horizon`` actions conditioned (a global
condition: FiLM in the UNet, cross-attention in the transformer) on the last ``n_obs_steps``
observations.  As in Diffusion Policy the sequence starts at the oldest
observed step, so the action for the current step is at index ``n_obs_steps - 1``; the agent
executes ``action_horizon`` actions from there open-loop, then re-plans.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lwd_gym.agents.acting import ActionChunks, ChunkActing
from lwd_gym.agents.base import BaseAgent
from lwd_gym.agents.config import DPConfig
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.diffusion import ConditionalDiffusion


class DPAgent(ChunkActing, BaseAgent):
    """Diffusion Policy with a 1-D conditional UNet or a transformer (SB3-style ``learn`` / ``predict`` / ``save`` / ``load``).

    Its hyperparameters are :class:`~lwd_gym.agents.config.DPConfig`'s (``action_horizon``:
    Diffusion Policy's ``n_action_steps``, at most ``prediction_horizon - n_obs_steps + 1``);
    one stage, ``diffusion``.
    """

    config_class = DPConfig
    plans_with_diffusion = True
    action_normalization = "minmax"  # the DDPM clips samples to [-1, 1]

    def __init__(self, config: DPConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.diffusion: ConditionalDiffusion | None = None

    @property
    def max_action_horizon(self) -> int:
        # The first n_obs_steps - 1 predicted actions belong to past steps.
        return self.prediction_horizon - self.n_obs_steps + 1

    @property
    def cond_dim(self) -> int:
        return self.n_obs_steps * self.state_space.shape[0] + (self.num_tasks if self.num_tasks > 1 else 0)

    def _build(self) -> None:
        shape = (self.action_space.shape[0], self.prediction_horizon)  # channels = action dims, as in DP
        self.diffusion = ConditionalDiffusion(shape, self.cond_dim, size=self.denoiser_size, denoiser=self.denoiser).to(self.device)

    def _modules(self) -> dict[str, nn.Module]:
        return {"diffusion": self.diffusion}

    def _condition(self, history: torch.Tensor, tasks: torch.Tensor | None) -> torch.Tensor:
        """Flattened normalised observation history ``[n, n_obs_steps, state_dim]`` (+ one-hot task)."""
        cond = history.flatten(1)
        if self.num_tasks > 1:
            cond = torch.cat([cond, F.one_hot(tasks, self.num_tasks).to(cond.dtype)], dim=-1)
        return cond

    def _train(self, demos: Any) -> None:
        """Train the denoiser on every window of ``prediction_horizon`` actions (EMA weights kept)."""
        make_windows = lambda d: SnippetDataset(  # noqa: E731
            d, self.prediction_horizon, self.obs_normalizer, self.action_normalizer,
            pad_before=self.n_obs_steps - 1, pad_short_episodes=self.pad_short_episodes,
        )  # fmt: skip
        windows = make_windows(demos)

        def loss(batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
            # Padded steps are kept in the loss, as in Diffusion Policy: at an episode's end the
            # repeated last action teaches the policy to settle.
            cond = self._condition(batch["states"][:, : self.n_obs_steps], batch["task"] if self.num_tasks > 1 else None)
            return self.diffusion.loss(batch["actions"].transpose(1, 2), cond, generator)

        ema = copy.deepcopy(self.diffusion)
        self._fit(
            "diffusion",
            self.diffusion,
            lambda batch, step: loss(batch, self._rng),
            windows,
            steps=self._stage_steps("diffusion", len(windows)),
            batch_size=self.batch_size,
            lr=self.diffusion_lr,
            warmup_steps=500,
            generator=torch.Generator().manual_seed(self.seed),
            ema_model=ema,
            val_data=self._validation_snippets(make_windows),
            val_loss=loss,
            acting_attr="diffusion",
        )
        self.diffusion = ema

    # ------------------------------------------------------------------ acting
    def _allocate(self, num_envs: int) -> ActionChunks:
        return ActionChunks(num_envs, self.max_action_horizon, self.action_space.shape[0], self.device)

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        history = torch.as_tensor(self._acting.history[env_ids], device=self.device) if self.n_obs_steps > 1 else states[:, None]
        actions = self.diffusion.sample(
            self._condition(history, tasks),
            len(env_ids),
            num_inference_steps=self.num_inference_steps,
            scheduler=self.scheduler,
            generator=self.noise_generators(env_ids, deterministic),
        )
        self._acting.plans.store(env_ids, actions.transpose(1, 2)[:, self.n_obs_steps - 1 :])
