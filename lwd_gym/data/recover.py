"""Recover a Minari dataset's Gymnasium env, saying what to install when it cannot be made.

Datasets that ``lwd-gym collect`` (and the importers given an ``env_id``) write record their
env's spec and Minari ``requirements`` such as ``["lwd-gym[metaworld]"]``.
:func:`recover_env` is ``dataset.recover_environment()`` that first imports the package
registering the env's namespace (``gym_pusht`` for ``gym_pusht/PushT-v0``) and, when the env
still cannot be made, raises :class:`~lwd_gym.envs.registration.EnvUnavailableError` naming
the env, the dataset's requirements and what of them is not installed.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import minari
from gymnasium.envs.registration import EnvSpec

from lwd_gym.envs.registration import UNAVAILABLE_ERRORS, EnvUnavailableError, import_env_namespace, make_env


def _load(dataset: minari.MinariDataset | str) -> minari.MinariDataset:
    return minari.load_dataset(dataset) if isinstance(dataset, str) else dataset


def dataset_requirements(dataset: minari.MinariDataset | str) -> list[str]:
    """The pip requirements recorded with ``dataset`` (Minari's ``requirements``; ``[]`` if none).

    Minari 0.5 keeps them in the dataset's metadata only (``dataset.spec`` has no field for
    them); collected lwd-gym datasets have e.g. ``["lwd-gym[pusht]"]``.
    """
    requirements = _load(dataset).storage.metadata.get("requirements") or []
    return [str(r) for r in requirements]


def dataset_env_id(dataset: minari.MinariDataset | str, eval_env: bool = False) -> str | None:
    """The id of the env recorded with ``dataset`` (the evaluation env's with ``eval_env`` when
    one was recorded, as :meth:`minari.MinariDataset.recover_environment` picks it), or None."""
    dataset = _load(dataset)
    eval_spec = dataset.storage.metadata.get("eval_env_spec") if eval_env else None
    if isinstance(eval_spec, str):
        return str(json.loads(eval_spec)["id"])
    return None if dataset.env_spec is None else dataset.env_spec.id


def recover_env(dataset: minari.MinariDataset | str, /, eval_env: bool = False, **kwargs: Any) -> gym.Env:
    """The Gymnasium env of ``dataset`` (a :class:`minari.MinariDataset` or a local dataset id).

    Like ``dataset.recover_environment(eval_env, **kwargs)`` (``kwargs`` go to ``gymnasium.make``;
    with ``eval_env`` the evaluation env if the dataset records one), but the package that
    registers the env's namespace is imported first when lwd-gym knows it, so a PushT dataset
    recovers without ``import gym_pusht``.

    :raises ValueError: the dataset records no env (e.g. imported without ``env_id``).
    :raises lwd_gym.envs.registration.EnvUnavailableError: the env cannot be made here (its
        namespace is not registered, or a package is missing); the message names the env, the
        dataset's requirements, which of them are not installed and the ``pip install`` to run.
    """
    dataset = _load(dataset)
    env_id = dataset_env_id(dataset, eval_env)
    if env_id is None:
        raise ValueError(
            f"Minari dataset {dataset.spec.dataset_id!r} records no environment (it was written without an env, e.g. "
            "imported without env_id), so there is none to recover; make the env yourself"
        )
    requirements = dataset_requirements(dataset)
    try:
        import_env_namespace(env_id)
        return dataset.recover_environment(eval_env=eval_env, **kwargs)
    except UNAVAILABLE_ERRORS as err:
        cause = err.cause if isinstance(err, EnvUnavailableError) and err.cause is not None else err
        raise EnvUnavailableError.from_cause(env_id, cause, requirements, dataset_id=dataset.spec.dataset_id) from cause


def env_factory(env: str | EnvSpec | minari.MinariDataset, /, **kwargs: Any) -> tuple[str, Callable[[], gym.Env]]:
    """``(name, zero-argument factory)`` for an env id, a spec or a dataset's (evaluation) env.

    What :func:`lwd_gym.evaluate` turns an id or a dataset into: ids and specs are made with
    :func:`~lwd_gym.envs.registration.make_env`, datasets with :func:`recover_env`
    ``(eval_env=True)``; ``kwargs`` go to ``gymnasium.make``.  The name is the env id.  The
    factory is picklable (for subprocess vector envs).
    """
    if isinstance(env, minari.MinariDataset):
        env_id = dataset_env_id(env, eval_env=True)
        if env_id is None:
            raise ValueError(f"Minari dataset {env.spec.dataset_id!r} records no environment to evaluate in; pass an env id or a factory")
        return env_id, functools.partial(recover_env, env, True, **kwargs)
    if isinstance(env, EnvSpec):
        return env.id, functools.partial(make_env, env, **kwargs)
    if isinstance(env, str):
        return env, functools.partial(make_env, env, **kwargs)
    raise TypeError(f"expected an env id, a gymnasium EnvSpec or a MinariDataset, got {type(env).__name__}")
