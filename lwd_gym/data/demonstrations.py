"""Minari datasets -> validated per-episode (state, action) arrays, with optional task ids.

Everything an agent learns from passes through :func:`load_demonstrations`, so bad data
(wrong spaces, NaN, empty datasets) is rejected here with a message naming the problem.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import gymnasium as gym
import minari
import numpy as np



@dataclass
class Demonstrations:
    """Episodes of one or several (task) datasets.

    ``observations[i]`` holds the ``T`` observations at which ``actions[i]`` were taken (Minari's
    final observation, which has no action, is dropped); ``tasks[i]`` is the index of the dataset
    episode ``i`` came from, i.e. its task id; ``seeds[i]`` the seed its env was reset with
    (Minari's episode metadata; -1 where the dataset does not record it).
    """

    observations: list[np.ndarray]
    actions: list[np.ndarray]
    tasks: np.ndarray
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box
    num_tasks: int
    seeds: np.ndarray | None = None
    #: the Minari dataset id of each task, in task order (empty when not built from datasets)
    dataset_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.seeds is None:
            self.seeds = np.full(len(self.actions), -1, dtype=np.int64)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(a) for a in self.actions], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.actions)

    def subset(self, episodes: Sequence[int] | np.ndarray) -> Demonstrations:
        """The episodes at the given indices (same spaces and task count)."""
        index = np.asarray(episodes, dtype=np.int64)
        return replace(
            self,
            observations=[self.observations[i] for i in index],
            actions=[self.actions[i] for i in index],
            tasks=self.tasks[index],
            seeds=self.seeds[index],
        )

    def split(self, fraction: float, seed: int) -> tuple[Demonstrations, Demonstrations | None]:
        """``(train, validation)``: ``floor(fraction * n)`` of each task's ``n`` episodes, drawn
        with ``seed``, are held out whole (``None`` when that is none), so the validation loss
        is measured on episodes the model never saw, and every task keeps its training data."""
        if not 0 <= fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {fraction!r}")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A11]))
        held = [rng.permutation(idx)[: int(fraction * len(idx))] for idx in (np.flatnonzero(self.tasks == t) for t in range(self.num_tasks))]
        held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
        if len(held_out) == 0:
            return self, None
        keep = np.setdiff1d(np.arange(len(self)), held_out)
        return self.subset(keep), self.subset(held_out)


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
    observations, actions, tasks, seeds = [], [], [], []
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
        episode_seeds = _episode_seeds(ds)
        # float32 rounding slack, relative to the width of each action's range (an absolute 1e-5
        # would accept actions 50x outside a [-1e-7, 1e-7] space)
        with np.errstate(invalid="ignore", over="ignore"):
            width = np.where(np.isfinite(a_space.high - a_space.low), a_space.high - a_space.low, 0.0)
        tolerance = 1e-5 * np.maximum(width, np.finfo(np.float32).tiny)
        for ep in ds.iterate_episodes():
            obs, act = np.asarray(ep.observations, dtype=np.float32), np.asarray(ep.actions, dtype=np.float32)
            if obs.ndim != 2 or act.ndim != 2 or len(obs) != len(act) + 1:
                raise ValueError(f"dataset {name!r} episode {ep.id}: expected T+1 observations and T actions, got {obs.shape} and {act.shape}")
            if len(act) == 0:
                continue
            for field, arr in (("observations", obs), ("actions", act)):
                if not np.isfinite(arr).all():
                    raise ValueError(f"dataset {name!r} episode {ep.id}: {field} contain NaN or inf")
            if np.any(act < a_space.low - tolerance) or np.any(act > a_space.high + tolerance):
                raise ValueError(f"dataset {name!r} episode {ep.id}: actions outside the action space [{a_space.low}, {a_space.high}]")
            observations.append(obs[:-1])
            actions.append(act)
            tasks.append(task)
            seeds.append(episode_seeds.get(int(ep.id), -1))
        if len(actions) == n_before:
            raise ValueError(f"dataset {name!r} has no episode with at least one step")
    return Demonstrations(
        observations, actions, np.asarray(tasks, dtype=np.int64), obs_space, act_space, len(items), np.asarray(seeds, dtype=np.int64),
        tuple(ds.spec.dataset_id for ds in items),
    )  # fmt: skip


def _episode_seeds(ds: minari.MinariDataset) -> dict[int, int]:
    """Episode id -> the seed its env was reset with, from Minari's episode metadata (if recorded)."""
    try:
        metadata = ds.storage.get_episode_metadata(ds.episode_indices)
        return {int(m["id"]): int(m["seed"]) for m in metadata if m.get("seed") is not None}
    except (AttributeError, KeyError, TypeError, ValueError):  # a dataset written without seeds
        return {}
