"""Checks of what ``predict`` is given, each refusing bad input with a clear error before any
plan changes.  Plain functions over numpy arrays: they run on the fast path between plans, so
each costs a few microseconds at most (see the comments on what is avoided and why)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from lwd_gym.data.normalizer import Normalizer


def check_observation(observation: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, bool, float]:
    """``(observations [n, *shape] float32, whether one was given, largest magnitude)`` of a
    valid input for an agent observing a flat Box of ``shape``; a clear ``ValueError`` otherwise."""
    if isinstance(observation, dict):
        raise ValueError(
            f"observation is a dict (keys {sorted(observation)}) but this agent expects a flat Box of shape {shape}; "
            "wrap the env with gymnasium.wrappers.FlattenObservation (or lwd_gym.wrappers.TaskId for task ids), as when the data were collected"
        )
    raw = np.asarray(observation)
    if raw.dtype != np.float32:
        if raw.dtype.kind not in "biuf":  # bool, int, unsigned, float; not complex, str, object
            raise ValueError(f"observation must be a real-valued numeric array, got dtype {raw.dtype} ({type(observation).__name__})")
        with np.errstate(over="ignore", invalid="ignore"):  # NaN, inf and overflow are told apart below
            obs = raw.astype(np.float32)
    else:
        obs = raw
    # One abs-max serves the finiteness check here and the normalisation check after (NaN propagates).
    peak = float(np.abs(obs).max()) if obs.size else 0.0
    if not math.isfinite(peak):
        if np.isfinite(raw).all():
            raise ValueError(f"observation has values beyond the float32 range (largest magnitude {np.abs(raw).max():.3g})")
        bad = np.argwhere(~np.isfinite(raw))[0]
        raise ValueError(f"observation contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    if obs.shape == shape:
        return obs[None], True, peak
    if obs.ndim == len(shape) + 1 and obs.shape[1:] == shape and len(obs) > 0:
        return obs, False, peak
    raise ValueError(f"observation has shape {obs.shape}; expected {shape} or (n_envs, *{shape}) with n_envs >= 1")


def check_normalisable(obs: np.ndarray, peak: float, normalizer: Normalizer, state_dim: int) -> None:
    """Refuse observations that overflow float32 once normalised by the training data's
    statistics.  Checked on the input: what a network makes of an inf input is CPU dependent
    (vectorised clamps may turn NaN into a bound), so the action check in ``predict`` alone
    cannot catch it everywhere.  ``peak``: the largest magnitude in ``obs``; within the
    normaliser's finite bound (the common case) nothing else is done."""
    if peak <= normalizer.finite_bound:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        states = normalizer.normalize(obs[:, :state_dim])
    finite = np.isfinite(states).all(axis=1)
    if not finite.all():
        envs = np.flatnonzero(~finite).tolist()
        raise FloatingPointError(
            f"observation(s) of environment(s) {envs} overflow float32 once normalised by the training data's statistics "
            f"(largest raw magnitude {np.abs(obs[~finite]).max():.3g}, far outside the training data); the agent's plans are unchanged"
        )


def check_episode_start(episode_start: Any, n: int, held_envs: int | None) -> np.ndarray:
    """``episode_start`` as bool ``[n]``.  ``held_envs``: how many environments the agent holds
    plans for (``None``: none); a batch of another size must start every episode afresh."""
    raw = np.asarray(episode_start)
    if raw.dtype != np.bool_:  # SB3 and gymnasium pass bool arrays: checked for free
        # (raw == 0) | (raw == 1), not np.isin: isin costs ~40 us on a tiny array, the fast path's whole budget
        if raw.dtype.kind not in "iuf" or not ((raw == 0) | (raw == 1)).all():
            raise ValueError(f"episode_start must hold booleans (or 0/1), got {raw!r}")
        raw = raw.astype(bool)
    starts = raw.reshape(-1)
    if starts.shape != (n,):
        raise ValueError(f"episode_start has {starts.size} entries for {n} observation(s)")
    if held_envs is not None and held_envs != n and not starts.all():
        # Continuing episodes need their plans, but the agent holds plans for another number
        # of environments: acting on would mix up environments' plans.
        raise ValueError(
            f"got a batch of {n} observation(s) but the agent holds plans for {held_envs} environment(s); "
            "a batch of another size must start new episodes (episode_start all True) or follow agent.reset()"
        )
    return starts


def task_ids(obs: np.ndarray, state_dim: int, num_tasks: int) -> np.ndarray | None:
    """Task ids from the one-hot after the state (validated); ``None`` for a single-task agent."""
    if num_tasks == 1:
        return None
    onehot = obs[:, state_dim:]
    if not (((onehot == 0) | (onehot == 1)).all() and (onehot.sum(axis=1) == 1).all()):
        raise ValueError(f"the last {num_tasks} observation entries must be a one-hot task id")
    return onehot.argmax(axis=1)
