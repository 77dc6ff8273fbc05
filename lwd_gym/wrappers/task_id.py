"""Append a one-hot task id to a Box observation: how a multi-task agent learns which task it is in."""
from __future__ import annotations

import gymnasium as gym
import numpy as np


def with_task_id(space: gym.spaces.Box, num_tasks: int) -> gym.spaces.Box:
    """``space`` extended by ``num_tasks`` one-hot entries in ``[0, 1]``."""
    return gym.spaces.Box(
        np.concatenate([space.low, np.zeros(num_tasks, space.dtype)]),
        np.concatenate([space.high, np.ones(num_tasks, space.dtype)]),
        dtype=space.dtype,
    )


class TaskId(gym.ObservationWrapper):
    """Observation ``[obs, one_hot(task_id, num_tasks)]``, the layout multi-task agents expect.

    An agent trained on a list of datasets (task ``i`` = the ``i``-th dataset) is evaluated on
    task ``i`` with ``TaskId(env, i, len(datasets))``.

    :param env: an env with a flat ``Box`` observation space.
    :param task_id: this env's task index.
    :param num_tasks: number of tasks the agent knows.
    """

    def __init__(self, env: gym.Env, task_id: int, num_tasks: int) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"TaskId needs a flat Box observation space, got {space}")
        if not 0 <= task_id < num_tasks:
            raise ValueError(f"task_id must be in [0, {num_tasks}), got {task_id}")
        self.task_id, self.num_tasks = int(task_id), int(num_tasks)
        self._one_hot = np.eye(num_tasks, dtype=space.dtype)[task_id]
        self.observation_space = with_task_id(space, num_tasks)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.concatenate([observation, self._one_hot]).astype(self.observation_space.dtype)
