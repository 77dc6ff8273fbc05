"""What an agent holds per environment while it acts, and the open-loop agents' plans.

:class:`ActingState` is every per-environment piece of acting state in one object: where each
environment is in its plan, its sampling-noise stream and seed, its observation history (DP),
and the plans themselves (an agent's own container: LWD's generated policies, DP's and LDP's
action chunks).  ``BaseAgent`` keeps one (``None`` until the first ``predict`` or after
``reset``), so copying an agent's acting state is copying one object.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lwd_gym.data.normalizer import Normalizer


@dataclass
class ActingState:
    """Per-environment acting state of ``num_envs`` environments.

    :param steps: ``[n]`` steps each environment has followed its current plan (``-1``: none yet).
    :param noise: each environment's sampling-noise generator (its own stream, so its plans do
        not depend on how many environments share the batch).
    :param seeds: each environment's seed, for deterministic sampling and ``seed_envs``.
    :param plans: the agent's plans for every environment (see its ``_allocate``).
    :param history: ``[n, n_obs_steps, state_dim]`` normalised observations, on the host (updated
        every step, so steps between plans skip torch), for agents conditioned on several.
    """

    steps: np.ndarray
    noise: list[torch.Generator]
    seeds: list[int]
    plans: Any = None
    history: np.ndarray | None = None

    @classmethod
    def new(cls, num_envs: int, plans: Any, seed: int, rng: torch.Generator, device: torch.device) -> ActingState:
        """Fresh state: no plans followed yet, noise streams drawn from ``rng``, seeds from ``seed``."""
        draws = torch.randint(2**62, (num_envs,), generator=rng, device=device).tolist()
        return cls(
            steps=np.full(num_envs, -1, dtype=np.int64),
            noise=[torch.Generator(device).manual_seed(s) for s in draws],
            seeds=[seed * 1_000_003 + i for i in range(num_envs)],
            plans=plans,
        )

    @property
    def num_envs(self) -> int:
        return len(self.steps)

    def seed(self, env_ids: Any, seeds: Any) -> None:
        for i, s in zip(env_ids, seeds):
            self.seeds[int(i)] = int(s)
            self.noise[int(i)].manual_seed(int(s))

    def noise_generators(self, env_ids: np.ndarray, deterministic: bool, device: torch.device) -> list[torch.Generator]:
        """One generator per environment in ``env_ids``: its own stream, or (``deterministic``)
        one freshly seeded with its seed, so the same observation gives the same plan."""
        if deterministic:
            return [torch.Generator(device).manual_seed(self.seeds[int(i)]) for i in env_ids]
        return [self.noise[int(i)] for i in env_ids]

    def update_history(self, states: np.ndarray, new_episode: np.ndarray, n_obs_steps: int) -> None:
        """Append normalised ``states`` to each environment's history; a new episode's history is
        its first observation repeated (Diffusion Policy's padding)."""
        if self.history is None:
            self.history = np.repeat(states[:, None], n_obs_steps, axis=1)
            return
        self.history[:, :-1] = self.history[:, 1:]
        self.history[:, -1] = states
        self.history[new_episode] = states[new_episode][:, None]


class ActionChunks:
    """Per-environment open-loop plans (DP, LDP): one chunk of normalised actions per environment,
    read one step at a time, on the device (:meth:`at`) or from a host copy (:meth:`at_host`)."""

    def __init__(self, num_envs: int, length: int, action_dim: int, device: torch.device) -> None:
        self.chunks = torch.zeros(num_envs, length, action_dim, device=device)  # [n_envs, length, action_dim]
        self.host = np.zeros((num_envs, length, action_dim), np.float32)  # the same, refreshed once per plan

    def store(self, env_ids: np.ndarray, chunks: torch.Tensor) -> None:
        self.chunks[torch.as_tensor(env_ids, device=chunks.device)] = chunks
        self.host[env_ids] = chunks.float().cpu().numpy()  # one device->host copy per plan

    def at(self, steps: np.ndarray) -> torch.Tensor:
        """Action ``steps[i]`` of environment ``i``'s chunk, for every environment."""
        index = torch.as_tensor(steps, device=self.chunks.device)
        return self.chunks[torch.arange(len(index), device=index.device), index]

    def at_host(self, steps: np.ndarray) -> np.ndarray:
        """:meth:`at` from the host copy, as numpy."""
        return self.host[np.arange(len(steps)), steps]


class ChunkActing:
    """Acting of open-loop agents (DP, LDP), mixed in before their base class: each
    environment's action is the next step of its chunk (``self._acting.plans``, :class:`ActionChunks`)."""

    _acting: ActingState
    action_normalizer: Normalizer

    def _act(self, states: torch.Tensor, tasks: torch.Tensor | None, steps: np.ndarray) -> torch.Tensor:
        return self._acting.plans.at(steps)

    def _act_host(self, obs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self.action_normalizer.unnormalize(self._acting.plans.at_host(steps))
