"""Environments and their scripted experts.

The built-in two-paths task (no simulator needed), and Gymnasium envs + experts for Metaworld,
gym-pusht and robosuite.  Every id is registered here without importing its simulator; making
an env without the simulator installed raises an ImportError naming the extra to install.
"""
import gymnasium

from lwd_gym.envs.bimodal import ENV_ID, BimodalEnv, BimodalExpert, make_bimodal_dataset
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
from lwd_gym.envs.robosuite import ENV_IDS as _ROBOSUITE_ENV_IDS
from lwd_gym.envs.robosuite import OBS_KEYS, OPERATORS, Operator, RobosuiteEnv, RobosuiteExpert

# Guards: re-importing (e.g. importlib.reload) must not re-register, which gymnasium warns about.
if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="lwd_gym.envs.bimodal:BimodalEnv", max_episode_steps=100)
# lwd_gym/Metaworld-<task>-v3
register_metaworld_envs()
# lwd_gym/Lift-v0, lwd_gym/Can-v0 (robosuite Lift / PickPlaceCan)
for _env_id, (_task, _, _max_steps) in _ROBOSUITE_ENV_IDS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id, entry_point="lwd_gym.envs.robosuite:RobosuiteEnv", kwargs={"task": _task}, max_episode_steps=_max_steps
        )

__all__ = [
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
    "make_bimodal_dataset",
    "make_metaworld_env",
    "make_metaworld_envs",
    "make_pusht_env",
]
