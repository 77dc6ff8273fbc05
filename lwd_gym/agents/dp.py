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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lwd_gym.agents.base import ActionChunks, BaseAgent, ChunkActing
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.nn.diffusion import DENOISERS, SAMPLERS, ConditionalDiffusion
from lwd_gym.training import stage_steps
from lwd_gym.validation import denoiser as check_denoiser
from lwd_gym.validation import positive_float, positive_int
from lwd_gym.validation import sampler as check_sampler


class DPAgent(ChunkActing, BaseAgent):
    """Diffusion Policy with a 1-D conditional UNet or a transformer (SB3-style ``learn`` / ``predict`` / ``save`` / ``load``).

    :param action_horizon: actions executed per plan (Diffusion Policy's ``n_action_steps``);
        at most ``prediction_horizon - n_obs_steps + 1``.
    :param prediction_horizon: actions denoised per plan (``horizon``); a multiple of 4 for the UNet.
    :param n_obs_steps: observations the plan is conditioned on (the first step repeats the
        first observation).
    :param pad_short_episodes: train on demonstrations shorter than ``prediction_horizon`` too,
        end-padded with their last step (default: they are skipped).
    :param size: denoiser preset: UNet ``"xs"|"s"|"m"|"l"|"xl"`` (the paper's Table 3),
        transformer ``"xs"|"s"|"m"``.
    :param denoiser: ``"unet"`` (1-D conditional UNet) or ``"transformer"`` (Diffusion Policy's
        transformer over the predicted actions, :mod:`lwd_gym.nn.transformer`).
    :param num_inference_steps: denoising steps per plan (Diffusion Policy: DDPM, 100).
    :param scheduler: sampler, ``"ddpm"`` or ``"ddim"``.
    :param batch_size: mini-batch size.
    :param lr: learning rate (AdamW, cosine schedule with 500 warm-up steps, EMA weights).
    :param epochs: passes over all windows unless ``learn`` gets ``steps``.
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    :param seed: seeds initialisation, data order and sampling.
    """

    plans_with_diffusion = True
    action_normalization = "minmax"  # the DDPM clips samples to [-1, 1]

    def __init__(
        self,
        action_horizon: int = 8,
        prediction_horizon: int = 16,
        n_obs_steps: int = 2,
        pad_short_episodes: bool = False,
        size: str = "s",
        denoiser: str = "unet",
        num_inference_steps: int = 100,
        scheduler: str = "ddpm",
        batch_size: int = 256,
        lr: float = 1e-4,
        epochs: int = 100,
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> None:
        prediction_horizon, n_obs_steps = positive_int("prediction_horizon", prediction_horizon), positive_int("n_obs_steps", n_obs_steps)
        if prediction_horizon < n_obs_steps:
            raise ValueError(f"need 1 <= n_obs_steps <= prediction_horizon, got n_obs_steps={n_obs_steps}, prediction_horizon={prediction_horizon}")
        check_denoiser(denoiser, size, "size", prediction_horizon, "prediction_horizon")
        self.prediction_horizon, self.n_obs_steps = prediction_horizon, n_obs_steps
        self.pad_short_episodes = bool(pad_short_episodes)
        super().__init__(action_horizon=action_horizon, device=device, seed=seed)
        self.size, self.denoiser = size, denoiser
        self.num_inference_steps, self.scheduler = check_sampler(scheduler, num_inference_steps), scheduler
        self.batch_size, self.lr, self.epochs = positive_int("batch_size", batch_size), positive_float("lr", lr), positive_int("epochs", epochs)
        self.diffusion: ConditionalDiffusion | None = None
        self._plans = ActionChunks()

    @property
    def max_action_horizon(self) -> int:
        # The first n_obs_steps - 1 predicted actions belong to past steps.
        return self.prediction_horizon - self.n_obs_steps + 1

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "prediction_horizon": self.prediction_horizon,
            "n_obs_steps": self.n_obs_steps,
            "pad_short_episodes": self.pad_short_episodes,
            "size": self.size,
            "denoiser": self.denoiser,
            "num_inference_steps": self.num_inference_steps,
            "scheduler": self.scheduler,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "epochs": self.epochs,
        }

    @property
    def cond_dim(self) -> int:
        return self.n_obs_steps * self.state_space.shape[0] + (self.num_tasks if self.num_tasks > 1 else 0)

    def _build(self) -> None:
        shape = (self.action_space.shape[0], self.prediction_horizon)  # channels = action dims, as in DP
        self.diffusion = ConditionalDiffusion(shape, self.cond_dim, size=self.size, denoiser=self.denoiser).to(self.device)

    def _modules(self) -> dict[str, nn.Module]:
        return {"diffusion": self.diffusion}

    def _condition(self, history: torch.Tensor, tasks: torch.Tensor | None) -> torch.Tensor:
        """Flattened normalised observation history ``[n, n_obs_steps, state_dim]`` (+ one-hot task)."""
        cond = history.flatten(1)
        if self.num_tasks > 1:
            cond = torch.cat([cond, F.one_hot(tasks, self.num_tasks).to(cond.dtype)], dim=-1)
        return cond

    def learn(self, dataset: Any, *, steps: int | None = None, **options: Any) -> DPAgent:
        """Train the denoiser on every window of the dataset(s); returns ``self``.

        :param dataset: a ``minari.MinariDataset``, a dataset id, or a list of them (one per task).
        :param steps: gradient steps (default: ``epochs`` epochs, at least :data:`~lwd_gym.training.MIN_STEPS`).
        :param options: the run options of :meth:`BaseAgent.learn` (checkpoints, logs, validation, evaluation).
        """
        demos = self._prepare(dataset, **options)
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
            steps=stage_steps(steps, self.epochs, len(windows), self.batch_size),
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=500,
            generator=torch.Generator().manual_seed(self.seed),
            ema_model=ema,
            val_data=self._validation_snippets(make_windows),
            val_loss=loss,
            acting_attr="diffusion",
        )
        self.diffusion = ema
        self.reset()
        return self

    # ------------------------------------------------------------------ acting
    def _allocate(self, num_envs: int) -> None:
        self._plans.allocate(num_envs, self.max_action_horizon, self.action_space.shape[0], self.device)

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        history = torch.as_tensor(self._history[env_ids], device=self.device) if self.n_obs_steps > 1 else states[:, None]
        actions = self.diffusion.sample(
            self._condition(history, tasks),
            len(env_ids),
            num_inference_steps=self.num_inference_steps,
            scheduler=self.scheduler,
            generator=self.noise_generators(env_ids, deterministic),
        )
        self._plans.store(env_ids, actions.transpose(1, 2)[:, self.n_obs_steps - 1 :])
