"""Execute a chunk of actions per ``step`` (Diffusion Policy's ``MultiStepWrapper`` idea).

Action-chunking policies predict ``k`` actions at once and run them open loop; wrapping the
env with :class:`ActionChunk` lets such a policy be stepped (and evaluated) like any other
agent, one chunk per ``step``, optionally seeing the last ``n_obs_steps`` observations.
"""
from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np


class ActionChunk(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Take ``chunk_size`` actions per ``step``: run them in order, stopping early at the episode's end.

    * Action space: ``Box`` of shape ``(chunk_size, *inner_shape)`` (the inner bounds repeated).
    * Observation: the last observation, or with ``n_obs_steps > 1`` the last ``n_obs_steps``
      observations stacked, shape ``(n_obs_steps, *obs_shape)``, oldest first; at reset the
      stack is filled with the reset observation.
    * Reward: the sum over the executed steps; ``terminated``/``truncated``: those of the last
      executed step (the rest of the chunk is dropped when the episode ends).
    * ``info``: the last step's info, plus ``is_success`` (true if *any* executed step's info
      said so, so a success mid-chunk is not lost) and ``executed_steps`` (0 at reset).

    :param env: an env with a ``Box`` action space (and a ``Box`` observation space if
        ``n_obs_steps > 1``).
    :param chunk_size: actions per ``step`` (``k >= 1``).
    :param n_obs_steps: observations returned per ``step`` (``>= 1``; ``1`` returns the plain
        observation, without a stacking axis).
    """

    def __init__(self, env: gym.Env, chunk_size: int, n_obs_steps: int = 1) -> None:
        # Recorded so the wrapped env's spec can be re-made (gymnasium.make, Minari's env spec).
        gym.utils.RecordConstructorArgs.__init__(self, chunk_size=chunk_size, n_obs_steps=n_obs_steps)
        gym.Wrapper.__init__(self, env)
        if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if not isinstance(n_obs_steps, (int, np.integer)) or n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be an integer >= 1, got {n_obs_steps!r}")
        act_space = env.action_space
        if not isinstance(act_space, gym.spaces.Box):
            raise ValueError(f"ActionChunk needs a Box action space, got {act_space}")
        self.chunk_size, self.n_obs_steps = int(chunk_size), int(n_obs_steps)
        self.action_space = gym.spaces.Box(
            np.broadcast_to(act_space.low, (self.chunk_size, *act_space.shape)),
            np.broadcast_to(act_space.high, (self.chunk_size, *act_space.shape)),
            dtype=act_space.dtype,
        )
        if self.n_obs_steps > 1:
            obs_space = env.observation_space
            if not isinstance(obs_space, gym.spaces.Box):
                raise ValueError(f"stacking observations (n_obs_steps > 1) needs a Box observation space, got {obs_space}")
            self.observation_space = gym.spaces.Box(
                np.broadcast_to(obs_space.low, (self.n_obs_steps, *obs_space.shape)),
                np.broadcast_to(obs_space.high, (self.n_obs_steps, *obs_space.shape)),
                dtype=obs_space.dtype,
            )
        self._obs_history: deque[Any] = deque(maxlen=self.n_obs_steps)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        # Pad with the first observation, as if the episode had started n_obs_steps - 1 steps
        # earlier standing still: the stack always has its full shape.
        self._obs_history.clear()
        self._obs_history.extend([obs] * self.n_obs_steps)
        return self._observation(), {**info, "is_success": bool(info.get("is_success", False)), "executed_steps": 0}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        chunk = np.asarray(action)
        if chunk.shape != self.action_space.shape:
            raise ValueError(
                f"ActionChunk expects a chunk of shape {self.action_space.shape} "
                f"(chunk_size, *action_shape), got {chunk.shape}"
            )
        total_reward = 0.0
        success = False
        terminated = truncated = False
        info: dict[str, Any] = {}
        executed = 0
        for inner_action in chunk:
            obs, reward, terminated, truncated, info = self.env.step(inner_action)
            executed += 1
            total_reward += float(reward)
            success = success or bool(info.get("is_success", False))
            self._obs_history.append(obs)
            if terminated or truncated:
                break  # the episode is over: the rest of the chunk has nothing to act on
        info = {**info, "is_success": success, "executed_steps": executed}
        return self._observation(), total_reward, terminated, truncated, info

    def _observation(self) -> Any:
        if self.n_obs_steps == 1:
            return self._obs_history[-1]
        return np.stack(self._obs_history).astype(self.observation_space.dtype, copy=False)
