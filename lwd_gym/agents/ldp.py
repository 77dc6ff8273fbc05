"""Latent Diffusion Policy (LDP) baseline: LWD's latent space, but the decoder outputs actions.

Same snippet encoder and conditional latent diffusion as LWD (:mod:`lwd_gym.agents.latent`);
the decoder is an MLP that turns ``z`` into an action chunk of ``action_horizon`` steps, executed
open-loop.  Comparing it with LWD isolates "closed-loop generated policy" from "latent space".
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn

from lwd_gym.agents.acting import ActionChunks, ChunkActing
from lwd_gym.agents.config import LDPConfig
from lwd_gym.agents.latent import LatentDiffusionAgent
from lwd_gym.nn.vae import ChunkVAE


class LDPAgent(ChunkActing, LatentDiffusionAgent):
    """Latent diffusion over action chunks, executed open-loop.

    Its hyperparameters are :class:`~lwd_gym.agents.config.LDPConfig`'s (``action_horizon``:
    actions executed per plan, at most ``snippet_length``, the length of a decoded chunk).
    """

    config_class = LDPConfig

    @property
    def max_action_horizon(self) -> int:
        # A chunk holds snippet_length actions; executing more would need actions it never made.
        return self.snippet_length

    def _make_vae(self) -> nn.Module:
        return ChunkVAE(self.snippet_length, self.state_space.shape[0], self.action_space.shape[0], self.latent_dim, self.decoder_hidden)

    def _allocate(self, num_envs: int) -> ActionChunks:
        return ActionChunks(num_envs, self.snippet_length, self.action_space.shape[0], self.device)

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        self._acting.plans.store(env_ids, self.vae.decode(self.sample_latents(states, tasks, deterministic, env_ids)))
