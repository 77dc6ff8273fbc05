"""evaluate(): seeded episodes independent of parallelism, each counted once; EvalResult; `lwd-gym eval`."""
import json

import gymnasium as gym
import numpy as np
import pytest

from lwd_gym import EvalResult, LWDAgent, MLPAgent, RandomAgent, compare, evaluate
from lwd_gym.cli import main
from lwd_gym.demo import ENV_ID
from lwd_gym.evaluation import wilson_interval


@pytest.fixture(scope="module")
def small_lwd(bimodal_dataset):
    agent = LWDAgent(action_horizon=8, latent_dim=16, hypernet_size="xs", policy_hidden=(32,), denoiser_size="xs", num_inference_steps=4, device="cpu")
    return agent.learn(bimodal_dataset, vae_steps=50, diffusion_steps=50, progress_bar=False)


class RecordFirstAction(gym.Wrapper):
    """Reports the episode's first action in every step's info (to compare the plans that runs
    with different numbers of parallel envs sampled for the same episode)."""

    def reset(self, **kwargs):
        self.first = None
        return self.env.reset(**kwargs)

    def step(self, action):
        if self.first is None:
            self.first = np.array(action, dtype=np.float64)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "first_action": self.first}


@pytest.mark.parametrize("deterministic", [False, True])
def test_results_do_not_depend_on_the_number_of_parallel_envs(small_lwd, deterministic):
    """Episode k is seeded with seed + k, env and sampling noise alike, whichever env runs it.
    Batched and single-env networks round differently in the last bits, so the plans are
    compared to float tolerance; the uniform-random agent draws exactly the same actions."""
    make = lambda: RecordFirstAction(gym.make(ENV_ID))  # noqa: E731
    kwargs = dict(seed=42, deterministic=deterministic, info_keys=("first_action",), count_flops=False, progress=False)
    one, four = (evaluate(small_lwd, make, 9, n_envs=n, **kwargs) for n in (1, 4))
    assert [e["episode"] for e in four.episodes] == list(range(9))  # each episode exactly once
    assert [e["seed"] for e in four.episodes] == list(range(42, 51))
    first = lambda result: np.array([e["first_action"] for e in result.episodes])  # noqa: E731
    np.testing.assert_allclose(first(one), first(four), atol=1e-4)
    # each episode sampled its own plan (not one plan shared by all, nor the env index's)
    assert len(np.unique(first(four).round(3), axis=0)) == 9
    random = RandomAgent(small_lwd.observation_space, small_lwd.action_space, device="cpu")
    one, four = (evaluate(random, make, 9, n_envs=n, **kwargs) for n in (1, 4))
    for a, b in zip(one.episodes, four.episodes):
        assert a["length"] == b["length"] and a["is_success"] == b["is_success"] and a["first_action"] == b["first_action"]
        assert a["return"] == pytest.approx(b["return"])


def test_result_fields_queries_and_json(small_lwd, tmp_path):
    result = evaluate(small_lwd, ENV_ID, 6, seed=0, n_envs=3, progress=False)
    lengths = np.array([e["length"] for e in result.episodes])
    # LWD samples a policy at the start of each episode and then every action_horizon steps
    assert [e["diffusion_queries"] for e in result.episodes] == (-(-lengths // 8)).tolist()
    assert result.diffusion_queries_per_episode == pytest.approx(np.mean(-(-lengths // 8)))
    assert result.flops_per_step > 0 and result.wall_time_per_step > 0 and result.predict_time_per_step > 0
    assert result.success_ci95[0] <= result.success_rate <= result.success_ci95[1]
    path = tmp_path / "result.json"
    result.to_json(path)
    back = EvalResult.from_dict(json.loads(path.read_text()))
    assert back == result
    table = compare([result, back])
    assert table.count("LWDAgent") == 2 and "MFLOPs/step" in table


def test_success_from_either_info_key():
    class SucceedsOnStep3(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

        def __init__(self, key):
            self.key, self.t = key, 0

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return np.zeros(2, np.float32), {self.key: False}

        def step(self, action):
            self.t += 1
            return np.zeros(2, np.float32), float(self.t), False, self.t >= 5, {self.key: self.t == 3}

    for key in ("is_success", "success"):
        env = SucceedsOnStep3(key)
        agent = RandomAgent(env.observation_space, env.action_space)
        result = evaluate(agent, lambda: SucceedsOnStep3(key), 4, n_envs=2, progress=False)
        assert result.success_rate == 1.0, key  # success at any step counts, not only the last
        assert result.mean_max_reward == 5.0 and result.mean_return == 15.0 and result.mean_length == 5


def test_wilson_interval():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.404, abs=1e-3) and high == pytest.approx(0.596, abs=1e-3)


def test_bad_arguments(small_lwd):
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate(small_lwd, ENV_ID, 0, progress=False)
    with pytest.raises(ValueError, match="autoreset"):
        evaluate(small_lwd, gym.make_vec(ENV_ID, 2, vectorization_mode="sync"), 2, progress=False)
    with pytest.raises(ValueError, match=r"observations of shape \(2,\)"):
        evaluate(small_lwd, "CartPole-v1", 1, progress=False)


def test_cli_eval_prints_a_table(small_lwd, tmp_path, capsys):
    path = tmp_path / "lwd.ckpt"
    small_lwd.save(path)
    out_json = tmp_path / "eval.json"
    assert main(["eval", str(path), ENV_ID, "--episodes", "4", "--n-envs", "2", "--action-horizon", "4", "--quiet", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "LWDAgent" in printed and "success" in printed
    assert json.loads(out_json.read_text())["n_episodes"] == 4


def test_cli_eval_bad_input_is_a_message(tmp_path, capsys, tiny_datasets):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path / "missing.ckpt"), ENV_ID])
    assert exit_info.value.code == 2 and "checkpoint not found" in capsys.readouterr().err
    path = tmp_path / "mlp.ckpt"
    MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets, steps=1, progress_bar=False).save(path)
    with pytest.raises(SystemExit):
        main(["eval", str(path), ENV_ID, "--quiet"])
    assert "--task-id" in capsys.readouterr().err
    assert main(["eval", str(path), ENV_ID, "--task-id", "1", "--episodes", "2", "--quiet"]) == 0
