"""Defects found by feeding bad input as a new user would: each is refused early with a message
naming the problem, and a failure never leaves a trained agent changed."""
import copy
import hashlib
import json
import re

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

from lwd_gym import BaseAgent, DPAgent, LDPAgent, LWDAgent, MLPAgent, evaluate
from lwd_gym.checkpoint import load_checkpoint
from lwd_gym.cli import main
from lwd_gym.data import import_robomimic_hdf5
from lwd_gym.data.demonstrations import load_demonstrations
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.demo import ENV_ID
from test_bad_input import _write

TINY = dict(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs", num_inference_steps=2, device="cpu")


@pytest.fixture
def trained(tiny_datasets):
    return LWDAgent(**TINY).learn(tiny_datasets[0], vae_steps=3, diffusion_steps=2, progress_bar=False)


def _actions(agent, obs=np.array([[0.0, -0.5], [0.1, -0.4]], np.float32)):
    agent.set_random_seed(3)
    return np.stack([agent.predict(obs, episode_start=np.array([i == 0] * 2))[0] for i in range(6)])


# 1. a failed learn() leaves the agent as it was ---------------------------------------------
def test_failed_learn_leaves_a_trained_agent_unchanged(trained, tmp_path):
    trained.save(tmp_path / "a.ckpt")
    agent = BaseAgent.load(tmp_path / "a.ckpt", device="cpu")
    before, weights = _actions(agent), {k: v.clone() for k, v in agent.vae.state_dict().items()}
    short = _write("test/short-v0", np.zeros((3, 2), np.float32), np.zeros((2, 2), np.float32), agent.state_space, agent.action_space)
    with pytest.raises(ValueError, match="snippet_length"):
        agent.learn(short, vae_steps=5, diffusion_steps=5, progress_bar=False)
    assert agent.is_trained
    np.testing.assert_array_equal(_actions(agent), before)
    for name, value in agent.vae.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)
    agent.save(tmp_path / "b.ckpt")
    assert load_checkpoint(tmp_path / "a.ckpt")[1]["normalizers"] == load_checkpoint(tmp_path / "b.ckpt")[1]["normalizers"]


def test_interrupted_training_restores_the_agent(trained, tiny_datasets, monkeypatch):
    before = _actions(trained)
    import lwd_gym.agents.latent as latent

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(latent.LatentDiffusionAgent, "_encode_snippets", interrupted)  # after the VAE stage has trained
    with pytest.raises(KeyboardInterrupt):
        trained.learn(tiny_datasets[1], vae_steps=5, diffusion_steps=5, progress_bar=False)
    np.testing.assert_array_equal(_actions(trained), before)


# 2., 3., 5., 11. every constructor argument is checked at construction ----------------------
@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: LWDAgent(latent_dim=36, latent_length=6), "latent_length"),  # the UNet halves the sequence twice
        (lambda: LWDAgent(diffusion_lr=float("nan")), "diffusion_lr"),
        (lambda: LWDAgent(vae_lr=0.0), "vae_lr"),
        (lambda: LWDAgent(diffusion_epochs=0), "diffusion_epochs"),
        (lambda: LWDAgent(hypernet_size="xxl"), "hypernet_size"),
        (lambda: LWDAgent(batch_size=0), "batch_size"),
        (lambda: LWDAgent(latent_length=0), "latent_length"),
        (lambda: LWDAgent(latent_dim=0), "latent_dim"),
        (lambda: LWDAgent(policy_hidden=(0,)), "policy_hidden"),
        (lambda: LWDAgent(snippet_length=-2), "snippet_length"),
        (lambda: LWDAgent(snippet_length=0), "snippet_length"),
        (lambda: LWDAgent(num_inference_steps=0), "num_inference_steps"),
        (lambda: LWDAgent(num_inference_steps=1000), "num_inference_steps"),
        (lambda: LWDAgent(num_inference_steps=-3), "num_inference_steps"),
        (lambda: LWDAgent(action_horizon=True), "action_horizon"),
        (lambda: LWDAgent(seed=1.5), "seed"),
        (lambda: LDPAgent(decoder_hidden=()), "decoder_hidden"),
        (lambda: DPAgent(num_inference_steps=0), "num_inference_steps"),
        (lambda: DPAgent(num_inference_steps=101), "num_inference_steps"),
        (lambda: DPAgent(prediction_horizon=10), "prediction_horizon"),
        (lambda: DPAgent(diffusion_lr=-1e-4), "diffusion_lr"),
        (lambda: MLPAgent(hidden=(64, -1)), "hidden"),
        (lambda: MLPAgent(bc_epochs=0), "bc_epochs"),
    ],
)
def test_bad_constructor_arguments_are_refused_naming_them(make, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        make()


# 4. a poisoned plan does not persist --------------------------------------------------------
def test_non_finite_plan_is_discarded_and_the_next_call_replans(trained):
    agent = copy.deepcopy(trained)
    agent.act_on_host = False
    obs = np.array([[0.0, -0.5], [0.1, -0.4]], np.float32)
    agent.predict(obs, episode_start=np.array([True, True]))
    # Env 1's new plan yields NaN (as a network overflowing on a finite but extreme input
    # would; how such inputs overflow is CPU dependent, so the NaN is injected).
    act = agent._act

    def poisoned_act(states, tasks, steps):
        out = act(states, tasks, steps).clone()
        out[1] = float("nan")
        return out

    agent._act = poisoned_act
    with pytest.raises(FloatingPointError, match=r"environment\(s\) \[1\]: it re-planned from observations"):
        agent.predict(obs, episode_start=np.array([False, True]))
    del agent._act
    before = agent.num_replans
    action, _ = agent.predict(obs, episode_start=np.array([False, False]))  # env 1 re-plans; env 0 continues
    assert np.isfinite(action).all() and agent.num_replans == before + 1 and agent.last_replanned.tolist() == [False, True]


# 6. CUDA on a machine without it -------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_so(trained, tmp_path):
    with pytest.raises(ValueError, match="CUDA is not available"):
        LWDAgent(device="cuda")
    trained.save(tmp_path / "a.ckpt")
    with pytest.raises(ValueError, match="CUDA is not available"):
        BaseAgent.load(tmp_path / "a.ckpt", device="cuda")


# 7. the CLI checks its outputs before any work and prints one line per error ----------------
@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started before the outputs were checked")

    monkeypatch.setattr(LWDAgent, "learn", refuse)


@pytest.mark.parametrize("extra, match", [
    (["--out", "{file}/x.ckpt"], "is a file, not a directory"),
    (["--out", "{dir}"], "is a directory"),
    (["--out", "{dir}/x.ckpt", "--checkpoint-dir", "{file}"], "--checkpoint-dir .* is a file"),
    (["--out", "{dir}/x.ckpt", "--log-dir", "{file}/logs"], "--log-dir .* is a file"),
])  # fmt: skip
def test_cli_train_checks_outputs_before_training(tiny_datasets, tmp_path, capsys, no_training, extra, match):
    (tmp_path / "file").write_text("x")
    args = [a.format(file=tmp_path / "file", dir=tmp_path) for a in extra]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "lwd", "lwd/tiny/left-v0", "--quiet", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and re.search(match, err), err


def test_cli_eval_json_checked_before_evaluating_and_created_if_missing(trained, tmp_path, capsys):
    trained.save(tmp_path / "a.ckpt")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "a.ckpt"), ENV_ID, "--episodes", "2", "--quiet", "--json", str(tmp_path / "file" / "r.json")])
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "a.ckpt"), ENV_ID, "--episodes", "2", "--n-envs", "2", "--quiet", "--json", str(tmp_path / "new" / "r.json")]) == 0
    assert json.loads((tmp_path / "new" / "r.json").read_text())["n_episodes"] == 2


def test_cli_unexpected_errors_are_one_line(monkeypatch, capsys):
    import lwd_gym.demo

    monkeypatch.setattr(lwd_gym.demo, "run_demo", lambda **kw: 1 / 0)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1 and "ZeroDivisionError" in err and "Traceback" not in err


@pytest.mark.parametrize("setting, name", [("action_horizon=abc", "action_horizon"), ("policy_hidden=16,16", "policy_hidden")])
def test_cli_set_errors_name_the_key(tiny_datasets, tmp_path, capsys, setting, name):
    with pytest.raises(SystemExit):
        main(["train", "lwd", "lwd/tiny/left-v0", "--out", str(tmp_path / "x.ckpt"), "--quiet", "--set", setting])
    assert name in capsys.readouterr().err


# 8. evaluate checks the action space ---------------------------------------------------------
@pytest.mark.parametrize("env_id, match", [("MountainCarContinuous-v0", r"actions have shape \(2,\), the env expects \(1,\)"), ("MountainCar-v0", "Box")])
def test_evaluate_checks_the_action_space(trained, env_id, match):
    with pytest.raises(ValueError, match=match):  # both envs have 2-d observations, like the agent
        evaluate(trained, env_id, 2, progress=False, count_flops=False)


@pytest.mark.parametrize("n", [2.5, 0, True])
def test_evaluate_refuses_non_integer_episode_counts(trained, n):
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate(trained, ENV_ID, n, progress=False)


# 9. tiny scales are relative -----------------------------------------------------------------
def test_normaliser_standardises_data_on_a_tiny_scale():
    x = np.random.default_rng(0).normal(0.0, 1e-7, size=(500, 2)).astype(np.float32)
    norm = Normalizer.fit(x)
    assert np.allclose(norm.std, x.std(axis=0), rtol=1e-3)
    assert abs(norm.normalize(x).std() - 1) < 1e-3
    constant = Normalizer.fit(np.full((10, 1), 3.0, np.float32) + np.float32(1e-8))
    assert constant.std.tolist() == [1.0]


def test_action_bounds_tolerance_is_relative_to_the_space():
    box = gym.spaces.Box(-1e-7, 1e-7, (2,), np.float32)
    ds = _write("test/tinybox-v0", np.zeros((11, 2), np.float32), np.full((10, 2), 5e-6, np.float32), box, box)
    with pytest.raises(ValueError, match="outside the action space"):
        load_demonstrations(ds)
    ok = _write("test/tinybox-ok-v0", np.zeros((11, 2), np.float32), np.full((10, 2), 1e-7, np.float32), box, box)
    assert len(load_demonstrations(ok).actions) == 1


# 10. a checkpoint's bytes depend on the agent only ----------------------------------------------
def test_checkpoint_bytes_are_reproducible(trained, tmp_path):
    digests = set()
    for i in range(6):  # safetensors wrote its metadata map in a random order: 6 saves agreed by chance with p = 1/32
        trained.save(tmp_path / f"{i}.ckpt")
        digests.add(hashlib.sha256((tmp_path / f"{i}.ckpt").read_bytes()).hexdigest())
    assert len(digests) == 1


# 12. importer errors name the problem --------------------------------------------------------
def _robomimic(path, obs, actions, next_obs=None, actions_group=False):
    with h5py.File(path, "w") as f:
        demo = f.create_group("data").create_group("demo_0")
        if actions_group:
            demo.create_group("actions")
        else:
            demo.create_dataset("actions", data=actions)
        for key, value in obs.items():
            demo.create_dataset(f"obs/{key}", data=value)
        for key, value in (next_obs or {}).items():
            demo.create_dataset(f"next_obs/{key}", data=value)
    return path


@pytest.mark.parametrize("kwargs, match", [
    (dict(obs={"object": np.zeros((5, 3))}, actions=np.zeros((5, 2)), next_obs={"object": np.zeros((5, 4))}), "next_obs/object has 4 values per step but obs/object has 3"),
    (dict(obs={"object": np.zeros((5, 3))}, actions=np.float64(1.0)), "'actions' is a scalar"),
    (dict(obs={"object": np.zeros((5, 3))}, actions=None, actions_group=True), "'actions' is a group"),
])  # fmt: skip
def test_robomimic_importer_names_malformed_demos(tmp_path, kwargs, match):
    path = _robomimic(tmp_path / "bad.hdf5", **kwargs)
    with pytest.raises(ValueError, match=match):
        import_robomimic_hdf5(path, "test/bad-v0", obs_keys=["object"])


def test_robomimic_obs_keys_string_is_refused(tmp_path):
    path = _robomimic(tmp_path / "ok.hdf5", {"object": np.zeros((5, 3))}, np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"did you mean \['object'\]"):
        import_robomimic_hdf5(path, "test/ok-v0", obs_keys="object")


# flops_per_step mid-episode ------------------------------------------------------------------
def test_flops_per_step_mid_episode_leaves_the_plans_intact(tiny_datasets):
    dp = DPAgent(action_horizon=4, prediction_horizon=8, denoiser_size="xs", num_inference_steps=2, scheduler="ddim", device="cpu")
    dp.learn(tiny_datasets[0], steps=2, progress_bar=False)
    obs = np.zeros((3, 2), np.float32)
    dp.set_random_seed(0)
    expected = [dp.predict(obs, episode_start=np.array([i == 0] * 3))[0] for i in range(4)]
    dp.set_random_seed(0)
    got = [dp.predict(obs, episode_start=np.array([True] * 3))[0]]
    assert dp.flops_per_step() > 0
    got += [dp.predict(obs, episode_start=np.array([False] * 3))[0] for _ in range(3)]
    np.testing.assert_array_equal(np.array(got), np.array(expected))
