"""Tell a multi-task agent which task it is in: a one-hot task id in the observation.

Agents trained on a list of datasets (task ``i`` = the ``i``-th dataset) read their task from
the last ``num_tasks`` entries of a flat observation, the layout :class:`TaskId` produces for
``Box`` observations.  For ``Dict`` observations it adds a ``"task"`` key instead, for users
whose own policies take dict inputs (lwd-gym agents need flat ``Box`` observations).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def with_task_id(space: gym.spaces.Box, num_tasks: int) -> gym.spaces.Box:
    """``space`` extended by ``num_tasks`` one-hot entries in ``[0, 1]``."""
    return gym.spaces.Box(
        np.concatenate([space.low, np.zeros(num_tasks, space.dtype)]),
        np.concatenate([space.high, np.ones(num_tasks, space.dtype)]),
        dtype=space.dtype,
    )


class TaskId(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observation ``[obs, one_hot(task_id, num_tasks)]`` (``Box``) or ``{**obs, "task": one_hot}`` (``Dict``).

    An agent trained on a list of datasets (task ``i`` = the ``i``-th dataset) is evaluated on
    task ``i`` with ``TaskId(env, i, len(datasets))``.

    :param env: an env with a flat ``Box`` or a ``Dict`` observation space.
    :param task_id: this env's task index.
    :param num_tasks: number of tasks the agent knows.
    """

    def __init__(self, env: gym.Env, task_id: int, num_tasks: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, task_id=task_id, num_tasks=num_tasks)
        gym.ObservationWrapper.__init__(self, env)
        if int(num_tasks) != num_tasks or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
        if int(task_id) != task_id or not 0 <= task_id < num_tasks:
            raise ValueError(f"task_id must be an integer in [0, {num_tasks}), got {task_id!r}")
        self.task_id, self.num_tasks = int(task_id), int(num_tasks)
        space = env.observation_space
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            self._one_hot = np.eye(self.num_tasks, dtype=space.dtype)[self.task_id]
            self.observation_space = with_task_id(space, self.num_tasks)
        elif isinstance(space, gym.spaces.Dict):
            if "task" in space.spaces:
                raise ValueError("the Dict observation already has a 'task' key")
            self._one_hot = np.eye(self.num_tasks, dtype=np.float32)[self.task_id]
            task_space = gym.spaces.Box(0.0, 1.0, (self.num_tasks,), np.float32)
            self.observation_space = gym.spaces.Dict({**space.spaces, "task": task_space})
        else:
            raise ValueError(f"TaskId needs a flat Box or a Dict observation space, got {space}")

    def observation(self, observation: Any) -> Any:
        if isinstance(self.observation_space, gym.spaces.Dict):
            return {**observation, "task": self._one_hot.copy()}
        return np.concatenate([observation, self._one_hot]).astype(self.observation_space.dtype)
