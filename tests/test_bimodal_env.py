"""BimodalEnv, its scripted expert and the Minari dataset writer."""
import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minari.storage import get_dataset_path

from lwd_gym.data import rollout_episodes, write_minari_dataset
from lwd_gym.envs import BimodalEnv, BimodalExpert, make_bimodal_dataset

ENV_ID = "lwd_gym/Bimodal-v0"


def _drive(env: gym.Env, action, seed: int = 0, max_steps: int = 200):
    """Apply a constant action until the episode ends; return the last step's results."""
    env.reset(seed=seed)
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
        if terminated or truncated:
            return obs, reward, terminated, truncated, info
    raise AssertionError("episode did not end")


def test_check_env():
    env = gym.make(ENV_ID)
    check_env(env.unwrapped)
    assert env.spec.max_episode_steps == 100


def test_render_rgb_array():
    env = BimodalEnv(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


def test_reset_is_deterministic_and_in_start_region():
    env = BimodalEnv()
    obs_a, info_a = env.reset(seed=123)
    obs_b, info_b = env.reset(seed=123)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert obs_a.dtype == np.float32
    assert -0.05 <= obs_a[0] <= 0.05 and -0.58 <= obs_a[1] <= -0.52
    assert info_a == info_b == {"is_success": False, "is_collision": False, "side": 0}
    assert not np.array_equal(env.reset(seed=124)[0], obs_a)


def test_info_keys_are_constant():
    env = BimodalEnv()
    _, info = env.reset(seed=0)
    keys = set(info)
    for _ in range(5):
        *_, info = env.step(env.action_space.sample())
        assert set(info) == keys


def test_driving_straight_up_collides():
    obs, reward, terminated, truncated, info = _drive(BimodalEnv(), (0.0, 1.0))
    assert terminated and not truncated
    assert info["is_collision"] and not info["is_success"]
    assert reward == 0.0


@pytest.mark.parametrize("obstacle", [{}, {"obstacle_center": (0.0, -0.3), "obstacle_radius": 0.1}])
def test_large_steps_do_not_tunnel(obstacle):
    # With max_step=0.5 and the small obstacle, one step from y~-0.55 lands at y~-0.05, beyond the
    # disc (y in [-0.4, -0.2]): only a segment check catches it.
    env = BimodalEnv(max_step=0.5, **obstacle)
    obs, _, terminated, _, info = _drive(env, (0.0, 1.0))
    assert terminated and info["is_collision"] and not info["is_success"]
    # The point stops where it touches the disc.
    assert np.linalg.norm(obs - env.obstacle_center) == pytest.approx(env.obstacle_radius, abs=1e-5)


def test_reaching_goal_succeeds_with_reward():
    # Go around the obstacle on the right by hand: right, up, then left to the goal.
    env = BimodalEnv()
    env.reset(seed=0)
    for action, steps in (((1.0, 0.0), 12), ((0.0, 1.0), 27)):
        for _ in range(steps):
            _, reward, terminated, _, info = env.step(np.asarray(action, dtype=np.float32))
            assert not terminated
    assert info["side"] == 1
    for _ in range(20):
        _, reward, terminated, _, info = env.step(np.asarray((-1.0, 0.0), dtype=np.float32))
        if terminated:
            break
    assert terminated and info["is_success"] and not info["is_collision"] and reward == 1.0


def test_expert_succeeds_on_both_sides():
    env = gym.make(ENV_ID)
    expert = BimodalExpert(seed=0)
    buffers, success_rate = rollout_episodes(
        env, expert, 40, seed=0, keep_failures=True, progress=False, episode_info=lambda: {"expert_side": expert.side}
    )
    assert success_rate >= 0.95
    sides = np.array([b.infos["expert_side"][0] for b in buffers])
    assert set(np.unique(sides)) == {-1, 1}
    assert 0.3 <= np.mean(sides == 1) <= 0.7
    # The env's "side" info: 0 below the obstacle centre, then the side the expert chose.
    for buffer, side in zip(buffers, sides):
        if buffer.infos["is_success"].any():
            env_side = buffer.infos["side"]
            assert env_side[0] == 0 and env_side[-1] == side
            assert set(np.unique(env_side)) == {0, side}


@pytest.mark.parametrize("side", [-1, 1])
def test_expert_fixed_side(side):
    env = gym.make(ENV_ID)
    expert = BimodalExpert(side=side, seed=1)
    buffers, success_rate = rollout_episodes(env, expert, 10, seed=1, progress=False)
    assert success_rate >= 0.9
    assert all(b.infos["side"][-1] == side for b in buffers)


def test_expert_action_is_valid():
    expert = BimodalExpert(seed=0, noise=1.0)
    action = expert(np.zeros(2, dtype=np.float32))
    assert action.dtype == np.float32 and action.shape == (2,)
    assert np.all(np.abs(action) <= 1.0)
    with pytest.raises(ValueError):
        BimodalExpert(side=2)


def _episodes(dataset: minari.MinariDataset) -> list:
    return list(dataset.iterate_episodes())


def test_make_bimodal_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset = make_bimodal_dataset(12, seed=3, dataset_id="lwd/test/a-v0", progress=False)
    reloaded = minari.load_dataset("lwd/test/a-v0")
    assert dataset.total_episodes == reloaded.total_episodes == 12  # the expert succeeds on these seeds
    assert dataset.spec.env_spec.id == ENV_ID
    assert dataset.recover_environment().spec.id == ENV_ID

    episodes = _episodes(reloaded)
    for ep in episodes:
        T = len(ep)
        assert ep.observations.shape == (T + 1, 2) and ep.actions.shape == (T, 2)
        assert ep.rewards.shape == ep.terminations.shape == ep.truncations.shape == (T,)
        assert ep.terminations[-1] and ep.rewards[-1] == 1.0 and ep.infos["is_success"][-1]
        for key in ("is_success", "is_collision", "side", "expert_side"):
            assert ep.infos[key].shape == (T + 1,)
        assert np.all(ep.infos["expert_side"] == ep.infos["side"][-1])

    # Same seed, different id: identical data.
    rerun = _episodes(make_bimodal_dataset(12, seed=3, dataset_id="lwd/test/b-v0", progress=False))
    for a, b in zip(episodes, rerun, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        for key in a.infos:
            np.testing.assert_array_equal(a.infos[key], b.infos[key])


def test_make_bimodal_dataset_overwrite(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset_id = "lwd/test/c-v0"
    # A folder left by an interrupted creation (not listed by minari) must not block creation.
    (get_dataset_path(dataset_id) / "junk").mkdir(parents=True)
    assert make_bimodal_dataset(3, seed=0, dataset_id=dataset_id, progress=False).total_episodes == 3
    assert make_bimodal_dataset(5, seed=0, dataset_id=dataset_id, progress=False).total_episodes == 5
    with pytest.raises(FileExistsError):
        make_bimodal_dataset(2, seed=0, dataset_id=dataset_id, overwrite=False, progress=False)
    assert minari.load_dataset(dataset_id).total_episodes == 5


def test_invalid_inputs():
    with pytest.raises(ValueError, match="num_episodes"):
        make_bimodal_dataset(0, progress=False)
    with pytest.raises(ValueError, match="no episodes to write"):
        write_minari_dataset("lwd/test/empty-v0", [], gym.make(ENV_ID))
