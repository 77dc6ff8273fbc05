"""Gaussian observation and action noise for robustness evaluation of any ``Box`` env.

The noise comes from the wrapped env's ``np_random``, so ``reset(seed=s)`` reproduces a noisy
episode exactly (given the same actions) and a run's noise follows the env's seeding, with no
extra generator to seed.  The draws advance that generator, so an *unseeded* later reset starts
differently than it would without the wrapper: seed every episode (``reset(seed=s)``) to compare
noisy and clean runs on the same initial states.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import ArrayLike


def _check_noise_args(space: gym.Space, what: str, scale: ArrayLike, p: float) -> tuple[np.ndarray, float]:
    """Validated ``(scale broadcast to the space's shape, p)``."""
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"Gaussian {what} noise needs a Box {what} space, got {space}")
    if not np.issubdtype(space.dtype, np.floating):
        # Adding Gaussian noise to an integer Box would silently truncate it.
        raise ValueError(f"Gaussian {what} noise needs a floating-point Box, got dtype {space.dtype}")
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    try:
        scale_arr = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a number or an array of numbers, got {scale!r}") from None
    if not np.all(np.isfinite(scale_arr)) or np.any(scale_arr < 0):
        raise ValueError(f"scale must be finite and >= 0, got {scale!r}")
    try:
        scale_arr = np.broadcast_to(scale_arr, space.shape).copy()
    except ValueError:
        raise ValueError(f"scale of shape {scale_arr.shape} does not broadcast to the {what} shape {space.shape}") from None
    return scale_arr, p


def _record_args(wrapper: gym.utils.RecordConstructorArgs, scale: ArrayLike, p: float) -> None:
    # Recorded so the wrapped env's spec can be re-made (gymnasium.make, Minari's env spec);
    # plain floats/lists, since specs are serialised to JSON.
    gym.utils.RecordConstructorArgs.__init__(wrapper, scale=np.asarray(scale, dtype=np.float64).tolist(), p=float(p))


def _perturb(x: np.ndarray, scale: np.ndarray, p: float, rng: np.random.Generator, space: gym.spaces.Box) -> np.ndarray:
    """``x`` plus N(0, scale^2) noise with probability ``p``, clipped to ``space``."""
    # p == 1 draws no coin, so the always-on noise consumes the generator as little as possible.
    if p < 1.0 and rng.random() >= p:
        return x
    noisy = np.asarray(x, dtype=np.float64) + scale * rng.standard_normal(space.shape)
    return np.clip(noisy, space.low, space.high).astype(space.dtype)


class ObservationNoise(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Add Gaussian noise ``N(0, scale^2)`` to every observation (reset's too), with probability ``p``.

    The noisy observation is clipped to the observation space's bounds (infinite bounds clip
    nothing), so it stays a valid observation.

    :param env: an env with a floating-point ``Box`` observation space.
    :param scale: the noise std: a number, or one per dimension (broadcast to the obs shape).
    :param p: probability that a given observation is perturbed (one draw per observation).
    """

    def __init__(self, env: gym.Env, scale: ArrayLike, p: float = 1.0) -> None:
        self.scale, self.p = _check_noise_args(env.observation_space, "observation", scale, p)
        _record_args(self, scale, p)
        gym.ObservationWrapper.__init__(self, env)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return _perturb(observation, self.scale, self.p, self.np_random, self.observation_space)


class ActionNoise(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Add Gaussian noise ``N(0, scale^2)`` to each action before the env sees it, with probability ``p``.

    The noisy action is clipped to the action space (an executed action is always valid).

    :param env: an env with a floating-point ``Box`` action space.
    :param scale: the noise std: a number, or one per dimension (broadcast to the action shape).
    :param p: probability that a given action is perturbed (one draw per step).
    """

    def __init__(self, env: gym.Env, scale: ArrayLike, p: float = 1.0) -> None:
        self.scale, self.p = _check_noise_args(env.action_space, "action", scale, p)
        _record_args(self, scale, p)
        gym.ActionWrapper.__init__(self, env)

    def action(self, action: Any) -> np.ndarray:
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(f"ActionNoise expects an action of shape {self.action_space.shape}, got {action.shape}")
        return _perturb(action, self.scale, self.p, self.np_random, self.action_space)
