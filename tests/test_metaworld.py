"""Metaworld envs and demonstrations: seeded resets, info keys, experts, collection, multi-task envs."""
import importlib.util
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import lwd_gym  # noqa: F401
from lwd_gym.data.collect import rollout_episodes
from lwd_gym.envs import metaworld as mw_module
from lwd_gym.envs.metaworld import (
    INFO_KEYS,
    MT10,
    PAPER_TASKS,
    TASKS,
    MetaworldEnv,
    MetaworldExpert,
    collect_metaworld_datasets,
    dataset_id,
    demo_sources,
    env_id,
    make_metaworld_env,
    make_metaworld_envs,
    register_metaworld_envs,
)


@pytest.fixture
def metaworld():
    """Skip (only) where Metaworld is not installed."""
    return pytest.importorskip("metaworld")


@pytest.fixture
def no_metaworld(monkeypatch):
    """Make ``import metaworld`` fail, as if it were not installed."""
    for name in ("metaworld", "metaworld.env_dict", "metaworld.policies"):
        monkeypatch.setitem(sys.modules, name, None)


def test_task_lists():
    assert len(PAPER_TASKS) == 10 and len(MT10) == 10
    assert len(TASKS) == 15 and set(TASKS) == set(PAPER_TASKS) | set(MT10)
    assert env_id("reach") == env_id("reach-v3") == "lwd_gym/Metaworld-reach-v3"
    assert dataset_id("door-open") == "lwd/metaworld-door-open/expert-v0"
    assert [s.name for s in demo_sources()] == [f"metaworld/{t}" for t in TASKS]
    assert {f"metaworld/{t}" for t in TASKS} <= set(lwd_gym.data.sources.available_sources())


def test_module_and_sources_work_without_metaworld(no_metaworld):
    # A fresh copy of the module, imported while `import metaworld` fails.
    spec = importlib.util.spec_from_file_location("_mw_copy", mw_module.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sources = module.demo_sources()
    assert [s.name for s in sources] == [f"metaworld/{t}" for t in TASKS]
    assert all(s.extra == "metaworld" and s.dataset_id == dataset_id(s.name) for s in sources)
    assert all(env_id(t) in gym.registry for t in TASKS)
    with pytest.raises(ImportError, match=r"pip install 'lwd-gym\[metaworld\]'"):
        module.MetaworldEnv("reach")
    with pytest.raises(ImportError, match=r"pip install 'lwd-gym\[metaworld\]'"):
        module.MetaworldExpert("reach")
    with pytest.raises(ImportError, match=r"lwd-gym\[metaworld\]"):
        lwd_gym.data.sources.collect("metaworld/reach", 1, progress=False)


def test_spaces_info_keys_and_episode_length(metaworld):
    env = make_metaworld_env("reach")
    assert env.spec.id == "lwd_gym/Metaworld-reach-v3" and env.spec.max_episode_steps == 500
    assert env.observation_space.shape == (39,)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs.shape == (39,) and env.observation_space.contains(obs)
    assert tuple(info) == INFO_KEYS and info["is_success"] is False
    for t in range(1, 501):
        obs, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
        assert tuple(info) == INFO_KEYS and isinstance(info["is_success"], bool)
        assert not terminated and truncated == (t == 500)
    assert env.observation_space.contains(obs)


def test_reset_is_seeded(metaworld):
    env = make_metaworld_env("pick-place")
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 4)).astype(np.float32)

    def rollout(seed):
        obs, _ = env.reset(seed=seed)
        return np.array([obs] + [env.step(a)[0] for a in actions])

    first = rollout(3)
    other = rollout(4)
    again = rollout(3)  # after other episodes: the same configuration and trajectory
    np.testing.assert_array_equal(first, again)
    # Goal (36:39) and object (4:7) positions both move between seeds.
    assert np.abs(first[0, 36:39] - other[0, 36:39]).max() > 1e-3
    assert np.abs(first[0, 4:7] - other[0, 4:7]).max() > 1e-3
    # A fresh env agrees, and unseeded resets continue the seeded stream reproducibly.
    fresh = make_metaworld_env("pick-place")
    np.testing.assert_array_equal(fresh.reset(seed=3)[0], first[0])
    env.reset(seed=3)
    np.testing.assert_array_equal(fresh.reset()[0], env.reset()[0])
    assert not np.array_equal(fresh.reset()[0], first[0])


def test_reset_observation_is_current(metaworld):
    # Metaworld's own reset observation of window-close shows the window where the previous
    # episode left it (and success): MetaworldEnv recomputes the positions.
    env = make_metaworld_env("window-close")
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        assert info["is_success"] is False and info["obj_to_target"] > 0.1
        next_obs, *_ = env.step(np.zeros(4, np.float32))
        np.testing.assert_allclose(obs[4:7], next_obs[4:7], atol=0.01)  # the handle did not jump


def test_check_env(metaworld):
    with warnings.catch_warnings():
        # Metaworld's object coordinates are unbounded (+-inf), which check_env remarks on.
        warnings.filterwarnings("ignore", message=".*infinity.*")
        # skip_render_check: rendering needs an OpenGL context (GLFW aborts without a display).
        check_env(MetaworldEnv("door-open"), skip_render_check=True)


@pytest.mark.parametrize("task", ["reach", "drawer-open", "push"])
def test_expert_succeeds(metaworld, task):
    env = make_metaworld_env(task, terminate_on_success=True)
    buffers, success_rate = rollout_episodes(env, MetaworldExpert(task), 2, seed=0, keep_failures=True, progress=False)
    assert success_rate == 1.0
    for buffer in buffers:
        # terminate_on_success ends the episode at the first success (Metaworld's experts take
        # ~50-100 steps), so these runs are short.
        assert len(buffer.actions) < 200 and buffer.terminations[-1] and buffer.infos["is_success"][-1]
        assert np.all(np.abs(buffer.actions) <= 1.0) and buffer.actions.dtype == np.float32


def test_collect_writes_a_minari_dataset(metaworld):
    dataset, success_rate = lwd_gym.data.sources.collect("metaworld/reach", 2, seed=0, progress=False)
    assert success_rate == 1.0 and dataset.total_episodes == 2
    assert dataset.spec.dataset_id == "lwd/metaworld-reach/expert-v0"
    assert dataset.observation_space.shape == (39,) and dataset.action_space.shape == (4,)
    episodes = list(dataset.iterate_episodes())
    for episode in episodes:
        assert episode.observations.shape == (501, 39) and episode.actions.shape == (500, 4)
        assert episode.infos["is_success"].any() and set(episode.infos) == set(INFO_KEYS)
    assert not np.array_equal(episodes[0].observations[0], episodes[1].observations[0])
    # The dataset records the env spec: the env can be rebuilt from it.
    env = dataset.recover_environment()
    assert env.spec.id == "lwd_gym/Metaworld-reach-v3"
    np.testing.assert_array_equal(env.reset(seed=0)[0], episodes[0].observations[0])


def test_unknown_task(metaworld):
    with pytest.raises(ValueError, match="unknown Metaworld task 'not-a-task'.*reach"):
        make_metaworld_env("not-a-task")
    assert env_id("not-a-task") not in gym.registry
    with pytest.raises(ValueError, match="unknown Metaworld task"):
        MetaworldEnv("reach-v2")
    with pytest.raises(ValueError, match="unknown Metaworld task"):
        MetaworldExpert("not-a-task")
    with pytest.raises(ValueError, match="unknown environment 'metaworld/not-a-task'"):
        lwd_gym.data.sources.collect("metaworld/not-a-task", 1, progress=False)


def test_other_metaworld_tasks_register_on_demand(metaworld):
    env = make_metaworld_env("hammer")
    assert env.spec.id == "lwd_gym/Metaworld-hammer-v3"
    assert env.reset(seed=0)[0].shape == (39,)


def test_multitask_envs_match_multitask_datasets(metaworld):
    from lwd_gym.data.demonstrations import load_demonstrations
    from lwd_gym.wrappers.task_id import with_task_id

    tasks = ["reach", "door-unlock"]
    envs = make_metaworld_envs(tasks)
    for i, env in enumerate(envs):
        obs, _ = env.reset(seed=0)
        assert obs.shape == (41,)
        np.testing.assert_array_equal(obs[39:], np.eye(2)[i])
    datasets = collect_metaworld_datasets(tasks, 1, progress=False)
    assert [d.spec.dataset_id for d in datasets] == [dataset_id(t) for t in tasks]
    demos = load_demonstrations(datasets)
    assert demos.num_tasks == 2 and list(demos.tasks) == [0, 1]
    assert with_task_id(demos.observation_space, demos.num_tasks).shape == envs[0].observation_space.shape
    with pytest.raises(ValueError, match="both task_id and num_tasks"):
        make_metaworld_env("reach", task_id=0)
    assert register_metaworld_envs(["reach"]) == ["lwd_gym/Metaworld-reach-v3"]  # idempotent
