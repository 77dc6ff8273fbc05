"""Demonstration sources: named (environment, expert) pairs that ``lwd-gym collect`` rolls out.

A source says how to build an environment and its expert; :func:`collect` rolls the expert with
:func:`~lwd_gym.data.collect.rollout_episodes` and writes a Minari dataset.  Simulator modules
(``lwd_gym.envs.metaworld``, ``...pusht``, ``...robosuite``) each define ``demo_sources()``
and must import without their simulator, so the names are listed even when an optional extra
is missing; building the env is what needs it.  Users add their own with
:func:`register_source`.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import minari
import numpy as np

from lwd_gym.data.collect import Expert, rollout_episodes, write_minari_dataset

#: Modules that contribute built-in sources through a ``demo_sources()`` function.
_SOURCE_MODULES = ("lwd_gym.envs.bimodal", "lwd_gym.envs.locomotion", "lwd_gym.envs.metaworld", "lwd_gym.envs.pusht", "lwd_gym.envs.robosuite")


@dataclass(frozen=True)
class DemoSource:
    """An environment with its expert, as ``lwd-gym collect NAME`` uses them.

    :param name: the ``collect`` name, e.g. ``"metaworld/reach"``.
    :param make_env: builds the env (preferably through ``gymnasium.make`` so the dataset records
        its spec); ``reset(seed=s)`` must give a reproducible episode.
    :param make_expert: builds the expert for that env (``reset(rng)`` + ``__call__(obs)``).
    :param dataset_id: default Minari id of the collected dataset (``namespace/name-vN``).
    :param episode_info: per-episode scalars stored in ``infos`` (e.g. an operator id), read from
        the expert right after its ``reset``.
    :param extra: the ``pip install lwd-gym[EXTRA]`` extra the simulator comes with, if any.
    :param description: one line for ``lwd-gym collect --list`` and the dataset's description.
    :param has_success: whether the env reports ``info["is_success"]``.  Without it (locomotion:
        a behaviour is not a success or failure) every episode is kept, :func:`collect` reports
        a success rate of NaN and the dataset's description the mean return instead.
    """

    name: str
    make_env: Callable[[], gym.Env]
    make_expert: Callable[[gym.Env], Expert]
    dataset_id: str
    episode_info: Callable[[Any], Mapping[str, int | float | bool]] | None = None
    extra: str | None = None
    description: str = ""
    has_success: bool = True

    @property
    def requirements(self) -> list[str]:
        """Minari ``requirements`` recorded with the datasets collected from this source:
        ``["lwd-gym[EXTRA]"]`` with its :attr:`extra`, else ``["lwd-gym"]``; they tell a user who
        recovers the dataset's env what to install."""
        return [f"lwd-gym[{self.extra}]" if self.extra else "lwd-gym"]


_SOURCES: dict[str, DemoSource] = {}
_builtins_loaded = False


def register_source(source: DemoSource, *, overwrite: bool = False) -> None:
    """Make ``source`` available to :func:`collect` and ``lwd-gym collect``."""
    if source.name in _SOURCES and not overwrite:
        raise ValueError(f"a demonstration source named {source.name!r} is already registered; pass overwrite=True")
    _SOURCES[source.name] = source


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module_name in _SOURCE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # that simulator's support is not part of this version
                continue
            raise
        for source in module.demo_sources():
            _SOURCES.setdefault(source.name, source)


def available_sources() -> list[str]:
    """Names accepted by :func:`collect`."""
    _load_builtins()
    return sorted(_SOURCES)


def get_source(name: str) -> DemoSource:
    """The source registered as ``name`` (a clear error listing the names otherwise)."""
    _load_builtins()
    if name not in _SOURCES:
        raise ValueError(f"unknown environment {name!r} for collection; available: {', '.join(sorted(_SOURCES))}")
    return _SOURCES[name]


def collect(
    name: str,
    num_episodes: int,
    seed: int = 0,
    *,
    dataset_id: str | None = None,
    keep_failures: bool = False,
    overwrite: bool = True,
    progress: bool = True,
) -> tuple[minari.MinariDataset, float]:
    """Roll the expert of source ``name`` for ``num_episodes`` seeded episodes into a Minari dataset.

    Episode ``i`` resets the env with ``seed + i``.  Only successful episodes are written unless
    ``keep_failures`` (every one for a source without success, :attr:`DemoSource.has_success`,
    whose success rate is then NaN).  The dataset goes under ``MINARI_DATASETS_PATH`` as ``dataset_id``
    (default: the source's).  Returns the dataset and the expert's success rate over all
    episodes (kept or not).  The dataset records the env's spec and the source's
    :attr:`~DemoSource.requirements`, so ``dataset.recover_environment()`` (or
    :func:`lwd_gym.data.recover_env`, which also explains what to install) rebuilds the env.
    """
    source = get_source(name)
    try:
        env = source.make_env()
    except ImportError as err:
        hint = f": pip install 'lwd-gym[{source.extra}]'" if source.extra else ""
        raise ImportError(f"collecting {name!r} needs a simulator that is not installed{hint} ({err})") from err
    try:
        expert = source.make_expert(env)
        episode_info = (lambda: source.episode_info(expert)) if source.episode_info is not None else None
        keep = keep_failures or not source.has_success
        buffers, success_rate = rollout_episodes(
            env, expert, num_episodes, seed, keep_failures=keep, progress=progress, desc=f"collect {name}", episode_info=episode_info
        )
        if source.has_success:
            kept = f"{len(buffers)} {'episodes' if keep_failures else 'successful episodes'} of {num_episodes} (expert success rate {success_rate:.3f})"
        else:
            success_rate = float("nan")
            kept = f"{len(buffers)} episodes (mean return {np.mean([b.rewards.sum() for b in buffers]):.1f})"
        if not buffers:
            raise RuntimeError(f"the {name!r} expert failed all {num_episodes} episodes; nothing to write (use keep_failures=True to keep them)")
        dataset = write_minari_dataset(
            dataset_id or source.dataset_id,
            buffers,
            env,
            overwrite=overwrite,
            algorithm_name=f"lwd_gym scripted expert ({name})",
            author="lwd_gym",
            requirements=source.requirements,
            description=(
                f"{source.description} {kept}, episode i reset with seed {seed} + i."
            ).strip(),
        )
    finally:
        env.close()
    return dataset, success_rate
