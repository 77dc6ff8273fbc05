"""gym-pusht support: the planning expert, its demonstration sources, the perturbation wrapper."""
import importlib.util
import math
import sys
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("gym_pusht", reason="gym-pusht is not installed (pip install 'lwd-gym[pusht]')")

import lwd_gym.envs.pusht as pusht_module  # noqa: E402
from lwd_gym.data.sources import collect, get_source  # noqa: E402
from lwd_gym.envs.bimodal import BimodalEnv  # noqa: E402
from lwd_gym.envs.pusht import PushTExpert, keypoint_error, make_pusht_env  # noqa: E402
from lwd_gym.wrappers.pusht import PushTPerturbation  # noqa: E402


def _corners(env: gym.Env) -> np.ndarray:
    """The T's 8 corners in world coordinates, read from pymunk."""
    pusht = env.unwrapped
    return pusht.get_keypoints(pusht._block_shapes)


def _cog(env: gym.Env) -> np.ndarray:
    block = env.unwrapped.block
    return np.array(block.local_to_world(block.center_of_gravity))


def _run_expert(env: gym.Env, expert: PushTExpert, seed: int, rng_seed: int, max_steps: int = 300):
    obs, info = env.reset(seed=seed)
    expert.reset(np.random.default_rng(rng_seed))
    actions, infos = [], [info]
    for _ in range(max_steps):
        action = expert(obs)
        obs, _, terminated, truncated, info = env.step(action)
        actions.append(action)
        infos.append(info)
        if terminated or truncated:
            break
    return np.array(actions), infos


# ---------------------------------------------------------------------------------- expert


def test_expert_solves_seeded_episodes():
    env = make_pusht_env("state")
    expert = PushTExpert(env)
    successes = []
    for seed in range(4):
        actions, infos = _run_expert(env, expert, seed, rng_seed=seed)
        successes.append(any(info["is_success"] for info in infos))
        assert actions.dtype == np.float32 and actions.shape[1] == 2
        assert env.action_space.contains(actions[0]) and np.all((actions >= 0) & (actions <= 512))
    # Measured: 150 of 150 seeded episodes (both obs types); 3 of 4 leaves room for chance.
    assert sum(successes) >= 3, successes


def test_expert_is_reproducible_and_diverse():
    env = make_pusht_env("state")
    expert = PushTExpert(env)
    first, _ = _run_expert(env, expert, seed=1, rng_seed=0, max_steps=40)
    again, _ = _run_expert(env, expert, seed=1, rng_seed=0, max_steps=40)
    np.testing.assert_array_equal(first, again)
    # The expert's rng picks among near-equal pushes: other draws give other demonstrations.
    others = [_run_expert(env, expert, seed=1, rng_seed=r, max_steps=40)[0] for r in (1, 2, 3)]
    assert any(o.shape != first.shape or not np.allclose(o, first) for o in others)


def test_expert_rejects_other_envs():
    with pytest.raises(ValueError, match="PushTEnv"):
        PushTExpert(BimodalEnv())


def test_keypoint_error():
    goal = np.array([256.0, 256.0, np.pi / 4])
    assert keypoint_error(goal, goal) == 0.0
    assert keypoint_error(goal + [3.0, -4.0, 0.0], goal) == pytest.approx(5.0)
    # A rotation by 2 pi is the same pose.
    assert keypoint_error(goal + [0.0, 0.0, 2 * np.pi], goal) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------- sources


def test_collect_state_dataset():
    _, success_rate = collect("pusht", 2, seed=0, progress=False)
    assert success_rate == 1.0
    loaded = minari.load_dataset("lwd/pusht/expert-v0")
    assert loaded.total_episodes == 2
    assert loaded.observation_space.shape == (5,) and loaded.action_space.shape == (2,)
    episode = next(loaded.iterate_episodes())
    assert episode.observations.shape[1] == 5
    assert episode.observations.shape[0] == len(episode.actions) + 1
    assert bool(episode.infos["is_success"][-1]) and episode.terminations[-1]
    # The first observation is the seeded reset's: collection is reproducible.
    obs0, _ = make_pusht_env("state").reset(seed=0)
    np.testing.assert_allclose(episode.observations[0], obs0)


def test_collect_keypoints_dataset():
    _, success_rate = collect("pusht/keypoints", 2, seed=0, progress=False)
    loaded = minari.load_dataset("lwd/pusht-keypoints/expert-v0")
    assert success_rate == 1.0 and loaded.total_episodes == 2  # so episode 0 was reset with seed 0
    assert loaded.observation_space.shape == (18,)
    episode = next(loaded.iterate_episodes())
    assert episode.observations.shape[1] == 18
    # Documented layout: agent x, y, then the 8 corners of the T.
    env = make_pusht_env("environment_state_agent_pos")
    env.reset(seed=0)
    np.testing.assert_allclose(episode.observations[0][:2], env.unwrapped.agent.position)
    np.testing.assert_allclose(episode.observations[0][2:], _corners(env).ravel())
    # The dataset records how to rebuild the env (gym.make spec + wrappers).
    recovered = loaded.recover_environment()
    assert recovered.observation_space.shape == (18,)


def test_sources_import_and_fail_cleanly_without_gym_pusht(monkeypatch):
    for name in ("gym_pusht", "gym_pusht.envs", "gym_pusht.envs.pusht"):
        monkeypatch.setitem(sys.modules, name, None)  # `import gym_pusht` now raises ImportError
    # A fresh copy of the module, executed as if gym-pusht were missing.
    spec = importlib.util.spec_from_file_location("_pusht_without_sim", pusht_module.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sources = {s.name: s for s in module.demo_sources()}
    assert sources["pusht"].dataset_id == "lwd/pusht/expert-v0"
    assert sources["pusht/keypoints"].dataset_id == "lwd/pusht-keypoints/expert-v0"
    assert all(s.extra == "pusht" for s in sources.values())
    with pytest.raises(ImportError, match=r"pip install 'lwd-gym\[pusht\]'"):
        module.make_pusht_env()
    with pytest.raises(ImportError, match=r"pip install 'lwd-gym\[pusht\]'"):
        sources["pusht"].make_env()
    assert get_source("pusht").extra == "pusht"


def test_info_keys_constant():
    env = make_pusht_env("state")
    _, info = env.reset(seed=0)
    keys = set(info)
    assert "coverage" in keys
    for _ in range(3):
        *_, info = env.step(env.action_space.sample())
        assert set(info) == keys


# ---------------------------------------------------------------------------------- perturbation


def _still_agent_rollout(env: gym.Env, steps: int, seed: int):
    """Hold the agent where it starts (so only perturbations move the block), resetting on
    episode end; yields (cog before, cog after, obs, info) per step."""
    obs, info = env.reset(seed=seed)
    assert info["perturbed"] is False and np.array_equal(info["perturbation"], np.zeros(2))
    hold = np.asarray(env.unwrapped.agent.position, dtype=np.float32)
    for _ in range(steps):
        before, angle_before = _cog(env), env.unwrapped.block.angle
        obs, _, terminated, truncated, info = env.step(hold)
        yield before, angle_before, obs, info
        if terminated or truncated:
            obs, info = env.reset()
            hold = np.asarray(env.unwrapped.agent.position, dtype=np.float32)


def test_perturbation_rate_norm_and_observation():
    p, magnitude, margin = 0.3, 25.0, 10.0
    env = PushTPerturbation(make_pusht_env("state"), p=p, magnitude=magnitude, margin=margin)
    n_steps, n_perturbed = 1200, 0
    for cog_before, angle_before, obs, info in _still_agent_rollout(env, n_steps, seed=3):
        assert set(info) >= {"perturbed", "perturbation", "perturbation_rotation"}
        moved = _cog(env) - cog_before
        if info["perturbed"]:
            n_perturbed += 1
            assert np.linalg.norm(info["perturbation"]) == pytest.approx(magnitude, abs=1e-9)
            np.testing.assert_allclose(moved, info["perturbation"], atol=1e-6)
            assert info["perturbation_rotation"] == 0.0 and env.unwrapped.block.angle == angle_before
        else:
            np.testing.assert_array_equal(info["perturbation"], np.zeros(2))
            np.testing.assert_allclose(moved, 0.0, atol=1e-6)
        # The observation is the displaced block's, and the block stays inside the walls.
        block = env.unwrapped.block
        np.testing.assert_allclose(obs[2:4], block.position)
        assert obs[4] == pytest.approx(block.angle % (2 * np.pi))
        corners = _corners(env)
        assert corners.min() >= margin - 1e-6 and corners.max() <= 512 - margin + 1e-6
    assert abs(n_perturbed / n_steps - p) < 0.05, n_perturbed / n_steps


def test_perturbation_rotation_and_keypoint_observation():
    max_rotation = 0.4
    env = PushTPerturbation(make_pusht_env("environment_state_agent_pos"), p=1.0, magnitude=20.0, max_rotation=max_rotation)
    rotations = []
    for cog_before, angle_before, obs, info in _still_agent_rollout(env, 40, seed=5):
        if not info["perturbed"]:
            continue
        rotation = info["perturbation_rotation"]
        rotations.append(rotation)
        assert abs(rotation) <= max_rotation
        assert env.unwrapped.block.angle == pytest.approx(angle_before + rotation)
        # Rotation is about the centre of gravity, so it still moves exactly by the displacement.
        np.testing.assert_allclose(_cog(env) - cog_before, info["perturbation"], atol=1e-6)
        # Flattened keypoint observation (agent xy, then corners) re-read after the move.
        np.testing.assert_allclose(obs[2:], _corners(env).ravel())
    assert len(rotations) >= 30 and np.ptp(rotations) > 0.2


def test_perturbation_is_reproducible():
    def trajectory():
        env = PushTPerturbation(make_pusht_env("state"), p=0.2, magnitude=25.0, max_rotation=0.2)
        actions, infos = _run_expert(env, PushTExpert(env), seed=7, rng_seed=0, max_steps=60)
        return actions, np.array([i["perturbation"] for i in infos]), np.array([i["block_pose"] for i in infos])

    a = trajectory()
    b = trajectory()
    assert a[1].any(), "expected some perturbations in 60 steps with p=0.2"
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_expert_recovers_from_perturbations():
    env = PushTPerturbation(make_pusht_env("state"), p=0.05, magnitude=25.0)
    expert = PushTExpert(env)
    _, infos = _run_expert(env, expert, seed=2, rng_seed=0)
    assert any(info["perturbed"] for info in infos)
    assert any(info["is_success"] for info in infos)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"p": -0.1}, "p must be"),
        ({"p": 1.5}, "p must be"),
        ({"p": math.nan}, "p must be"),
        ({"p": True}, "p must be"),
        ({"magnitude": -1.0}, "magnitude"),
        ({"magnitude": math.inf}, "magnitude"),
        ({"max_rotation": -0.1}, "max_rotation"),
        ({"margin": 300.0}, "margin"),
        ({"max_tries": 0}, "max_tries"),
    ],
)
def test_perturbation_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PushTPerturbation(make_pusht_env("state"), **kwargs)


def test_perturbation_needs_pusht():
    with pytest.raises(ValueError, match="PushT"):
        PushTPerturbation(BimodalEnv())


def test_perturbation_check_env():
    # p=1 so that check_env's determinism checks see perturbed steps.
    env = PushTPerturbation(gym.make("gym_pusht/PushT-v0", obs_type="state"), p=1.0, max_rotation=0.3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # skip_render_check: gym-pusht lists the "human" render mode, which opens a pygame window.
        check_env(env, skip_render_check=True)
    messages = [str(w.message) for w in caught]
    # Known and inherent: check_env prefers unwrapped envs (this one is a wrapper by design) and
    # gym-pusht's action space is pixels in [0, 512], not the [-1, 1] it recommends.
    unexpected = [m for m in messages if "different from the unwrapped" not in m and "symmetric and normalized" not in m]
    assert not unexpected, unexpected
