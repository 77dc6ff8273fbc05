"""Latent Diffusion Policy (LDP) baseline: LWD's latent space, but the decoder outputs actions.

Same snippet encoder and conditional latent diffusion as LWD (:mod:`lwd_gym.agents.latent`);
the decoder is an MLP that turns ``z`` into an action chunk of ``action_horizon`` steps, executed
open-loop.  Comparing it with LWD isolates "closed-loop generated policy" from "latent space".
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lwd_gym.agents.base import ActionChunks, ChunkActing
from lwd_gym.agents.latent import LatentDiffusionAgent
from lwd_gym.nn.vae import ChunkVAE
from lwd_gym.validation import widths


class LDPAgent(ChunkActing, LatentDiffusionAgent):
    """Latent diffusion over action chunks, executed open-loop.

    :param action_horizon: actions executed per plan; at most ``snippet_length``.
    :param snippet_length: steps per snippet and per decoded chunk (default ``action_horizon``).
    :param pad_short_episodes: train on demonstrations shorter than a snippet too, end-padded
        with their last step and masked out of the loss (default: they are skipped).
    :param vae_windows: the snippets the VAE trains on: ``"all"`` (a window starting at every
        step) or ``"plan_starts"`` (only windows starting where plans start, steps ``0, H_a, 2 H_a,
        ...``: with one policy per episode, whole episodes, as the paper encodes Metaworld's).
    :param decoder_hidden: hidden widths of the MLP decoder ``z -> chunk``.

    The other parameters are :class:`~lwd_gym.agents.LWDAgent`'s.
    """

    def __init__(
        self,
        action_horizon: int = 8,
        snippet_length: int | None = None,
        pad_short_episodes: bool = False,
        vae_windows: str = "all",
        latent_dim: int = 256,
        latent_length: int = 16,
        decoder_hidden: Sequence[int] = (256, 256),
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
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> None:
        decoder_hidden = widths("decoder_hidden", decoder_hidden)
        super().__init__(
            action_horizon, snippet_length, latent_dim, latent_length, kl_coef, diffusion_size, condition_on,
            num_inference_steps, scheduler, batch_size, vae_lr, diffusion_lr, vae_epochs, diffusion_epochs, device, seed,
            pad_short_episodes, denoiser, vae_windows,
        )  # fmt: skip
        self.decoder_hidden = decoder_hidden
        self._plans = ActionChunks()

    @property
    def max_action_horizon(self) -> int:
        # A chunk holds snippet_length actions; executing more would need actions it never made.
        return self.snippet_length

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "decoder_hidden": self.decoder_hidden}

    def _make_vae(self) -> nn.Module:
        return ChunkVAE(self.snippet_length, self.state_space.shape[0], self.action_space.shape[0], self.latent_dim, self.decoder_hidden)

    def _allocate(self, num_envs: int) -> None:
        self._plans.allocate(num_envs, self.snippet_length, self.action_space.shape[0], self.device)

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        self._plans.store(env_ids, self.vae.decode(self.sample_latents(states, tasks, deterministic, env_ids)))
