"""Import users' own demonstration files (robomimic HDF5, Diffusion Policy zarr) as local Minari datasets.

Nothing is downloaded: both importers read a file the user already has and write a Minari
dataset with flat float32 Box observations, which is what :func:`load_demonstrations` (and so
every agent) consumes. Neither format comes with a Gymnasium env: by default the datasets have
no env spec; given ``env_id`` (and optionally ``env_kwargs``), the dataset records that env's
spec and its Minari ``requirements`` (e.g. ``["lwd-gym[robosuite]"]``), so
``dataset.recover_environment()`` / :func:`lwd_gym.data.recover_env` rebuild it.  The data's
own spaces stay the dataset's spaces (Minari stores explicit spaces as given and never compares
them with the env's), so the env's observation and action shapes are checked against the data
before anything is written.  The source layout (file, keys, ...) is kept in the dataset's
metadata under ``"lwd_import"`` (``ds.storage.metadata["lwd_import"]``) and summarised in its
description.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import minari
import numpy as np
from minari.data_collector.episode_buffer import EpisodeBuffer

from lwd_gym.data.collect import write_minari_dataset
from lwd_gym.envs.registration import env_requirements, make_env

# The low-dim observation keys of robomimic's own low-dim configs (robosuite tasks).
ROBOMIMIC_DEFAULT_OBS_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object")

_DEMO_NAME = re.compile(r"demo_(\d+)")


def import_robomimic_hdf5(
    path: str | PathLike[str],
    dataset_id: str,
    *,
    obs_keys: Sequence[str] | None = None,
    env_id: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> minari.MinariDataset:
    """Import a robomimic HDF5 file (``data/demo_N/{obs,actions,rewards,dones}``) as a Minari dataset.

    Demos are taken in the numeric order of ``N``. The observation is the concatenation, in
    ``obs_keys`` order (default :data:`ROBOMIMIC_DEFAULT_OBS_KEYS`), of each key's per-step
    values flattened, as float32. robomimic stores ``T`` observations per demo while Minari
    wants ``T + 1``: the final one is ``next_obs`` at the last step when the demo has
    ``next_obs`` for every key, else a repeat of the last observation.
    Terminations are the demo's ``dones``; the last step is marked truncated when the demo does
    not end with a done. Missing ``rewards``/``dones`` read as zeros. ``infos["demo_index"]``
    holds ``N`` (one copy per observation). The action space is robomimic's ``[-1, 1]`` when
    every action lies in it, else the per-dimension min/max of the data.
    The file's ``env_args`` JSON and the key layout are stored in the dataset's metadata.

    ``env_id`` (made with ``gymnasium.make(env_id, **env_kwargs)`` through
    :func:`~lwd_gym.envs.registration.make_env`), e.g. ``"lwd_gym/Lift-v0"`` for robomimic's
    Lift low-dim data with the default keys, makes the dataset record that env (see the module
    docstring); its observation and action shapes must be the data's (a ``ValueError`` names
    the mismatch, and nothing is written).
    """
    _check_env_arguments(env_id, env_kwargs)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"robomimic HDF5 file not found: {path}")
    if isinstance(obs_keys, str):  # "object" would otherwise be split into characters
        raise ValueError(f"obs_keys must be a list of observation keys, got the string {obs_keys!r}; did you mean [{obs_keys!r}]?")
    keys = tuple(ROBOMIMIC_DEFAULT_OBS_KEYS if obs_keys is None else obs_keys)
    if not keys:
        raise ValueError("obs_keys is empty: name at least one observation key")
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file: {err}") from err
    with file:
        data = file.get("data")
        if not isinstance(data, h5py.Group):
            raise ValueError(f"{path}: not a robomimic HDF5 file: no 'data' group")
        # Numeric order: a lexical sort would put demo_10 before demo_2.
        demos = sorted((int(m.group(1)), name) for name in data if (m := _DEMO_NAME.fullmatch(name)))
        if not demos:
            raise ValueError(f"{path}: no demos in the 'data' group (expected demo_0, demo_1, ...); it holds {sorted(data)}")
        env_args = data.attrs.get("env_args")
        if isinstance(env_args, bytes):  # fixed-length HDF5 strings come back as bytes
            env_args = env_args.decode()
        buffers, key_dims = [], None
        for index, name in demos:
            buffer, dims = _read_robomimic_demo(data[name], f"{path.name}: {name}", index, keys)
            if key_dims is None:
                key_dims = dims
            elif dims != key_dims:
                raise ValueError(f"{path.name}: {name} has obs key sizes {dict(zip(keys, dims))}, but the first demo has {dict(zip(keys, key_dims))}")
            elif buffer.actions.shape[1] != buffers[0].actions.shape[1]:
                raise ValueError(f"{path.name}: {name} has {buffer.actions.shape[1]}-d actions, but the first demo has {buffers[0].actions.shape[1]}-d")
            buffers.append(buffer)
    actions = np.concatenate([b.actions for b in buffers])
    if actions.min() >= -1.0 and actions.max() <= 1.0:
        action_space = gym.spaces.Box(-1.0, 1.0, (actions.shape[1],), np.float32)
    else:
        action_space = _data_box(actions)
    description = (
        f"robomimic demonstrations imported from {path.name}. Observation = concatenation of obs keys "
        f"{list(keys)} (sizes {key_dims}), flattened per step, float32; each episode's final observation is "
        "next_obs at its last step if the demo has it, else a repeat of its last observation. "
        f"Terminations = dones; infos['demo_index'] = N of demo_N. env_args: {env_args}"
    )
    import_info = {
        "format": "robomimic_hdf5",
        "source": str(path),
        "obs_keys": list(keys),
        "obs_key_sizes": key_dims,
        "env_args": env_args,
    }
    return _write(
        dataset_id, buffers, action_space, overwrite=overwrite, description=description, import_info=import_info, env_id=env_id, env_kwargs=env_kwargs
    )


def _read_robomimic_demo(demo: h5py.Group, where: str, index: int, keys: tuple[str, ...]) -> tuple[EpisodeBuffer, list[int]]:
    """One demo -> an EpisodeBuffer, plus the flattened size of each obs key."""
    missing = [field for field in ("actions", "obs") if field not in demo]
    if missing:
        raise ValueError(f"{where} has no {' or '.join(repr(m) for m in missing)}")
    if not isinstance(demo["actions"], h5py.Dataset):
        raise ValueError(f"{where}: 'actions' is a group, expected a dataset of shape [T, action_dim]")
    if not isinstance(demo["obs"], h5py.Group):
        raise ValueError(f"{where}: 'obs' is a dataset, expected a group of per-key datasets")
    actions = np.asarray(demo["actions"][()], dtype=np.float32)
    if actions.ndim == 0:
        raise ValueError(f"{where}: 'actions' is a scalar, expected one action per step [T, action_dim]")
    steps = len(actions)
    if steps == 0:
        raise ValueError(f"{where} has no steps")
    actions = actions.reshape(steps, -1)
    if not np.isfinite(actions).all():
        raise ValueError(f"{where}: actions contain NaN or inf")
    obs_group = demo["obs"]
    absent = [key for key in keys if key not in obs_group]
    if absent:
        raise ValueError(f"{where}: obs key(s) {absent} not found; available obs keys: {sorted(obs_group)}")
    parts = [_steps(obs_group[key], steps, f"{where}: obs/{key}").reshape(steps, -1) for key in keys]
    observations = np.concatenate(parts, axis=1)
    next_group = demo.get("next_obs")
    if isinstance(next_group, h5py.Group) and all(key in next_group for key in keys):
        # Only the last row is needed; next_obs[t] is obs[t + 1] for the earlier steps.
        last_parts = [_steps(next_group[key], steps, f"{where}: next_obs/{key}", last_only=True).reshape(-1) for key in keys]
        for key, part, obs_part in zip(keys, last_parts, parts):
            if part.size != obs_part.shape[1]:
                raise ValueError(f"{where}: next_obs/{key} has {part.size} values per step but obs/{key} has {obs_part.shape[1]}")
        last = np.concatenate(last_parts)
    else:
        # No terminal observation stored: repeating the last one keeps Minari's T+1 layout
        # without inventing data (agents drop the final observation anyway).
        last = observations[-1]
    observations = np.concatenate([observations, last[None]])
    if not np.isfinite(observations).all():
        raise ValueError(f"{where}: observations contain NaN or inf")
    rewards = _optional_steps(demo, "rewards", steps, where).astype(np.float64)
    terminations = _optional_steps(demo, "dones", steps, where).astype(bool)
    truncations = np.zeros(steps, dtype=bool)
    # Minari episodes end with a termination or a truncation; a demo cut without "done" was truncated.
    truncations[-1] = not terminations[-1]
    buffer = EpisodeBuffer(
        observations=observations,
        actions=actions,
        rewards=rewards,
        terminations=terminations,
        truncations=truncations,
        infos={"demo_index": np.full(steps + 1, index, dtype=np.int64)},
    )
    return buffer, [part.shape[1] for part in parts]


def _steps(dataset: h5py.Dataset, steps: int, what: str, *, last_only: bool = False) -> np.ndarray:
    """Read a per-step dataset (or only its last row) as float32, checking its length first."""
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"{what} is a group, expected a dataset with one row per step")
    length = dataset.shape[0] if dataset.shape else 0
    if length != steps:
        raise ValueError(f"{what} has {length} steps, but actions has {steps}")
    return np.asarray(dataset[steps - 1] if last_only else dataset[()], dtype=np.float32)


def _optional_steps(demo: h5py.Group, field: str, steps: int, where: str) -> np.ndarray:
    """``rewards``/``dones`` as a (steps,) array; zeros when absent (robomimic's BC needs neither)."""
    if field not in demo:
        return np.zeros(steps)
    values = np.asarray(demo[field][()]).reshape(-1)
    if len(values) != steps:
        raise ValueError(f"{where}: {field} has {len(values)} steps, but actions has {steps}")
    return values


def import_diffusion_policy_zarr(
    path: str | PathLike[str],
    dataset_id: str,
    *,
    obs_key: str = "state",
    action_key: str = "action",
    env_id: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> minari.MinariDataset:
    """Import a Diffusion Policy replay buffer (zarr folder or ``.zarr.zip``) as a Minari dataset.

    The buffer holds ``data/<key>`` arrays of ``N`` rows and ``meta/episode_ends`` (cumulative
    exclusive ends): episode ``i`` is rows ``[ends[i-1], ends[i])``. Observations are
    ``data/<obs_key>`` rows flattened to float32 (e.g. keypoint ``(N, 9, 2)`` -> 18); as the
    buffer stores no terminal observation, each episode's final (``T + 1``-th) observation
    repeats its last row. Rewards are zero (none stored), nothing terminates and the last
    step of each episode is truncated. The action space is the per-dimension min/max of
    ``data/<action_key>``. Episode ``i`` of the dataset is episode ``i`` of the buffer.

    ``env_id`` / ``env_kwargs``: the env the dataset records, as for
    :func:`import_robomimic_hdf5` (e.g. ``"gym_pusht/PushT-v0"`` for Diffusion Policy's PushT
    ``state`` data, with ``obs_key="state"``).
    """
    try:
        import zarr  # optional dependency: only this importer needs it
    except ImportError as err:
        raise ImportError("importing Diffusion Policy zarr data needs zarr: pip install 'lwd-gym[zarr]' (or pip install zarr)") from err
    _check_env_arguments(env_id, env_kwargs)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Diffusion Policy zarr data not found: {path}")
    # Diffusion Policy also ships zipped buffers, which zarr opens only through a ZipStore.
    zipped = path.suffix == ".zip"
    store: Any = zarr.storage.ZipStore(str(path), mode="r") if zipped else str(path)
    try:
        try:
            root = zarr.open_group(store, mode="r")
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"{path} is not a zarr group: {err}") from err
        if "data" not in root:
            raise ValueError(f"{path}: not a Diffusion Policy replay buffer: no 'data' group")
        if "meta" not in root or "episode_ends" not in root["meta"]:
            raise ValueError(f"{path}: not a Diffusion Policy replay buffer: no 'meta/episode_ends'")
        data = root["data"]
        for key in (obs_key, action_key):
            if key not in data:
                raise ValueError(f"{path}: no array data/{key}; available keys: {sorted(data.array_keys())}")
        obs_raw = np.asarray(data[obs_key][:])
        actions = np.asarray(data[action_key][:], dtype=np.float32)
        ends = np.asarray(root["meta"]["episode_ends"][:]).astype(np.int64).reshape(-1)
    finally:
        if zipped:
            store.close()
    num_rows = len(actions)
    if len(obs_raw) != num_rows:
        raise ValueError(f"{path}: data/{obs_key} has {len(obs_raw)} rows but data/{action_key} has {num_rows}")
    if ends.size == 0:
        raise ValueError(f"{path}: meta/episode_ends is empty: no episodes")
    starts = np.concatenate([[0], ends[:-1]])
    if np.any(ends <= starts) or ends[-1] != num_rows:
        raise ValueError(f"{path}: episode_ends must be strictly increasing and end at N={num_rows} (rows of data/{action_key}), got {ends}")
    observations = obs_raw.reshape(num_rows, -1).astype(np.float32)
    actions = actions.reshape(num_rows, -1)
    for what, values in ((f"data/{obs_key}", observations), (f"data/{action_key}", actions)):
        if not np.isfinite(values).all():
            raise ValueError(f"{path}: {what} contains NaN or inf")
    buffers = []
    for start, end in zip(starts, ends):
        steps = int(end - start)
        truncations = np.zeros(steps, dtype=bool)
        truncations[-1] = True  # no terminal flags are stored: every episode just stops
        buffers.append(
            EpisodeBuffer(
                observations=np.concatenate([observations[start:end], observations[end - 1 : end]]),
                actions=actions[start:end],
                rewards=np.zeros(steps),
                terminations=np.zeros(steps, dtype=bool),
                truncations=truncations,
            )
        )
    description = (
        f"Diffusion Policy replay buffer imported from {path.name}. Observation = data/{obs_key} "
        f"(per-step shape {list(obs_raw.shape[1:])}) flattened to {observations.shape[1]} float32 values; "
        f"action = data/{action_key}. Each episode's final observation repeats its last row "
        "(the buffer stores no terminal observation); rewards are 0 and every episode ends truncated."
    )
    import_info = {
        "format": "diffusion_policy_zarr",
        "source": str(path),
        "obs_key": obs_key,
        "obs_shape": list(obs_raw.shape[1:]),
        "action_key": action_key,
    }
    return _write(
        dataset_id, buffers, _data_box(actions), overwrite=overwrite, description=description, import_info=import_info, env_id=env_id, env_kwargs=env_kwargs
    )


def _data_box(actions: np.ndarray) -> gym.spaces.Box:
    """The tightest Box holding every (T, A) action row."""
    return gym.spaces.Box(actions.min(axis=0), actions.max(axis=0), dtype=np.float32)


def _check_env_arguments(env_id: str | None, env_kwargs: Mapping[str, Any] | None) -> None:
    """Refuse, before reading any data, env arguments that cannot be meant."""
    if env_id is not None and not isinstance(env_id, str):
        raise TypeError(f"env_id must be a Gymnasium env id (a string), got {type(env_id).__name__}")
    if env_id is None and env_kwargs:
        raise ValueError("env_kwargs were given without env_id: name the env they are for")


def _check_env_spaces(env: gym.Env, env_id: str, observation_space: gym.spaces.Box, action_space: gym.spaces.Box) -> None:
    """The env takes and gives arrays of the data's shapes (bounds may differ: the data's own
    spaces are the dataset's), or a ValueError naming each mismatch."""
    problems = []
    if not isinstance(env.observation_space, gym.spaces.Box) or env.observation_space.shape != observation_space.shape:
        problems.append(f"its observations are {env.observation_space}, the data's are {observation_space.shape[0]}-d vectors")
    if not isinstance(env.action_space, gym.spaces.Box) or env.action_space.shape != action_space.shape:
        problems.append(f"its actions are {env.action_space}, the data's are {action_space.shape[0]}-d vectors")
    if problems:
        raise ValueError(
            f"env_id {env_id!r} does not match the imported data: {'; '.join(problems)}. Choose the observation keys "
            "that make the env's observation, pass env_kwargs that make the env match the data (e.g. an obs_type), or leave env_id out"
        )


def _write(
    dataset_id: str,
    buffers: list[EpisodeBuffer],
    action_space: gym.spaces.Box,
    *,
    overwrite: bool,
    description: str,
    import_info: dict[str, Any],
    env_id: str | None,
    env_kwargs: Mapping[str, Any] | None,
) -> minari.MinariDataset:
    """Write the imported episodes (with ``env_id``'s spec and requirements when given)."""
    obs_dim = buffers[0].observations.shape[1]
    observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    # Made (and checked) before write_minari_dataset replaces an existing dataset.
    env = None if env_id is None else make_env(env_id, **dict(env_kwargs or {}))
    try:
        extra: dict[str, Any] = {}
        if env is not None:
            _check_env_spaces(env, env_id, observation_space, action_space)
            extra["requirements"] = env_requirements(env.spec if env.spec is not None else env_id)
            import_info = {**import_info, "env_id": env_id}  # its kwargs are in the recorded env spec
            description += f" Environment: {env_id} (recover it with dataset.recover_environment())."
        dataset = write_minari_dataset(
            dataset_id,
            buffers,
            env,
            overwrite=overwrite,
            observation_space=observation_space,
            action_space=action_space,
            description=description,
            **extra,
        )
    finally:
        if env is not None:
            env.close()
    # create_dataset_from_buffers has no field for arbitrary metadata, but the storage accepts
    # extra JSON keys; keeping the layout machine-readable lets users map dimensions back to keys.
    dataset.storage.update_metadata({"lwd_import": import_info})
    return dataset
