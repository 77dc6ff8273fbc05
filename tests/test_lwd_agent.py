"""LWD behaviour: learns both modes of the two-paths task, round-trips checkpoints, is deterministic on demand."""
import gymnasium as gym
import numpy as np
import pytest

from lwd_gym import LWDAgent, TaskId, evaluate, make_bimodal_dataset
from lwd_gym.demo import ENV_ID


def test_learns_both_modes_of_the_bimodal_task(trained_lwd):
    result = evaluate(trained_lwd, ENV_ID, 100, seed=123, n_envs=10, info_keys=("side",), count_flops=False, progress=False)
    side = np.array([r["side"] for r in result.episodes])
    success = result.success_rate
    assert success >= 0.9, f"success {success:.2f}"
    assert np.mean(side < 0) >= 0.25 and np.mean(side > 0) >= 0.25, f"left {np.mean(side < 0):.2f}, right {np.mean(side > 0):.2f}"


def _rollout_actions(agent, seed, steps=40, num_envs=3):
    envs = gym.make_vec(ENV_ID, num_envs, vectorization_mode="sync")
    obs, _ = envs.reset(seed=seed)
    agent.reset()
    actions, starts = [], np.ones(num_envs, dtype=bool)
    for _ in range(steps):
        action, state = agent.predict(obs, episode_start=starts)
        assert state is None
        actions.append(action)
        obs, _, terminated, truncated, _ = envs.step(action)
        starts = terminated | truncated
    return np.stack(actions)


def test_save_load_gives_identical_actions(trained_lwd, tmp_path):
    path = tmp_path / "lwd.ckpt"
    trained_lwd.save(path)
    loaded = LWDAgent.load(path, device="cpu")
    assert loaded._config() == trained_lwd._config()
    trained_lwd.set_random_seed(7)
    loaded.set_random_seed(7)
    np.testing.assert_array_equal(_rollout_actions(trained_lwd, 5), _rollout_actions(loaded, 5))


def test_actions_lie_in_action_space(trained_lwd):
    actions = _rollout_actions(trained_lwd, 11)
    space = trained_lwd.action_space
    assert actions.dtype == space.dtype
    assert np.all(actions >= space.low) and np.all(actions <= space.high)


def test_single_observation_gives_single_action(trained_lwd):
    obs, _ = gym.make(ENV_ID).reset(seed=0)
    trained_lwd.reset()
    action, _ = trained_lwd.predict(obs)
    assert action.shape == trained_lwd.action_space.shape


def test_deterministic_fixes_the_sampled_policy(trained_lwd):
    obs = np.tile(gym.make(ENV_ID).reset(seed=0)[0], (4, 1))
    starts = np.ones(4, dtype=bool)
    first, _ = trained_lwd.predict(obs, episode_start=starts, deterministic=True)
    again, _ = trained_lwd.predict(obs, episode_start=starts, deterministic=True)
    np.testing.assert_array_equal(first, again)
    # stochastic sampling from the same state draws different policies
    a, _ = trained_lwd.predict(obs, episode_start=starts)
    b, _ = trained_lwd.predict(obs, episode_start=starts)
    assert not np.array_equal(a, b)


def test_resamples_on_episode_start_and_every_action_horizon(trained_lwd):
    """Count re-samples in a 2-env vector env against episode lengths."""
    trained_lwd.action_horizon = 5
    try:
        envs = gym.make_vec(ENV_ID, 2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
        obs, _ = envs.reset(seed=3)
        trained_lwd.reset()
        before = trained_lwd.num_replans
        starts, lengths, finished = np.ones(2, dtype=bool), np.zeros(2, dtype=int), []
        for _ in range(120):
            action, _ = trained_lwd.predict(obs, episode_start=starts)
            obs, _, terminated, truncated, _ = envs.step(action)
            lengths += 1
            starts = terminated | truncated
            for i in np.flatnonzero(starts):
                finished.append(lengths[i])
                lengths[i] = 0
        expected = sum(-(-n // 5) for n in [*finished, *lengths])  # ceil(len / H_a) per episode
        assert len(finished) >= 2
        assert trained_lwd.num_replans - before == expected
    finally:
        trained_lwd.action_horizon = 32


def test_sb3_evaluate_policy_runs_on_vector_env(trained_lwd):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    vec_env = make_vec_env(ENV_ID, n_envs=2, seed=0)
    before = trained_lwd.num_replans
    rewards, lengths = evaluate_policy(trained_lwd, vec_env, n_eval_episodes=10, return_episode_rewards=True)
    assert len(rewards) == 10
    # reward 1 = reached the goal; every episode begins with a re-sample, long ones re-sample again
    assert np.mean(rewards) >= 0.8
    assert trained_lwd.num_replans - before >= 10 + sum(n > 32 for n in lengths)


def test_task_conditioned_agent_follows_the_task_id(tmp_path):
    """Two datasets (always-left, always-right) = two tasks; the one-hot in the observation picks the side."""
    left = make_bimodal_dataset(40, seed=1, dataset_id="lwd/bimodal/left-v0", side=-1, progress=False)
    right = make_bimodal_dataset(40, seed=2, dataset_id="lwd/bimodal/right-v0", side=1, progress=False)
    agent = LWDAgent(
        action_horizon=16, latent_dim=32, hypernet_size="xs", policy_hidden=(64, 64),
        diffusion_size="xs", condition_on="obs+task", vae_lr=1e-3, diffusion_lr=3e-3, device="cpu", seed=0,
    )
    agent.learn([left, right], vae_steps=300, diffusion_steps=300, progress_bar=False)
    assert agent.observation_space.shape == (4,)
    for task, expected_side in ((0, -1), (1, 1)):
        env = TaskId(gym.make(ENV_ID), task, 2)
        sides = []
        for episode in range(10):
            obs, _ = env.reset(seed=100 + episode)
            agent.reset()
            for _ in range(100):
                obs, _, terminated, truncated, info = env.step(agent.predict(obs)[0])
                if terminated or truncated:
                    break
            sides.append(info["side"])
        sides = np.array(sides)
        # An agent ignoring the task id would pass on the wrong side about half of the time.
        assert not np.any(sides == -expected_side), (task, sides)
        assert np.mean(sides == expected_side) >= 0.7, (task, sides)


@pytest.mark.parametrize("condition_on, cond_dim", [("obs", 2), ("none", 0), ("task", 2), ("obs+task", 4)])
def test_every_conditioning_mode_trains_and_acts(condition_on, cond_dim, tiny_datasets):
    agent = LWDAgent(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), diffusion_size="xs", num_inference_steps=2, condition_on=condition_on, device="cpu")
    agent.learn(tiny_datasets, vae_steps=2, diffusion_steps=2, progress_bar=False)
    assert agent.cond_dim == cond_dim
    obs = np.array([[0.0, -0.5, 1.0, 0.0], [0.1, -0.5, 0.0, 1.0]], dtype=np.float32)
    action, _ = agent.predict(obs, episode_start=np.array([True, True]))
    assert action.shape == (2, 2)


def test_learn_accepts_dataset_ids(tiny_datasets):
    agent = LWDAgent(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), diffusion_size="xs", num_inference_steps=2, device="cpu")
    assert agent.learn(["lwd/tiny/left-v0", "lwd/tiny/right-v0"], vae_steps=1, diffusion_steps=1, progress_bar=False) is agent
    assert agent.num_tasks == 2 and agent.observation_space.shape == (4,)
