"""Minari datasets -> validated per-episode (state, action) arrays, with optional task ids.

Everything an agent learns from passes through :func:`load_demonstrations`, so bad data
(wrong spaces, NaN, empty datasets) is rejected here with a message naming the problem.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import minari
import numpy as np



@dataclass
class Demonstrations:
    """Episodes of one or several (task) datasets.

    ``observations[i]`` holds the ``T`` observations at which ``actions[i]`` were taken (Minari's
    final observation, which has no action, is dropped); ``tasks[i]`` is the index of the dataset
    episode ``i`` came from, i.e. its task id.
    """

    observations: list[np.ndarray]
    actions: list[np.ndarray]
    tasks: np.ndarray
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box
    num_tasks: int

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(a) for a in self.actions], dtype=np.int64)


def _as_dataset(dataset) -> minari.MinariDataset:
    if isinstance(dataset, str):
        try:
            return minari.load_dataset(dataset)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"no local Minari dataset {dataset!r} (MINARI_DATASETS_PATH); local ones: {sorted(minari.list_local_datasets())}") from err
    if not isinstance(dataset, minari.MinariDataset):
        raise TypeError(f"expected a minari.MinariDataset or a dataset id, got {type(dataset).__name__}")
    return dataset


def _check_box(space: gym.Space, what: str, name: str) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"dataset {name!r}: only flat Box {what} spaces are supported, got {space}"
            + ("; flatten Dict observations with gymnasium.wrappers.FlattenObservation when collecting" if what == "observation" else "")
        )
    return space


def load_demonstrations(datasets: minari.MinariDataset | str | Sequence[minari.MinariDataset | str]) -> Demonstrations:
    """Read one dataset, or a list of datasets (one per task: task id = position in the list)."""
    many = isinstance(datasets, Sequence) and not isinstance(datasets, str)
    items = [_as_dataset(d) for d in (datasets if many else [datasets])]
    if not items:
        raise ValueError("no dataset given")
    obs_space = act_space = None
    observations, actions, tasks = [], [], []
    for task, ds in enumerate(items):
        name = ds.spec.dataset_id
        o_space = _check_box(ds.observation_space, "observation", name)
        a_space = _check_box(ds.action_space, "action", name)
        if obs_space is None:
            obs_space, act_space = o_space, a_space
        elif o_space.shape != obs_space.shape or a_space.shape != act_space.shape:
            raise ValueError(
                f"dataset {name!r} has observation/action shapes {o_space.shape}/{a_space.shape}, "
                f"but the first dataset has {obs_space.shape}/{act_space.shape}: all task datasets must share spaces"
            )
        elif not (np.array_equal(a_space.low, act_space.low) and np.array_equal(a_space.high, act_space.high)):
            raise ValueError(
                f"dataset {name!r} has action bounds [{a_space.low}, {a_space.high}], but the first dataset has "
                f"[{act_space.low}, {act_space.high}]: all task datasets must share spaces"
            )
        n_before = len(actions)
        for ep in ds.iterate_episodes():
            obs, act = np.asarray(ep.observations, dtype=np.float32), np.asarray(ep.actions, dtype=np.float32)
            if obs.ndim != 2 or act.ndim != 2 or len(obs) != len(act) + 1:
                raise ValueError(f"dataset {name!r} episode {ep.id}: expected T+1 observations and T actions, got {obs.shape} and {act.shape}")
            if len(act) == 0:
                continue
            for field, arr in (("observations", obs), ("actions", act)):
                if not np.isfinite(arr).all():
                    raise ValueError(f"dataset {name!r} episode {ep.id}: {field} contain NaN or inf")
            if np.any(act < a_space.low - 1e-5) or np.any(act > a_space.high + 1e-5):
                raise ValueError(f"dataset {name!r} episode {ep.id}: actions outside the action space [{a_space.low}, {a_space.high}]")
            observations.append(obs[:-1])
            actions.append(act)
            tasks.append(task)
        if len(actions) == n_before:
            raise ValueError(f"dataset {name!r} has no episode with at least one step")
    return Demonstrations(observations, actions, np.asarray(tasks, dtype=np.int64), obs_space, act_space, len(items))
