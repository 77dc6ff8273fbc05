"""Environments and their scripted experts.

The built-in two-paths task (no simulator needed), and Gymnasium envs + experts for Metaworld,
gym-pusht and robosuite.  Every id is registered here without importing its simulator; making
an env without the simulator installed raises an ImportError naming the extra to install.
:func:`make_env` makes any env lwd-gym knows (``gym_pusht/PushT-v0`` included, without a prior
``import gym_pusht``) and raises :class:`EnvUnavailableError` with the ``pip install`` to run.
"""
from lwd_gym.envs.bimodal import BimodalEnv, BimodalExpert, make_bimodal_dataset
from lwd_gym.envs.metaworld import (
    MT10,
    PAPER_TASKS,
    MetaworldEnv,
    MetaworldExpert,
    collect_metaworld_datasets,
    make_metaworld_env,
    make_metaworld_envs,
    register_metaworld_envs,
)
from lwd_gym.envs.pusht import PushTExpert, PushTResetInfo, make_pusht_env
from lwd_gym.envs.registration import EnvUnavailableError, env_requirements, make_env, register_envs
from lwd_gym.envs.robosuite import OBS_KEYS, OPERATORS, Operator, RobosuiteEnv, RobosuiteExpert

# lwd_gym/Bimodal-v0, lwd_gym/Metaworld-<task>-v3, lwd_gym/Lift-v0, lwd_gym/Can-v0
register_envs()

__all__ = [
    "EnvUnavailableError",
    "MT10",
    "OBS_KEYS",
    "OPERATORS",
    "PAPER_TASKS",
    "BimodalEnv",
    "BimodalExpert",
    "MetaworldEnv",
    "MetaworldExpert",
    "Operator",
    "PushTExpert",
    "PushTResetInfo",
    "RobosuiteEnv",
    "RobosuiteExpert",
    "collect_metaworld_datasets",
    "env_requirements",
    "make_bimodal_dataset",
    "make_env",
    "make_metaworld_env",
    "make_metaworld_envs",
    "make_pusht_env",
    "register_metaworld_envs",
]
