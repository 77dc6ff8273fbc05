"""Random baseline: uniform actions from the action space, the lower bound of every comparison."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from lwd_gym.agents.base import BaseAgent
from lwd_gym.agents.config import RandomConfig
from lwd_gym.data.normalizer import Normalizer


class RandomAgent(BaseAgent):
    """Samples each action uniformly from the (bounded) action space.

    Give the spaces directly (``RandomAgent(env.observation_space, env.action_space)``) or let
    :meth:`learn` read them from a dataset like the other agents.  Draws come from the agent's
    per-environment noise streams, so runs are reproducible from ``seed``.

    :param observation_space: the (flat ``Box``) observation space, if known.
    :param action_space: a bounded ``Box`` action space, if known.
    :param config: a :class:`~lwd_gym.agents.config.RandomConfig` (``action_horizon``: steps one
        drawn action is repeated; 1: a fresh action every step); keyword fields apply on top.
    """

    config_class = RandomConfig

    def __init__(
        self,
        observation_space: gym.spaces.Box | None = None,
        action_space: gym.spaces.Box | None = None,
        config: RandomConfig | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        if (observation_space is None) != (action_space is None):
            raise ValueError("give both observation_space and action_space, or neither (then learn() reads them from a dataset)")
        if action_space is not None:
            self._set_spaces(observation_space, action_space, 1)
            self._identity_normalizers()
            self._build()

    def _identity_normalizers(self) -> None:
        # Actions are drawn in the env's own units; the base class (un)normalises around _act.
        self.obs_normalizer = Normalizer(np.zeros(self.state_space.shape, np.float32), np.ones(self.state_space.shape, np.float32))
        self.action_normalizer = Normalizer(np.zeros(self.action_space.shape, np.float32), np.ones(self.action_space.shape, np.float32))

    def _build(self) -> None:
        space = self.action_space
        if not (isinstance(space, gym.spaces.Box) and space.is_bounded("both")):
            raise ValueError(f"RandomAgent needs a bounded Box action space, got {space}")

    def _modules(self) -> dict[str, nn.Module]:
        return {}

    def _train(self, demos: Any) -> None:
        """Nothing to train: ``learn`` only reads the spaces (and task count) from the data."""
        self._identity_normalizers()

    def _allocate(self, num_envs: int) -> torch.Tensor:
        return torch.zeros(num_envs, self.action_space.shape[0], device=self.device)  # each environment's current draw

    def _replan(self, env_ids: np.ndarray, states: torch.Tensor, tasks: torch.Tensor | None, deterministic: bool) -> None:
        low = torch.as_tensor(self.action_space.low, device=self.device)
        high = torch.as_tensor(self.action_space.high, device=self.device)
        u = torch.stack([torch.rand(low.shape, generator=g, device=self.device) for g in self.noise_generators(env_ids, deterministic)])
        self._acting.plans[torch.as_tensor(env_ids, device=self.device)] = low + u * (high - low)

    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        return self._acting.plans
