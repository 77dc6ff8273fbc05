"""ActionChunk, ObservationNoise and ActionNoise: semantics, seeding, noise statistics, check_env, bad args."""
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import lwd_gym  # noqa: F401  (registers lwd_gym/Bimodal-v0)
from lwd_gym.wrappers.chunk import ActionChunk
from lwd_gym.wrappers.noise import ActionNoise, ObservationNoise

BIMODAL = "lwd_gym/Bimodal-v0"


class EchoEnv(gym.Env):
    """Observation ``[t, action]`` (the step count and the action as received), so tests can see
    exactly what a wrapper executed. Reward ``action[0]``; ``is_success`` when ``action[1] > 0.5``;
    terminates when ``action[1] < -0.5``; truncates after ``horizon`` steps."""

    def __init__(self, horizon: int = 10) -> None:
        self.horizon = horizon
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(3, np.float32), {"is_success": False}

    def step(self, action):
        action = np.asarray(action, np.float32)
        self._t += 1
        obs = np.array([self._t, *action], np.float32)
        return obs, float(action[0]), bool(action[1] < -0.5), self._t >= self.horizon, {"is_success": bool(action[1] > 0.5)}


class DiscreteEnv(gym.Env):
    """Non-Box spaces, for the argument checks."""

    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 0.0, False, False, {}


class DiscreteObsEnv(DiscreteEnv):
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def _check_env_quietly(env: gym.Env) -> None:
    with warnings.catch_warnings():
        # check_env always notes that a wrapped env differs from its unwrapped version.
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        check_env(env)


def _rollout(env: gym.Env, seed: int, actions: np.ndarray) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    return np.array(out)


# --------------------------------------------------------------------------------- ActionChunk


def test_action_chunk_spaces_and_sum():
    env = ActionChunk(EchoEnv(horizon=50), chunk_size=4)
    assert env.action_space.shape == (4, 2)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert env.observation_space == env.env.observation_space
    obs, info = env.reset(seed=0)
    assert info["executed_steps"] == 0 and info["is_success"] is False
    chunk = np.array([[0.1, 0], [0.2, 0], [0.3, 0], [-0.4, 0.2]], np.float32)
    obs, reward, terminated, truncated, info = env.step(chunk)
    np.testing.assert_allclose(obs, [4, -0.4, 0.2])  # the last executed step's observation
    assert reward == pytest.approx(0.2)
    assert not terminated and not truncated
    assert info["executed_steps"] == 4 and info["is_success"] is False


def test_action_chunk_success_anywhere_in_the_chunk():
    env = ActionChunk(EchoEnv(), chunk_size=3)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([[0, 0], [0, 1], [0, 0]], np.float32))
    assert info["is_success"] is True  # the last step's own info says False
    _, _, _, _, info = env.step(np.zeros((3, 2), np.float32))
    assert info["is_success"] is False  # not carried over to the next chunk


def test_action_chunk_stops_at_termination():
    env = ActionChunk(EchoEnv(), chunk_size=4)
    env.reset(seed=0)
    chunk = np.array([[0.1, 0], [0.2, -1], [0.3, 0], [0.4, 0]], np.float32)
    obs, reward, terminated, truncated, info = env.step(chunk)
    assert terminated and not truncated
    assert info["executed_steps"] == 2
    assert reward == pytest.approx(0.3)  # the two executed actions only
    np.testing.assert_allclose(obs, [2, 0.2, -1])


def test_action_chunk_stops_at_truncation_on_bimodal():
    # Bimodal's time limit is 100 steps: standing still, chunks of 8 reach it 4 steps into chunk 13.
    env = ActionChunk(gym.make(BIMODAL), chunk_size=8)
    env.reset(seed=0)
    for _ in range(12):
        _, _, terminated, truncated, info = env.step(np.zeros((8, 2), np.float32))
        assert not (terminated or truncated) and info["executed_steps"] == 8
    _, _, terminated, truncated, info = env.step(np.zeros((8, 2), np.float32))
    assert truncated and not terminated and info["executed_steps"] == 4
    assert {"is_collision", "side"} <= info.keys()  # the inner info is kept


def test_action_chunk_matches_stepping_the_plain_env():
    actions = np.random.default_rng(0).uniform(-1, 1, (12, 2)).astype(np.float32)
    plain = _rollout(gym.make(BIMODAL), 3, actions)
    chunked = _rollout(ActionChunk(gym.make(BIMODAL), 4), 3, actions.reshape(3, 4, 2))
    np.testing.assert_array_equal(chunked, plain[::4])


def test_action_chunk_observation_stack():
    env = ActionChunk(EchoEnv(horizon=50), chunk_size=4, n_obs_steps=3)
    assert env.observation_space.shape == (3, 3)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, np.zeros((3, 3)))  # padded with the reset observation
    obs, *_ = env.step(np.array([[0.1, 0], [0.2, 0], [0.3, 0], [0.4, 0]], np.float32))
    np.testing.assert_allclose(obs, [[2, 0.2, 0], [3, 0.3, 0], [4, 0.4, 0]])  # last three, oldest first
    assert env.observation_space.contains(obs)
    env.reset(seed=0)  # the history does not leak across episodes
    obs, *_ = env.step(np.array([[0.5, 0], [0.6, -1], [0, 0], [0, 0]], np.float32))
    np.testing.assert_allclose(obs, [[0, 0, 0], [1, 0.5, 0], [2, 0.6, -1]])


def test_action_chunk_check_env():
    _check_env_quietly(ActionChunk(gym.make(BIMODAL), chunk_size=4))
    _check_env_quietly(ActionChunk(gym.make(BIMODAL), chunk_size=3, n_obs_steps=2))


def test_action_chunk_spec_can_be_remade():
    env = ActionChunk(gym.make(BIMODAL), chunk_size=5, n_obs_steps=2)
    remade = gym.make(env.spec)
    assert remade.action_space.shape == (5, 2) and remade.observation_space.shape == (2, 2)


def test_action_chunk_bad_args():
    env = ActionChunk(EchoEnv(), chunk_size=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        env.step(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="chunk_size"):
        ActionChunk(EchoEnv(), chunk_size=0)
    with pytest.raises(ValueError, match="n_obs_steps"):
        ActionChunk(EchoEnv(), chunk_size=2, n_obs_steps=0)
    with pytest.raises(ValueError, match="Box action space"):
        ActionChunk(DiscreteEnv(), chunk_size=2)
    with pytest.raises(ValueError, match="Box observation space"):
        ActionChunk(DiscreteObsEnv(), 2, n_obs_steps=2)


# ---------------------------------------------------------------------------------------- noise


def test_observation_noise_statistics():
    scale = np.array([0.05, 0.1, 0.2])
    env = ObservationNoise(EchoEnv(horizon=10_000), scale)
    env.reset(seed=0)
    action = np.array([0.3, -0.2], np.float32)
    clean = np.array([0, 0.3, -0.2])
    noise = []
    for t in range(1, 4001):
        obs, *_ = env.step(action)
        clean[0] = t
        noise.append(obs - clean)
    noise = np.array(noise)
    np.testing.assert_allclose(noise.std(0), scale, rtol=0.1)
    assert np.all(np.abs(noise.mean(0)) < 4 * scale / np.sqrt(len(noise)))


def test_observation_noise_rate():
    env = ObservationNoise(EchoEnv(horizon=10_000), 0.1, p=0.3)
    env.reset(seed=1)
    perturbed = []
    for t in range(1, 4001):
        obs, *_ = env.step(np.zeros(2, np.float32))
        perturbed.append(np.any(obs != np.array([t, 0, 0], np.float32)))
    assert np.mean(perturbed) == pytest.approx(0.3, abs=0.04)
    env_never = ObservationNoise(EchoEnv(), 1.0, p=0.0)
    obs, _ = env_never.reset(seed=0)
    np.testing.assert_array_equal(obs, np.zeros(3))


def test_observation_noise_clipped_to_bounds_and_reproducible():
    env = ObservationNoise(gym.make(BIMODAL), 5.0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and np.any(np.abs(obs) == 1.0)
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 2)).astype(np.float32)
    noisy = ObservationNoise(gym.make(BIMODAL), 0.05)
    a, b = _rollout(noisy, 4, actions), _rollout(noisy, 4, actions)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _rollout(noisy, 5, actions))
    # Noise is drawn after the env's own reset draws: the episode's start state is the plain env's.
    plain_start, _ = gym.make(BIMODAL).reset(seed=4)
    assert 0 < np.abs(a[0] - plain_start).max() < 0.5


def test_action_noise_statistics_and_rate():
    env = ActionNoise(EchoEnv(horizon=10_000), [0.05, 0.2])
    env.reset(seed=0)
    received = np.array([env.step(np.array([0.1, 0.0], np.float32))[0][1:] for _ in range(4000)])
    np.testing.assert_allclose((received - [0.1, 0.0]).std(0), [0.05, 0.2], rtol=0.1)
    np.testing.assert_allclose(received.mean(0), [0.1, 0.0], atol=0.02)

    env = ActionNoise(EchoEnv(horizon=10_000), 0.1, p=0.25)
    env.reset(seed=1)
    received = np.array([env.step(np.zeros(2, np.float32))[0][1:] for _ in range(4000)])
    assert np.mean(np.any(received != 0, axis=1)) == pytest.approx(0.25, abs=0.04)


def test_action_noise_clipped_to_action_space():
    env = ActionNoise(EchoEnv(horizon=1000), 5.0)
    env.reset(seed=0)
    received = np.array([env.step(np.zeros(2, np.float32))[0][1:] for _ in range(200)])
    assert received.min() >= -1 and received.max() <= 1
    assert np.mean(np.abs(received) == 1) > 0.5  # most draws of N(0, 25) are clipped


def test_action_noise_reproducible():
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 2)).astype(np.float32)
    env = ActionNoise(gym.make(BIMODAL), 0.3)
    a, b = _rollout(env, 2, actions), _rollout(env, 2, actions)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[1:], _rollout(env, 3, actions)[1:])
    assert not np.array_equal(a, _rollout(gym.make(BIMODAL), 2, actions))  # the noise does act


def test_noise_check_env():
    _check_env_quietly(ObservationNoise(gym.make(BIMODAL), 0.05, p=0.5))
    _check_env_quietly(ActionNoise(gym.make(BIMODAL), [0.1, 0.3]))
    _check_env_quietly(ActionNoise(ActionChunk(gym.make(BIMODAL), 4), 0.1))


@pytest.mark.parametrize("wrapper", [ObservationNoise, ActionNoise])
def test_noise_bad_args(wrapper):
    for p in (-0.1, 1.5, "often", None):
        with pytest.raises(ValueError, match="p must be"):
            wrapper(EchoEnv(), 0.1, p=p)
    for scale in (-0.1, [0.1, -0.1], np.nan, "big"):
        with pytest.raises(ValueError, match="scale"):
            wrapper(EchoEnv(), scale)
    with pytest.raises(ValueError, match="broadcast"):
        wrapper(EchoEnv(), [0.1] * 5)
    with pytest.raises(ValueError, match="Box"):
        wrapper(DiscreteEnv(), 0.1)
    int_box = gym.spaces.Box(0, 10, (2,), np.int64)
    int_env = EchoEnv()
    int_env.observation_space = int_env.action_space = int_box
    with pytest.raises(ValueError, match="floating-point"):
        wrapper(int_env, 0.1)


def test_action_noise_wrong_action_shape():
    env = ActionNoise(EchoEnv(), 0.1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        env.step(np.zeros(3, np.float32))


# ---------------------------------------------------------------- TaskId


def test_task_id_appends_one_hot_and_passes_check_env():
    from lwd_gym import TaskId

    env = TaskId(gym.make("lwd_gym/Bimodal-v0"), 2, 3)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (5,) and obs.shape == (5,)
    np.testing.assert_array_equal(obs[2:], [0, 0, 1])
    obs2, _ = TaskId(gym.make("lwd_gym/Bimodal-v0"), 2, 3).reset(seed=0)
    np.testing.assert_array_equal(obs, obs2)
    _check_env_quietly(env)


def test_task_id_adds_a_task_key_to_dict_observations():
    from lwd_gym import TaskId

    class DictEnv(gym.Env):
        observation_space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2,), np.float32)})
        action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return {"pos": np.zeros(2, np.float32)}, {}

        def step(self, action):
            return {"pos": np.zeros(2, np.float32)}, 0.0, False, False, {}

    env = TaskId(DictEnv(), 1, 2)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"pos", "task"} and env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["task"], [0, 1])


@pytest.mark.parametrize("task_id, num_tasks, match", [(3, 3, "task_id"), (-1, 2, "task_id"), (0, 0, "num_tasks"), (0.5, 2, "task_id")])
def test_task_id_bad_args(task_id, num_tasks, match):
    from lwd_gym import TaskId

    with pytest.raises(ValueError, match=match):
        TaskId(gym.make("lwd_gym/Bimodal-v0"), task_id, num_tasks)
