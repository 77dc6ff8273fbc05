"""Env-agnostic demonstration collection: roll a scripted expert, write a local Minari dataset.

Used by the built-in bimodal task and meant for other experts (Metaworld, PushT, ...): an
expert is any object with ``reset(rng)`` (called at each episode start) and ``__call__(obs)``
returning an action.
"""
from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector.episode_buffer import EpisodeBuffer
from minari.storage import get_dataset_path
from tqdm.auto import tqdm


class Expert(Protocol):
    """What :func:`rollout_episodes` needs from an expert."""

    def reset(self, rng: np.random.Generator | None = None) -> None: ...

    def __call__(self, obs: Any) -> Any: ...


def rollout_episodes(
    env: gym.Env,
    expert: Expert,
    num_episodes: int,
    seed: int,
    *,
    keep_failures: bool = False,
    progress: bool = True,
    desc: str = "collect",
    episode_info: Callable[[], Mapping[str, int | float | bool]] | None = None,
) -> tuple[list[EpisodeBuffer], float]:
    """Roll ``expert`` in ``env`` for ``num_episodes`` episodes and record them.

    Episode ``i`` resets the env with ``seed + i``; the expert gets one Generator derived from
    ``seed`` for the whole run. An episode succeeds if any step's ``info["is_success"]`` is
    true. ``episode_info`` (called right after ``expert.reset``) returns per-episode scalars,
    e.g. the expert's mode, stored in ``infos`` as arrays constant over the episode.

    Returns the buffers of the kept episodes (only successful ones unless ``keep_failures``)
    and the success rate over *all* episodes. ``infos`` holds one entry per observation
    (``T + 1``: reset info, then each step's), as Minari's own DataCollector records them.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    # Spawned rather than default_rng(seed): gymnasium seeds env.reset(seed=s) with
    # default_rng(s) too, so the expert would otherwise replay episode 0's env stream.
    expert_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    buffers: list[EpisodeBuffer] = []
    successes = 0
    for i in tqdm(range(num_episodes), desc=desc, disable=not progress):
        episode_seed = seed + i
        obs, info = env.reset(seed=episode_seed)
        expert.reset(expert_rng)
        extra = dict(episode_info()) if episode_info is not None else {}
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        infos = [info]
        success = bool(info.get("is_success", False))
        done = False
        while not done:
            action = expert(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            terminations.append(bool(terminated))
            truncations.append(bool(truncated))
            infos.append(info)
            success = success or bool(info.get("is_success", False))
            done = terminated or truncated
        successes += success
        if success or keep_failures:
            info_arrays = _stack(infos, "info")
            info_arrays.update({key: np.full(len(observations), value) for key, value in extra.items()})
            buffers.append(
                EpisodeBuffer(
                    seed=episode_seed,
                    observations=_stack(observations, "observation"),
                    actions=_stack(actions, "action"),
                    rewards=np.asarray(rewards, dtype=np.float64),
                    terminations=np.asarray(terminations, dtype=bool),
                    truncations=np.asarray(truncations, dtype=bool),
                    infos=info_arrays,
                )
            )
    return buffers, successes / num_episodes


def _stack(items: list[Any], what: str) -> Any:
    """Stack per-step values into arrays, recursing into dicts (Dict spaces, nested infos),
    which is the layout Minari's storage expects."""
    first = items[0]
    if isinstance(first, Mapping):
        for item in items:
            if item.keys() != first.keys():
                # Minari needs the same keys at every step (and at reset) to store them.
                raise ValueError(f"{what} keys change within an episode: {sorted(first)} vs {sorted(item)}")
        return {key: _stack([item[key] for item in items], f"{what}[{key!r}]") for key in first}
    return np.asarray(items)


def write_minari_dataset(
    dataset_id: str,
    buffers: list[EpisodeBuffer],
    env: gym.Env | gym.envs.registration.EnvSpec | str | None = None,
    *,
    overwrite: bool = True,
    observation_space: gym.spaces.Space | None = None,
    action_space: gym.spaces.Space | None = None,
    **metadata: Any,
) -> minari.MinariDataset:
    """Write ``buffers`` as the local Minari dataset ``dataset_id`` and load it back.

    ``env`` should come from ``gymnasium.make`` (or be a spec/id) so the dataset records the
    env spec and ``recover_environment()`` works. Data imported without an env (``env=None``)
    must give both ``observation_space`` and ``action_space``; given with an env, they override
    the env's spaces. ``metadata`` goes to :func:`minari.create_dataset_from_buffers`
    (``algorithm_name``, ``author``, ``description``, ...).
    With ``overwrite`` an existing dataset with this id is replaced.
    """
    if not buffers:
        raise ValueError("no episodes to write (did every episode fail? use keep_failures=True)")
    if env is None and (observation_space is None or action_space is None):
        # Checked before the overwrite below removes an existing dataset (Minari checks too late).
        raise ValueError("without an env, both observation_space and action_space must be given")
    path = get_dataset_path(dataset_id)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"Minari dataset {dataset_id!r} already exists at {path}; pass overwrite=True")
        # Remove the folder directly (minari.delete_dataset does the same rmtree): an interrupted
        # creation leaves a folder that list_local_datasets() ignores but that blocks re-creation.
        shutil.rmtree(path)
    try:
        with warnings.catch_warnings():
            # Minari nags about every optional metadata field left as None (code_permalink, ...),
            # which is noise for a locally generated dataset.
            warnings.filterwarnings("ignore", message=r"`\w+` is set to None", category=UserWarning)
            if env is None:
                # Imported data has no env by design; Minari's warning about it is noise too.
                warnings.filterwarnings("ignore", message="env_spec is None", category=UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id, buffers, env=env, observation_space=observation_space, action_space=action_space, **metadata
            )
    except BaseException:
        # Don't leave a half-written dataset behind: it would block the next attempt.
        shutil.rmtree(path, ignore_errors=True)
        raise
    return minari.load_dataset(dataset_id)
